"""The synthetic tracking clip and the detections simulated from its ground truth."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from retina_cli.data.synthetic_tracks import make_tracking_clip, simulate_detections
from retina_cli.tracking.bytetrack import pairwise_iou_np
from retina_cli.tracking.mot import read_mot


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return make_tracking_clip(tmp_path_factory.mktemp("clip") / "clip.mp4")


def test_deterministic_per_seed(clip, tmp_path):
    again = make_tracking_clip(tmp_path / "a" / "clip.mp4")
    np.testing.assert_array_equal(again.gt, clip.gt)
    other = make_tracking_clip(tmp_path / "b" / "clip.mp4", seed=1)
    assert other.gt.shape != clip.gt.shape or not np.array_equal(other.gt, clip.gt)


def test_gt_file_matches_the_array(clip):
    assert clip.gt_path == clip.video.parent / "gt.txt"
    np.testing.assert_array_equal(read_mot(clip.gt_path), clip.gt)
    considered = clip.gt[:, 6] == 1
    assert considered.sum() == 641 and sorted(set(clip.gt[:, 1].astype(int))) == [1, 2, 3, 4, 5, 6]
    assert clip.names == ("circle", "square", "triangle") and set(clip.gt[:, 7]) <= {0, 1, 2}
    # objects less than half visible are in the file as ignore regions (consider 0); hidden ones are not
    assert (clip.gt[considered, 8] >= 0.5).all() and (clip.gt[~considered, 8] < 0.5).all() and (~considered).sum() > 5
    assert set(clip.gt[:, 6]) == {0, 1} and clip.gt[:, 8].min() > 0 and clip.gt[:, 8].max() == 1.0


def test_the_pillar_hides_objects(clip):
    gt = clip.gt[clip.gt[:, 6] == 1]
    x1, x2 = clip.pillar
    gaps = 0
    for tid in set(gt[:, 1].tolist()):
        rows = gt[gt[:, 1] == tid]
        for before in np.flatnonzero(np.diff(rows[:, 0]) > 1):  # the frame before a gap in the gt
            bx1, bx2 = rows[before, 2], rows[before, 2] + rows[before, 4]
            gaps += bx1 < x2 and bx2 > x1  # going behind the pillar
    assert gaps >= 3
    # every considered gt box is at least half outside the pillar
    covered = np.clip(np.minimum(gt[:, 2] + gt[:, 4], x2) - np.maximum(gt[:, 2], x1), 0, None) / gt[:, 4]
    assert covered.max() <= 0.5


def test_objects_cross_each_other(clip):
    gt = clip.gt
    overlaps = 0
    for f in range(1, clip.frames + 1):
        rows = gt[gt[:, 0] == f]
        xyxy = np.concatenate((rows[:, 2:4], rows[:, 2:4] + rows[:, 4:6]), axis=1)
        iou = pairwise_iou_np(xyxy, xyxy)
        overlaps += int((np.triu(iou, 1) > 0).sum())
    assert overlaps >= 10


def test_the_video_has_the_frames_and_size(clip):
    cap = cv2.VideoCapture(str(clip.video))
    try:
        assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 120 and cap.get(cv2.CAP_PROP_FPS) == 12.0
        frames = 0
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            assert frame.shape == (240, 320, 3)
            if frames == 0:  # the pillar is grey (up to the codec's error)
                assert np.abs(frame[:, clip.pillar[0] + 2:clip.pillar[1] - 2].astype(int) - 128).mean() < 4
            frames += 1
    finally:
        cap.release()
    assert frames == 120


def test_simulated_detections(clip):
    gt = clip.gt[clip.gt[:, 6] == 1]  # only objects at least half visible are detected
    exact = simulate_detections(clip.gt, np.random.default_rng(0), drop=0, jitter=0, false_positives=0, low_fraction=0)
    assert len(exact) == 120 and sum(len(b) for b, _, _ in exact) == len(gt)
    boxes, scores, labels = exact[4]
    rows = gt[gt[:, 0] == 5]
    np.testing.assert_array_equal(boxes, np.concatenate((rows[:, 2:4], rows[:, 2:4] + rows[:, 4:6]), axis=1))
    np.testing.assert_array_equal(labels, rows[:, 7])
    all_scores = np.concatenate([s for _, s, _ in exact])
    low = all_scores < 0.25  # partly hidden objects score low
    np.testing.assert_array_equal(low, gt[:, 8] < 0.8)
    assert all_scores[low].min() >= 0.1 and all_scores[~low].min() >= 0.5
    noisy = simulate_detections(clip.gt, np.random.default_rng(0))
    n = sum(len(b) for b, _, _ in noisy)
    assert 0.9 * len(gt) < n < 1.0 * len(gt)  # 10% missed, 5% false positives
    assert all(b.dtype == np.float32 and s.dtype == np.float32 and k.dtype == np.int64 for b, s, k in noisy)
