"""Rectangular inference canvases: sides padded to the top stride only, maps exact, batches padded."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from retina_cli.data.loader import DetectionTorchDataset, collate
from retina_cli.data.records import ImageRecord
from retina_cli.data.transforms import (
    PAD_VALUE, boxes_from_letterbox, boxes_to_letterbox, letterbox, letterbox_batch, letterbox_meta, rect_shape,
)


@pytest.mark.parametrize("w, h, size, stride, want", [
    (640, 480, 640, 128, (512, 640)),   # the paper's P3-P7 at 640: 480 -> 512
    (640, 480, 384, 64, (320, 384)),    # nano (P3-P6, 384): 288 -> 320
    (480, 640, 640, 128, (640, 512)),   # portrait
    (640, 640, 640, 128, (640, 640)),   # square stays square
    (1000, 10, 640, 128, (128, 640)),   # a strip: one stride high
    (640, 480, 512, 64, (384, 512)),    # already a multiple: no padding at all
])
def test_rect_shape(w, h, size, stride, want):
    assert rect_shape(w, h, size, stride) == want


def test_rect_letterbox_centres_the_image_and_maps_exactly():
    img = np.zeros((480, 640, 3), np.uint8)
    canvas, meta = letterbox(img, 384, rect_shape(640, 480, 384, 64))
    assert canvas.shape == (320, 384, 3) and meta.shape == (320, 384)
    assert (meta.scale, meta.pad_x, meta.pad_y) == (0.6, 0.0, 16.0)
    assert (canvas[:16] == PAD_VALUE).all() and (canvas[16:304] == 0).all() and (canvas[304:] == PAD_VALUE).all()
    boxes = np.array([[10.5, 20.25, 600.0, 470.0]], np.float32)
    np.testing.assert_allclose(boxes_from_letterbox(boxes_to_letterbox(boxes, meta), meta), boxes, atol=1e-4)


def test_square_meta_has_no_canvas():
    assert letterbox_meta(640, 480, 640).canvas is None
    assert letterbox_meta(640, 480, 640, (640, 640)).canvas is None
    assert letterbox_meta(640, 480, 640).shape == (640, 640)


def test_rect_batch_is_the_smallest_canvas_holding_every_image():
    wide, tall = np.zeros((480, 640, 3), np.uint8), np.zeros((640, 480, 3), np.uint8)
    batch, metas = letterbox_batch([wide, wide], 640, 128)
    assert batch.shape == (2, 512, 640, 3)
    batch, metas = letterbox_batch([wide, tall], 640, 128)
    assert batch.shape == (2, 640, 640, 3)  # together they need the square
    assert [m.pad_y for m in metas] == [80.0, 0.0] and [m.pad_x for m in metas] == [0.0, 80.0]
    assert letterbox_batch([wide], 640)[0].shape == (1, 640, 640, 3)  # no stride: the square


def test_eval_loader_pads_rect_canvases_to_the_batch(tmp_path):
    import cv2

    recs = []
    for i, (w, h) in enumerate([(640, 480), (480, 640)]):
        path = tmp_path / f"{i}.png"
        cv2.imwrite(str(path), np.full((h, w, 3), 7, np.uint8))
        recs.append(ImageRecord(path, w, h, np.array([[10, 10, 100, 100]], np.float32), np.zeros(1, np.int64), np.zeros(1, bool)))
    ds = DetectionTorchDataset(recs, 384, rect_stride=64)
    a, b = ds[0], ds[1]
    assert tuple(a.image.shape) == (3, 320, 384) and tuple(b.image.shape) == (3, 384, 320)
    images, _, metas = collate([a, b])
    assert tuple(images.shape) == (2, 3, 384, 384)
    # the extra rows and columns are grey at the bottom / right: every meta's map still holds
    assert (images[0, :, 320:] == PAD_VALUE).all() and (images[1, :, :, 320:] == PAD_VALUE).all()
    assert torch.equal(images[0, :, :320], a.image)
    net = boxes_to_letterbox(recs[0].boxes, metas[0])
    np.testing.assert_allclose(net, a.boxes.numpy())


def test_eval_batches_hold_one_canvas_shape_each():
    from retina_cli.data.loader import ShapeBatchSampler

    sizes = [(640, 480), (480, 640), (640, 480), (640, 480), (480, 640), (0, 0)]
    recs = [ImageRecord(None, w, h, np.zeros((0, 4), np.float32), np.zeros(0, np.int64), np.zeros(0, bool)) for w, h in sizes]
    batches = list(ShapeBatchSampler(recs, 640, 128, batch_size=2))
    assert batches == [[0, 2], [3], [1, 4], [5]]  # record order within a shape; an unknown size alone
    assert sorted(i for b in batches for i in b) == list(range(len(recs)))


def test_train_loader_puts_each_augmented_image_on_its_own_rectangle(tmp_path):
    import cv2

    from retina_cli.data.loader import make_loader
    from retina_cli.data.transforms import AugmentConfig

    recs = []
    for i, (w, h) in enumerate([(640, 480), (640, 480), (480, 640)]):
        path = tmp_path / f"{i}.png"
        cv2.imwrite(str(path), np.full((h, w, 3), 7, np.uint8))
        recs.append(ImageRecord(path, w, h, np.array([[10, 10, 600, 470]], np.float32) if w > h
                                else np.array([[10, 10, 470, 600]], np.float32), np.zeros(1, np.int64), np.zeros(1, bool)))
    loader = make_loader(recs, 512, 1, train=True, augment=AugmentConfig(hflip=1.0), rect_stride=64, seed=3)
    for epoch in range(3):
        loader.sampler.set_epoch(epoch)
        for images, targets, metas in loader:
            h, w = images.shape[2:]
            (want,) = {rect_shape(m.orig_w, m.orig_h, 512, 64) for m in metas}
            assert (h, w) == want and metas[0].shape == want  # 4:3 -> 384 x 512, no square padding
            b = targets.boxes[0, : int(targets.valid[0].sum())]
            assert (b[:, 0::2] <= w).all() and (b[:, 1::2] <= h).all() and (b >= 0).all()
    # a batch of both orientations pads to the largest height and width
    images, _, _ = next(iter(make_loader(recs, 512, 3, train=True, rect_stride=64)))
    assert tuple(images.shape[2:]) == (512, 512)
    # without a stride: the square, as before
    images, _, _ = next(iter(make_loader(recs[:1], 512, 1, train=True)))
    assert tuple(images.shape[2:]) == (512, 512)
