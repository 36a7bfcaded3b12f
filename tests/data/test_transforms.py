"""Letterbox numbers, exact round trips, and a property test: painted boxes follow every transform."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st

from retina_cli.data.transforms import (
    PAD_VALUE,
    AugmentConfig,
    LetterboxMeta,
    augment,
    boxes_from_letterbox,
    boxes_to_letterbox,
    color_jitter,
    hflip,
    crop_boxes,
    letterbox,
    place,
    rect_shape,
)


def test_letterbox_numbers():
    img = np.zeros((30, 40, 3), np.uint8)
    out, meta = letterbox(img, 64)
    assert meta == LetterboxMeta(scale=1.6, pad_x=0.0, pad_y=8.0, orig_w=40, orig_h=30, size=64)
    assert out.shape == (64, 64, 3) and out.dtype == np.uint8
    assert (out[:8] == PAD_VALUE).all() and (out[56:] == PAD_VALUE).all() and (out[8:56] == 0).all()
    boxes = np.array([[10, 7.5, 30, 22.5], [0, 0, 40, 30]], np.float32)
    np.testing.assert_allclose(boxes_to_letterbox(boxes, meta), [[16, 20, 48, 44], [0, 8, 64, 56]], atol=1e-5)


def test_letterbox_tall_image_is_centred_horizontally():
    out, meta = letterbox(np.zeros((100, 50, 3), np.uint8), 32)
    assert (meta.scale, meta.pad_x, meta.pad_y) == (0.32, 8.0, 0.0)
    assert (out[:, :8] == PAD_VALUE).all() and (out[:, 8:24] == 0).all() and (out[:, 24:] == PAD_VALUE).all()


@settings(max_examples=100, deadline=None)
@given(
    w=st.integers(5, 500), h=st.integers(5, 500), size=st.sampled_from([32, 64, 640]),
    frac=st.lists(st.floats(0, 1), min_size=4, max_size=4),
)
def test_letterbox_round_trip_is_exact(w, h, size, frac):
    _, meta = letterbox(np.zeros((h, w, 3), np.uint8), size)
    f = np.sort(np.array(frac).reshape(2, 2), axis=0)  # x1 <= x2, y1 <= y2
    boxes = np.array([[f[0, 0] * w, f[0, 1] * h, f[1, 0] * w, f[1, 1] * h]], np.float64)
    np.testing.assert_allclose(boxes_from_letterbox(boxes_to_letterbox(boxes, meta), meta), boxes, atol=1e-9)
    t = torch.from_numpy(boxes)
    torch.testing.assert_close(boxes_from_letterbox(boxes_to_letterbox(t, meta), meta), t)


def test_from_letterbox_clips_to_the_original_image():
    meta = LetterboxMeta(scale=2.0, pad_x=0.0, pad_y=10.0, orig_w=20, orig_h=10, size=40)
    net = torch.tensor([[-4.0, 0.0, 50.0, 20.0]])
    torch.testing.assert_close(boxes_from_letterbox(net, meta), torch.tensor([[0.0, 0.0, 20.0, 5.0]]))


def test_hflip_boxes_and_pixels():
    img = np.zeros((4, 10, 3), np.uint8)
    img[:, 0:3] = 255  # box [0, 0, 3, 4]
    out, boxes = hflip(img, np.array([[0, 0, 3, 4]], np.float32))
    np.testing.assert_array_equal(boxes, [[7, 0, 10, 4]])
    assert (out[:, 7:] == 255).all() and (out[:, :7] == 0).all()


def test_color_jitter_numbers_on_flat_grey():
    # on a flat grey image contrast and saturation do nothing, so the output is 100 * brightness
    rng_a, rng_b = np.random.default_rng(5), np.random.default_rng(5)
    out = color_jitter(np.full((3, 3, 3), 100, np.uint8), 0.4, rng_a)
    b = rng_b.uniform(0.6, 1.4, size=3)[0]
    assert (out == int(100 * b + 0.5)).all()
    same = np.full((2, 2, 3), 7, np.uint8)
    assert color_jitter(same, 0.0, rng_a) is same


augment_configs = st.builds(
    AugmentConfig,
    hflip=st.sampled_from([0.0, 0.5, 1.0]),
    scale_jitter=st.sampled_from([(1.0, 1.0), (0.5, 1.5), (1.3, 2.0)]),
    color_jitter=st.just(0.0),
)


@pytest.mark.parametrize("pad_x", [0, -23, 5])
def test_resized_edge_crosses_half_way_on_the_mapped_box_edge(pad_x):
    """cv2.resize (INTER_LINEAR) samples output pixel centre ``xd + 0.5`` at input ``(xd + 0.5) / s``
    in the same continuous coordinates as the boxes (pixel i covers [i, i + 1)), so a step edge at
    input x = 7 ramps over s output pixels and crosses 50 % exactly at ``7 * s + pad_x``."""
    img = np.zeros((12, 12, 3), np.uint8)
    img[:, :7] = 255
    s = 10.0  # 12 px -> 120 px exactly: no rounding of the resized size
    canvas = place(img, 64, s, pad_x, 0)
    edge = 7 * s + pad_x
    centres = np.arange(64) + 0.5
    expected = 255 * np.clip(0.5 + (edge - centres) / s, 0, 1)
    visible = (centres > pad_x) & (centres < pad_x + 120)
    np.testing.assert_allclose(canvas[0, visible, 0], expected[visible], atol=1.0)


@settings(max_examples=150, deadline=None)
@given(
    w=st.integers(12, 90), h=st.integers(12, 90), size=st.sampled_from([32, 64]),
    corners=st.lists(st.floats(0, 1), min_size=4, max_size=4), cfg=augment_configs, seed=st.integers(0, 2**31),
    rect=st.booleans(),
)
# found by this test: a 12 px image upscaled ~9.3x and cropped; the pixel 1.7 px inside the box's
# inner corner is 124/255 (see the margin below)
@example(w=12, h=12, size=64, corners=[0.0, 0.0, 0.5, 0.5],
         cfg=AugmentConfig(hflip=0.0, scale_jitter=(1.3, 2.0), color_jitter=0.0), seed=0, rect=False)
def test_painted_box_follows_every_transform(w, h, size, corners, cfg, seed, rect):
    """Paint the box interior white on black, transform image and box together, and check that
    pixels well inside the transformed box are white and pixels well outside it are not; on the
    square canvas and on the image's own rectangle (sides multiples of 16) alike."""
    c = np.sort(np.array(corners).reshape(2, 2), axis=0)
    x1, x2 = sorted((int(c[0, 0] * (w - 2)), int(c[1, 0] * (w - 2)) + 2))
    y1, y2 = sorted((int(c[0, 1] * (h - 2)), int(c[1, 1] * (h - 2)) + 2))
    img = np.zeros((h, w, 3), np.uint8)
    img[y1:y2, x1:x2] = 255
    box = np.array([[x1, y1, x2, y2]], np.float32)
    shape = rect_shape(w, h, size, 16) if rect else None
    canvas, net, meta, flipped, keep = augment(img, box, size, cfg, np.random.default_rng(seed), shape)
    ch, cw = shape or (size, size)
    assert canvas.shape == (ch, cw, 3) and meta.shape == (ch, cw)

    # the unclipped network box, from the meta (and the flip) alone
    full = boxes_to_letterbox(box, meta)[0]
    if flipped:
        full = np.array([cw - full[2], full[1], cw - full[0], full[3]])
    xs, ys = np.arange(cw) + 0.5, np.arange(ch) + 0.5
    margin = 1.5  # bilinear interpolation plus the <= 0.5 px rounding of the resized image size
    # The resize puts each edge's 50 % crossing on the mapped box edge (the test above), but at a
    # corner bilinear multiplies the two ramps: upscaled by s, a pixel d px inside both edges is
    # (0.5 + d / s) ** 2 bright, above half only for d > (sqrt(0.5) - 0.5) * s = 0.21 s. So "well
    # inside" grows with the upscale factor (12 px -> 64 with jitter 1.75: s = 9.3, d > 1.9 px).
    inner = max(margin, 0.5 + 0.25 * meta.scale)
    inside_x = (xs > full[0] + inner) & (xs < full[2] - inner)
    inside_y = (ys > full[1] + inner) & (ys < full[3] - inner)
    outside = ~(
        ((xs > full[0] - margin) & (xs < full[2] + margin))[None, :]
        & ((ys > full[1] - margin) & (ys < full[3] + margin))[:, None]
    )
    bright = canvas[..., 0] > 127  # the half-way value sits on the box edge, at any scale
    assert not bright[outside].any()
    assert bright[np.ix_(inside_y, inside_x)].all()
    if keep[0]:
        np.testing.assert_allclose(net[0], np.clip(full, 0, [cw, ch, cw, ch]), atol=1e-4)
        # and back: the kept box maps into the original image inside the painted box
        back = boxes_from_letterbox(boxes_to_letterbox(box, meta), meta)
        np.testing.assert_allclose(back, box, atol=1e-4)
    else:
        assert net.shape == (0, 4)
        visible = np.clip(full, 0, [cw, ch, cw, ch])
        assert min(visible[2] - visible[0], visible[3] - visible[1]) < 1.0


