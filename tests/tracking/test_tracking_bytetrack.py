"""ByteTrack on scripted scenes: every expected id is a literal."""

from __future__ import annotations

import numpy as np
import pytest

from retina_cli.errors import ConfigError
from retina_cli.tracking.bytetrack import ByteTracker, TrackerConfig, linear_assignment, pairwise_iou_np


def box(x: float, y: float, s: float = 30.0) -> list[float]:
    return [x, y, x + s, y + s]


def run(frames, cfg: TrackerConfig = TrackerConfig(), frame_rate: float = 30.0) -> list[list[int]]:
    """frames: per frame a list of (box, score, label) -> the ids per frame, as lists."""
    tracker = ByteTracker(cfg, frame_rate)
    out = []
    for dets in frames:
        boxes = np.array([d[0] for d in dets], dtype=np.float32).reshape(-1, 4)
        scores = np.array([d[1] for d in dets], dtype=np.float32)
        labels = np.array([d[2] for d in dets], dtype=np.int64)
        ids = tracker.update(boxes, scores, labels)
        assert ids.dtype == np.int64 and ids.shape == (len(dets),)
        out.append(ids.tolist())
    return out


def test_pairwise_iou_np_by_hand_and_against_torchvision():
    import torch
    from torchvision.ops import box_iou

    a = np.array([[0, 0, 10, 10], [0, 0, 0, 0]], dtype=np.float64)
    b = np.array([[5, 5, 15, 15], [0, 0, 10, 10], [20, 20, 30, 30]], dtype=np.float64)
    np.testing.assert_allclose(pairwise_iou_np(a, b), [[25 / 175, 1, 0], [0, 0, 0]])
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 100, size=(2, 40, 2))
    wh = rng.uniform(1, 50, size=(2, 40, 2))
    p, q = np.concatenate((xy, xy + wh), axis=2)
    np.testing.assert_allclose(pairwise_iou_np(p, q), box_iou(torch.from_numpy(p), torch.from_numpy(q)).numpy(), atol=1e-12)
    assert pairwise_iou_np(np.zeros((0, 4)), q).shape == (0, 40)


def test_linear_assignment_leaves_pairs_unmatched_as_lapjv_with_a_cost_limit():
    # Hungarian alone would take both off-diagonal pairs (0.6 + 0.6 = 1.2 < 0.3 + 0.95); with
    # lapjv's cost_limit 0.7 leaving a row and a column alone costs 0.35 each, so 0.3 + 0.7 wins
    rows, cols = linear_assignment(np.array([[0.3, 0.6], [0.6, 0.95]]), 0.7)
    assert rows.tolist() == [0] and cols.tolist() == [0]
    rows, cols = linear_assignment(np.array([[0.9, 0.1], [0.2, 0.85]]), 0.5)
    assert rows.tolist() == [0, 1] and cols.tolist() == [1, 0]
    rows, cols = linear_assignment(np.array([[0.81, 0.9]]), 0.8)
    assert rows.tolist() == [] and cols.tolist() == []
    assert linear_assignment(np.zeros((0, 3)), 0.8)[0].shape == (0,)


def test_two_objects_in_straight_lines_keep_ids_1_and_2():
    frames = [[(box(10 + 4 * t, 10), 0.9, 0), (box(10 + 3 * t, 150 + t), 0.8, 0)] for t in range(50)]
    assert run(frames) == [[1, 2]] * 50


def test_two_crossing_objects_keep_their_ids():
    # A goes right, B left, 10 px apart vertically; their boxes overlap on frames 28..32 (IoU up to 0.5)
    frames = [[(box(5 * t, 100), 0.9, 0), (box(300 - 5 * t, 110), 0.9, 0)] for t in range(60)]
    iou = [pairwise_iou_np(np.array([f[0][0]]), np.array([f[1][0]]))[0, 0] for f in frames]
    assert np.flatnonzero(np.array(iou) > 0).tolist() == list(range(28, 33)) and np.isclose(max(iou), 0.5)
    assert run(frames) == [[1, 2]] * 60


def _fading(low: float = 0.15):
    """One object moving 3 px per frame, detected at ``low`` on frames 10..12 (0-based), 0.9 otherwise."""
    return [[(box(10 + 3 * t, 50), low if 10 <= t <= 12 else 0.9, 0)] for t in range(30)]


def test_a_low_score_detection_keeps_its_track_by_the_second_association():
    assert run(_fading()) == [[1]] * 30


def test_a_discarded_low_detection_loses_the_track_which_resumes_with_the_same_id():
    ids = run(_fading(), TrackerConfig(low_thresh=0.2))
    assert ids == [[1]] * 10 + [[-1]] * 3 + [[1]] * 17


def _absent(gap: int, total: int = 30):
    """A still object, missing from frame 10 (0-based) for ``gap`` frames."""
    return [[] if 10 <= t < 10 + gap else [(box(100, 100), 0.9, 0)] for t in range(total)]


def test_an_object_back_within_the_buffer_keeps_its_id():
    cfg = TrackerConfig(buffer=5)
    assert run(_absent(5), cfg) == [[1]] * 10 + [[]] * 5 + [[1]] * 15
    # the buffer is frames at 30 fps: at 60 fps it holds 10 frames
    assert run(_absent(10), cfg, frame_rate=60) == [[1]] * 10 + [[]] * 10 + [[1]] * 10


def test_an_object_back_after_the_buffer_gets_a_new_id_once_confirmed():
    cfg = TrackerConfig(buffer=5)
    # back on frame 16: a new track, unconfirmed on its first frame (-1), id 2 from the next
    assert run(_absent(6), cfg) == [[1]] * 10 + [[]] * 6 + [[-1]] + [[2]] * 13
    assert run(_absent(11), cfg, frame_rate=60) == [[1]] * 10 + [[]] * 11 + [[-1]] + [[2]] * 8


