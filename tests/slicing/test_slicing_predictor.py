"""SlicedPredictor: boxes found in windows map back to the image exactly, duplicates merge, max_det
after the merge, and it equals the plain Predictor when the image is one window."""

from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from helpers import POST, make_model
from retina_cli.config import PostprocessConfig
from retina_cli.engine.predict import Predictor, TorchBackend
from retina_cli.engine.sources import Frame, Source
from retina_cli.postprocess import Candidates
from retina_cli.slicing.config import SliceConfig
from retina_cli.slicing.merge import merge_detections
from retina_cli.slicing.predictor import SlicedPredictor
from retina_cli.slicing.tiles import tile_windows


class BrightBox:
    """A fake backend: the box around the bright (> 200) pixels of each letterboxed image, scored by
    how many there are (a window that sees the whole square scores above one that sees a part)."""

    name = "fake"

    def __init__(self, size: int) -> None:
        self.model_cfg = SimpleNamespace(img_size=size, class_names=("square",), num_classes=1)
        self.post_cfg = PostprocessConfig(score_thresh=0.1, nms_thresh=0.5, topk=10, max_det=10)

    def candidates(self, batch: np.ndarray) -> Candidates:
        bright = torch.from_numpy(batch[..., 0] > 200)  # (N, S, S)
        size = bright.shape[-1]
        idx = torch.arange(size)
        cols, rows = bright.any(dim=1), bright.any(dim=2)  # (N, S) each
        x1 = torch.where(cols, idx, size).amin(1)
        x2 = torch.where(cols, idx + 1, 0).amax(1)
        y1 = torch.where(rows, idx, size).amin(1)
        y2 = torch.where(rows, idx + 1, 0).amax(1)
        scores = torch.where(cols.any(1), 0.2 + bright.sum((1, 2)) / 1e4, 0.0)
        boxes = torch.stack([x1, y1, x2, y2], dim=1).float()
        return Candidates(scores[:, None], torch.zeros(len(batch), 1, dtype=torch.int64), boxes[:, None])


def _square_image(h: int = 200, w: int = 300, box: tuple[int, int, int, int] = (100, 50, 120, 70)) -> np.ndarray:
    img = np.zeros((h, w, 3), np.uint8)
    x1, y1, x2, y2 = box
    img[y1:y2, x1:x2] = 255
    return img


def _rows(a: np.ndarray) -> list[list[float]]:
    return sorted(np.asarray(a).tolist())


def test_boxes_found_in_windows_map_back_to_the_exact_pixels():
    # 64 px windows on a 64 px network input: the letterbox is the identity, so every window's box
    # is the square clipped to the window, exactly; shifted back, each is that intersection in the image
    square = np.array([100, 50, 120, 70])
    fake = BrightBox(64)
    sliced = SlicedPredictor(Predictor(fake, fake.post_cfg), SliceConfig(64, 0.25, full_image=False, merge_thresh=0.99))
    (res,) = sliced([_square_image()])
    windows = tile_windows(200, 300, 64, 0.25)
    inter = np.concatenate([np.maximum(windows[:, :2], square[:2]), np.minimum(windows[:, 2:], square[2:])], axis=1)
    seen = inter[(inter[:, 2] > inter[:, 0]) & (inter[:, 3] > inter[:, 1])]
    expected = np.unique(seen, axis=0)  # equal boxes from two windows: IoU 1 > 0.99, one is left
    assert len(expected) >= 3  # the square is whole in some windows and cut in others
    assert _rows(res.boxes) == _rows(expected)
    assert res.boxes.dtype == np.float32 and np.array_equal(res.boxes[0], square)  # the whole square scores best
    assert (np.diff(res.scores) <= 0).all()


def test_nmm_merges_the_pieces_cut_by_window_borders_into_the_square():
    fake = BrightBox(64)
    sliced = SlicedPredictor(Predictor(fake, fake.post_cfg), SliceConfig(64, 0.25, full_image=False, merge="nmm"))
    (res,) = sliced([_square_image()])
    assert np.array_equal(res.boxes, [[100, 50, 120, 70]]) and np.allclose(res.scores, [0.2 + 400 / 1e4])