def test_augment_off_equals_letterbox():
    img = np.random.default_rng(0).integers(0, 255, (30, 40, 3), dtype=np.uint8)
    box = np.array([[10, 7.5, 30, 22.5]], np.float32)
    canvas, net, meta, flipped, keep = augment(img, box, 64, AugmentConfig.off(), np.random.default_rng(0))
    ref, ref_meta = letterbox(img, 64)
    assert meta == ref_meta and not flipped and keep.tolist() == [True]
    np.testing.assert_array_equal(canvas, ref)
    np.testing.assert_allclose(net, [[16, 20, 48, 44]], atol=1e-5)


def test_augment_on_a_square_canvas_draws_the_stream_of_no_canvas():
    """canvas=(size, size) is the old square path: same pixels, boxes and meta for any seed."""
    img = np.random.default_rng(1).integers(0, 255, (48, 64, 3), dtype=np.uint8)
    box = np.array([[5, 6, 40, 30], [50, 2, 63, 47]], np.float32)
    for seed in range(5):
        a = augment(img, box, 64, AugmentConfig(), np.random.default_rng(seed))
        b = augment(img, box, 64, AugmentConfig(), np.random.default_rng(seed), (64, 64))
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_array_equal(a[1], b[1])
        assert a[2:4] == b[2:4] and a[2].canvas is None


def test_augment_off_on_a_rectangle_equals_the_rectangular_letterbox():
    img = np.random.default_rng(0).integers(0, 255, (480, 640, 3), dtype=np.uint8)
    box = np.array([[100, 50, 300, 470]], np.float32)
    shape = rect_shape(640, 480, 512, 64)
    assert shape == (384, 512)
    canvas, net, meta, _, _ = augment(img, box, 512, AugmentConfig.off(), np.random.default_rng(0), shape)
    ref, ref_meta = letterbox(img, 512, shape)
    assert meta == ref_meta
    np.testing.assert_array_equal(canvas, ref)
    np.testing.assert_allclose(net, [[80, 40, 240, 376]], atol=1e-4)


def test_crop_boxes_clips_each_axis_to_its_own_side():
    boxes = np.array([[-5, -5, 600, 500], [505, 10, 700, 20], [10, 390, 20, 400]], np.float32)
    kept, idx = crop_boxes(boxes, (384, 512), np.arange(3))
    np.testing.assert_array_equal(kept, [[0, 0, 512, 384], [505, 10, 512, 20]])
    assert idx.tolist() == [0, 1]  # the third lies below the 384-high canvas