def test_tracks_are_active_at_once_on_the_first_frame_only():
    frames = [[(box(10, 10), 0.9, 0)] + ([(box(200, 10), 0.9, 0)] if t >= 1 else []) for t in range(4)]
    assert run(frames) == [[1], [1, -1], [1, 2], [1, 2]]


def test_a_detection_below_new_track_thresh_never_starts_a_track():
    low = [[(box(10 + 2 * t, 10), 0.2, 0)] for t in range(20)]  # a low detection: continues tracks only
    assert run(low) == [[-1]] * 20
    high = [[(box(10 + 2 * t, 10), 0.4, 0)] for t in range(20)]  # high, but below new_track_thresh
    assert run(high, TrackerConfig(new_track_thresh=0.5)) == [[-1]] * 20
    assert run(high, TrackerConfig(new_track_thresh=0.4)) == [[1]] * 20


def test_per_class_keeps_a_cat_and_a_dog_at_the_same_place_apart():
    rng = np.random.default_rng(0)
    frames = []
    for t in range(20):
        pair = [(box(50 + t, 50), 0.9, 0), (box(50 + t, 50), 0.8, 1)]  # cat 0 and dog 1, the same box
        frames.append(pair if t == 0 or rng.random() < 0.5 else pair[::-1])  # cat first on frame 1: id 1
    ids = run(frames)
    for dets, got in zip(frames, ids):
        assert {label: i for (_, _, label), i in zip(dets, got)} == {0: 1, 1: 2}


def test_a_track_only_continues_with_its_class_unless_per_class_is_off():
    frames = [[(box(100, 100), 0.9, 0 if t < 10 else 1)] for t in range(14)]
    assert run(frames) == [[1]] * 10 + [[-1]] + [[2]] * 3
    assert run(frames, TrackerConfig(per_class=False)) == [[1]] * 14


def test_ids_are_never_reused_and_unconfirmed_tracks_use_up_an_id():
    # 5 objects one after the other at the same place, 4 frames each, with gaps longer than the buffer
    frames = []
    for k in range(5):
        frames += [[(box(100, 100), 0.9, 0)]] * 4 + [[]] * 3
    ids = run(frames, TrackerConfig(buffer=2))
    shown = [i for f in ids for i in f if i >= 0]
    assert sorted(set(shown)) == [1, 2, 3, 4, 5]
    assert ids[:8] == [[1], [1], [1], [1], [], [], [], [-1]]
    # a one-frame false positive on frame 2 takes id 2 and is removed unconfirmed: the next object is 3
    frames = [[(box(10, 10), 0.9, 0)]] + [[(box(10, 10), 0.9, 0), (box(200, 200), 0.9, 0)]] + [[(box(10, 10), 0.9, 0)]] * 2
    frames += [[(box(10, 10), 0.9, 0), (box(150, 20), 0.9, 0)]] * 2
    assert run(frames) == [[1], [1, -1], [1], [1], [1, -1], [1, 3]]


def test_reset_starts_again_at_id_1():
    tracker = ByteTracker()
    b, s, k = np.array([box(0, 0)]), np.array([0.9]), np.array([0])
    assert tracker.update(b, s, k).tolist() == [1]
    tracker.reset()
    assert tracker.update(b + 200, s, k).tolist() == [1] and tracker.frame == 1


def test_boxes_without_area_and_empty_frames_are_never_tracked():
    tracker = ByteTracker()
    assert tracker.update(np.array([[5, 5, 5, 20], [0, 0, 10, 10]]), np.array([0.9, 0.9]), np.array([0, 0])).tolist() == [-1, 1]
    assert tracker.update(np.zeros((0, 4)), np.zeros(0), np.zeros(0, np.int64)).tolist() == []


@pytest.mark.parametrize("kwargs, name", [
    ({"low_thresh": 0.5, "high_thresh": 0.3}, "low_thresh"), ({"high_thresh": 1.5}, "high_thresh"),
    ({"new_track_thresh": -0.1}, "new_track_thresh"), ({"match_iou": 0.0}, "match_iou"),
    ({"buffer": -1}, "buffer"), ({"buffer": 2.5}, "buffer"), ({"per_class": "yes"}, "per_class"),
])
def test_config_errors_name_the_setting(kwargs, name):
    with pytest.raises(ConfigError, match=name) as err:
        TrackerConfig(**kwargs)
    assert "\n" not in str(err.value)


def test_frame_rate_must_be_positive():
    with pytest.raises(ConfigError, match="frame_rate"):
        ByteTracker(TrackerConfig(), frame_rate=0)


def test_a_lost_track_drifting_onto_a_tracked_one_is_removed_as_a_duplicate():
    def scene(with_still: bool):
        """B moves 5 px/frame, is missed on frames 13..27; its lost track drifts through the still A at x=100."""
        frames = []
        for t in range(32):
            dets = [(box(100, 100), 0.9, 0)] if with_still else []
            if t <= 12 or t >= 28:
                dets.append((box(5 * t, 100), 0.9, 0))
            frames.append(dets)
        return frames

    assert run(scene(False))[26:32] == [[], [], [1], [1], [1], [1]]  # alone, B is found again
    # with A there, B's lost track overlaps it at IoU > 0.85 around frame 20 and goes (A is older)
    assert run(scene(True))[26:32] == [[1], [1], [1, -1], [1, 3], [1, 3], [1, 3]]