def test_batching_and_several_images_per_call_change_nothing():
    fake = BrightBox(64)
    images = [_square_image(), _square_image(130, 180, (10, 90, 70, 125)), _square_image(64, 64, (3, 4, 20, 30))]
    cfg = SliceConfig(64, 0.25, full_image=False, merge="nmm")
    one_by_one = [SlicedPredictor(Predictor(fake, fake.post_cfg), cfg, batch=1)([im])[0] for im in images]
    together = SlicedPredictor(Predictor(fake, fake.post_cfg), cfg, batch=5)(images)
    for a, b in zip(one_by_one, together):
        assert np.array_equal(a.boxes, b.boxes) and np.array_equal(a.scores, b.scores)
    assert [r.boxes.tolist() for r in together] == [[[100, 50, 120, 70]], [[10, 90, 70, 125]], [[3, 4, 20, 30]]]


def _with(sliced: SlicedPredictor, **changes) -> SlicedPredictor:
    return SlicedPredictor(sliced.predictor, replace(sliced.cfg, **changes), sliced.batch)


def test_the_whole_image_runs_too_unless_it_is_the_only_window():
    fake = BrightBox(64)
    sliced = SlicedPredictor(Predictor(fake, fake.post_cfg), SliceConfig(64, 0.5))
    assert np.array_equal(sliced.passes(64, 100), [[0, 0, 64, 64], [32, 0, 96, 64], [36, 0, 100, 64], [0, 0, 100, 64]])
    assert np.array_equal(sliced.passes(64, 40), [[0, 0, 40, 64]])  # the one window is the image: run once
    assert np.array_equal(_with(sliced, full_image=False).passes(64, 100), [[0, 0, 64, 64], [32, 0, 96, 64], [36, 0, 100, 64]])


@pytest.fixture(scope="module")
def model_predictor() -> Predictor:
    return Predictor(TorchBackend(make_model(), POST, torch.device("cpu")), POST)


def _noise(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


@pytest.mark.parametrize("full_image", [False, True])
def test_an_image_within_one_window_gives_the_plain_predictors_detections(model_predictor, full_image):
    image = _noise(90, 120)
    plain = model_predictor([image])[0]
    (sliced,) = SlicedPredictor(model_predictor, SliceConfig(128, full_image=full_image, merge="nmm"))([image])
    assert len(plain.scores) > 10
    assert np.array_equal(sliced.boxes, plain.boxes) and np.array_equal(sliced.scores, plain.scores)
    assert np.array_equal(sliced.labels, plain.labels)


def test_max_det_applies_after_the_merge(model_predictor):
    predictor = Predictor(model_predictor.backend, replace(POST, max_det=5))
    cfg = SliceConfig(64, 0.2, merge="nmm", merge_thresh=0.6)
    sliced = SlicedPredictor(predictor, cfg, batch=1)  # as the reference below: batch size moves scores by an ulp on CPU
    image = _noise(150, 260, seed=1)
    (res,) = sliced([image])
    # the reference: every pass on its own, shifted by its corner, merged, then capped
    passes = sliced.passes(150, 260)
    parts = [predictor([image[y1:y2, x1:x2]])[0] for x1, y1, x2, y2 in passes]
    boxes = np.concatenate([p.boxes + np.array([x1, y1, x1, y1], np.float32) for p, (x1, y1, _, _) in zip(parts, passes)])
    scores = np.concatenate([p.scores for p in parts])
    labels = np.concatenate([p.labels for p in parts])
    b, s, lab = merge_detections(torch.from_numpy(boxes), torch.from_numpy(scores), torch.from_numpy(labels), "nmm", 0.6)
    assert len(passes) == 16 and len(scores) == 80 and len(s) > 5  # each pass capped at 5, more than 5 merged
    assert np.array_equal(res.boxes, b[:5].numpy()) and np.array_equal(res.scores, s[:5].numpy())
    assert np.array_equal(res.labels, lab[:5].numpy()) and (np.diff(res.scores) <= 0).all()
    assert (res.boxes[:, :2] >= 0).all() and (res.boxes[:, 2] <= 260).all() and (res.boxes[:, 3] <= 150).all()


def test_it_is_a_drop_in_for_the_predictor(model_predictor):
    sliced = SlicedPredictor(model_predictor, SliceConfig(64, full_image=False))
    assert sliced.names == model_predictor.names and sliced.post_cfg is model_predictor.post_cfg
    assert sliced.timer is model_predictor.timer and sliced.size == 128 and sliced.backend is model_predictor.backend
    image = _noise(100, 140, seed=2)
    (result,) = sliced.results([Frame(Source("image", "a.jpg", 3), 0, image)])
    (direct,) = sliced([image])
    assert result.path == "a.jpg" and result.orig_shape == (100, 140) and result.names == ("cat", "dog", "bird")
    assert np.array_equal(result.boxes, direct.boxes) and np.array_equal(result.class_ids, direct.labels)
    assert sliced([]) == [] and sliced.results([]) == []
