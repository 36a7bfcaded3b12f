"""Image and box transforms: letterbox to the square network input, flip, scale and colour jitter.

Coordinates are continuous pixels (pixel ``i`` covers ``[i, i + 1)``), boxes ``(n, 4)`` xyxy. The
letterbox is an affine map ``x_net = x * scale + pad_x`` (same for y with ``pad_y``): the image is
resized by ``scale`` (long side to ``size``) and **centred** on a ``size x size`` canvas of grey
114. With scale jitter the same map holds with another scale and a random, possibly negative
(cropping) offset, so :class:`LetterboxMeta` describes every geometric step but the flip.

Inference may use a **rectangular** canvas instead (:func:`rect_shape`): the same scale, each side
padded only up to a multiple of the model's top stride (640x480 at 640 px with P3-P7 -> 640x512),
as torchvision and ultralytics do: the network does not compute on a quarter of padding.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import cv2
import numpy as np
import torch
from torch import Tensor

from retina_cli.data.images import read_image

__all__ = [
    "PAD_VALUE",
    "AugmentConfig",
    "LetterboxMeta",
    "augment",
    "boxes_from_letterbox",
    "boxes_to_letterbox",
    "color_jitter",
    "hflip",
    "letterbox",
    "letterbox_batch",
    "letterbox_meta",
    "place",
    "rect_shape",
    "read_image",
]

PAD_VALUE = 114
# boxes narrower or shorter than this (network pixels) after a crop are dropped: nothing left to learn
MIN_SIDE = 1.0


@dataclass(frozen=True)
class LetterboxMeta:
    """Maps original pixels to the network input: ``net = orig * scale + pad``. ``size``: the long
    side's target; ``canvas``: ``(H, W)`` of a rectangular input, None for ``size x size``."""

    scale: float
    pad_x: float
    pad_y: float
    orig_w: int
    orig_h: int
    size: int
    canvas: tuple[int, int] | None = None

    @property
    def shape(self) -> tuple[int, int]:
        """``(H, W)`` of the network input this map leads to."""
        return self.canvas or (self.size, self.size)


@dataclass(frozen=True)
class AugmentConfig:
    """Training augmentation; each part is off at 0 / ``(1.0, 1.0)``.

    hflip: probability of a horizontal flip. scale_jitter: range of the factor applied on top of
    the letterbox scale (above 1 the image is cropped at a random offset, below 1 it is placed at a
    random offset). color_jitter: strength ``j`` of brightness, contrast and saturation factors
    drawn from ``[1 - j, 1 + j]``.
    """

    hflip: float = 0.5
    scale_jitter: tuple[float, float] = (0.75, 1.25)
    color_jitter: float = 0.3

    @classmethod
    def off(cls) -> "AugmentConfig":
        return cls(hflip=0.0, scale_jitter=(1.0, 1.0), color_jitter=0.0)


def place(image: np.ndarray, size: int | tuple[int, int], scale: float, pad_x: int, pad_y: int) -> np.ndarray:
    """Resize ``image`` ``(H, W, 3)`` uint8 by ``scale`` and paste it at ``(pad_x, pad_y)`` on a grey
    canvas, ``size x size`` or ``size = (H_c, W_c)``; negative or large offsets crop. -> ``(H_c, W_c, 3)`` uint8."""
    ch, cw = (size, size) if isinstance(size, int) else size
    h, w = image.shape[:2]
    new_w, new_h = max(1, round(w * scale)), max(1, round(h * scale))
    resized = image if (new_w, new_h) == (w, h) else cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    canvas = np.full((ch, cw, image.shape[2]), PAD_VALUE, dtype=np.uint8)
    x0, y0 = max(pad_x, 0), max(pad_y, 0)
    x1, y1 = min(pad_x + new_w, cw), min(pad_y + new_h, ch)
    if x1 > x0 and y1 > y0:
        canvas[y0:y1, x0:x1] = resized[y0 - pad_y : y1 - pad_y, x0 - pad_x : x1 - pad_x]
    return canvas


def _scaled(width: int, height: int, size: int) -> tuple[float, int, int]:
    scale = size / max(width, height)
    return scale, max(1, round(width * scale)), max(1, round(height * scale))


def rect_shape(width: int, height: int, size: int, stride: int) -> tuple[int, int]:
    """``(H, W)`` of the smallest canvas whose sides are multiples of ``stride`` (and at most
    ``size``) that holds a ``width x height`` image scaled to long side ``size``."""
    _, new_w, new_h = _scaled(width, height, size)
    return min(size, -(-new_h // stride) * stride), min(size, -(-new_w // stride) * stride)


def meta_canvas(canvas: tuple[int, int] | None, size: int) -> tuple[int, int] | None:
    """:attr:`LetterboxMeta.canvas` for a canvas ``(H, W)`` at ``size``: None for the square
    ``size x size`` (given or not), so a square map compares equal however it was made."""
    if canvas is None:
        return None
    ch, cw = int(canvas[0]), int(canvas[1])
    return None if (ch, cw) == (size, size) else (ch, cw)


def letterbox_meta(width: int, height: int, size: int, canvas: tuple[int, int] | None = None) -> LetterboxMeta:
    """The centred letterbox map of a ``width x height`` image, without touching pixels: long side
    scaled to ``size``, centred on ``size x size`` or on ``canvas`` = ``(H, W)``."""
    scale, new_w, new_h = _scaled(width, height, size)
    ch, cw = canvas or (size, size)
    return LetterboxMeta(scale, float((cw - new_w) // 2), float((ch - new_h) // 2), width, height, size,
                         meta_canvas(canvas, size))


def letterbox(image: np.ndarray, size: int, canvas: tuple[int, int] | None = None) -> tuple[np.ndarray, LetterboxMeta]:
    """``(H, W, 3)`` uint8 -> ``(size, size, 3)`` (or ``canvas`` = ``(H_c, W_c)``) uint8 with the long
    side scaled to ``size``, centred."""
    h, w = image.shape[:2]
    meta = letterbox_meta(w, h, size, canvas)
    return place(image, meta.shape, meta.scale, int(meta.pad_x), int(meta.pad_y)), meta


def letterbox_batch(images_bgr: Sequence[np.ndarray], size: int, stride: int | None = None,
                    canvas: tuple[int, int] | None = None) -> tuple[np.ndarray, list[LetterboxMeta]]:
    """BGR ``(H_i, W_i, 3)`` uint8 images -> RGB ``(N, H_c, W_c, 3)`` uint8 batch and the metas.

    stride None: the square ``size x size``. A stride: the smallest rectangle that holds every
    image of the batch (:func:`rect_shape`, the largest of them), each image centred on it.
    ``canvas`` = ``(H_c, W_c)``: that rectangle, already known to the caller (it must hold every
    image at ``size``). BGR -> RGB on the small canvases: the resize works per channel, so this
    equals letterboxing the RGB image.
    """
    if canvas is None and stride is not None:
        shapes = np.array([rect_shape(im.shape[1], im.shape[0], size, stride) for im in images_bgr])
        canvas = (int(shapes[:, 0].max()), int(shapes[:, 1].max()))
    boxed = [letterbox(im, size, canvas) for im in images_bgr]
    return np.ascontiguousarray(np.stack([c for c, _ in boxed])[..., ::-1]), [m for _, m in boxed]


def _offset(boxes: np.ndarray | Tensor, meta: LetterboxMeta) -> np.ndarray | Tensor:
    pad = [meta.pad_x, meta.pad_y, meta.pad_x, meta.pad_y]
    if isinstance(boxes, Tensor):
        return torch.tensor(pad, dtype=boxes.dtype, device=boxes.device)
    return np.asarray(pad, dtype=boxes.dtype if np.issubdtype(boxes.dtype, np.floating) else np.float64)


def boxes_to_letterbox(boxes: np.ndarray | Tensor, meta: LetterboxMeta) -> np.ndarray | Tensor:
    """``(..., 4)`` xyxy original pixels -> network-input pixels (numpy or torch, same type back)."""
    return boxes * meta.scale + _offset(boxes, meta)


def boxes_from_letterbox(boxes: np.ndarray | Tensor, meta: LetterboxMeta) -> np.ndarray | Tensor:
    """``(..., 4)`` xyxy network-input pixels -> original pixels, clipped to the original image."""
    out = (boxes - _offset(boxes, meta)) / meta.scale
    limits = [meta.orig_w, meta.orig_h, meta.orig_w, meta.orig_h]
    if isinstance(out, Tensor):
        return torch.minimum(out.clamp(min=0), torch.tensor(limits, dtype=out.dtype, device=out.device))
    return np.clip(out, 0, np.asarray(limits, dtype=out.dtype))


def hflip(image: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mirror ``(H, W, C)`` image and ``(n, 4)`` xyxy boxes left-right: ``x -> W - x``."""
    w = image.shape[1]
    flipped = boxes[:, [2, 1, 0, 3]] * np.array([-1, 1, -1, 1], boxes.dtype) + np.array([w, 0, w, 0], boxes.dtype)
    return np.ascontiguousarray(image[:, ::-1]), flipped


def color_jitter(image: np.ndarray, strength: float, rng: np.random.Generator) -> np.ndarray:
    """Random brightness, contrast and saturation factors in ``[1 - strength, 1 + strength]``;
    ``(H, W, 3)`` uint8 RGB in and out. Geometry is untouched."""
    if strength <= 0:
        return image
    b, c, s = rng.uniform(1 - strength, 1 + strength, size=3)
    img = image.astype(np.float32) * b
    img = (img - img.mean()) * c + img.mean()
    gray = img @ np.array([0.299, 0.587, 0.114], np.float32)
    img = (img - gray[..., None]) * s + gray[..., None]
    return np.clip(img + 0.5, 0, 255).astype(np.uint8)


def crop_boxes(boxes: np.ndarray, size: int | tuple[int, int], *arrays: np.ndarray) -> tuple[np.ndarray, ...]:
    """Clip ``(n, 4)`` network boxes to the canvas (``size x size``, or ``size = (H, W)``) and drop
    those thinner than MIN_SIDE; the per-box ``arrays`` (labels, ignore flags, ...) are filtered the
    same way."""
    h, w = (size, size) if isinstance(size, int) else size
    clipped = np.clip(boxes, 0, np.array([w, h, w, h], boxes.dtype))
    keep = ((clipped[:, 2] - clipped[:, 0]) >= MIN_SIDE) & ((clipped[:, 3] - clipped[:, 1]) >= MIN_SIDE)
    return (clipped[keep], *(a[keep] for a in arrays))


def augment(
    image: np.ndarray, boxes: np.ndarray, size: int, cfg: AugmentConfig, rng: np.random.Generator,
    canvas: tuple[int, int] | None = None,
) -> tuple[np.ndarray, np.ndarray, LetterboxMeta, bool, np.ndarray]:
    """Training transform: jittered letterbox, colour jitter, flip.

    image ``(H, W, 3)`` uint8, boxes ``(n, 4)`` float32 original pixels -> canvas
    ``(size, size, 3)`` uint8 (``(H_c, W_c, 3)`` with ``canvas = (H_c, W_c)``, e.g. the image's own
    :func:`rect_shape`), boxes ``(k, 4)`` float32 network pixels, the affine map used (before the
    flip), whether the canvas was flipped, and ``keep`` ``(n,)`` bool: the boxes that survived the
    crop (filter labels with it). The long side is scaled to ``size`` times the jitter whatever the
    canvas; a square canvas draws the same random stream as before rectangles existed.
    """
    h, w = image.shape[:2]
    ch, cw = canvas or (size, size)
    lo, hi = cfg.scale_jitter
    scale = size / max(w, h) * (rng.uniform(lo, hi) if hi > lo else lo)
    new_w, new_h = max(1, round(w * scale)), max(1, round(h * scale))
    if (lo, hi) == (1.0, 1.0):
        pad_x, pad_y = (cw - new_w) // 2, (ch - new_h) // 2
    else:
        pad_x = int(rng.integers(min(0, cw - new_w), max(0, cw - new_w) + 1))
        pad_y = int(rng.integers(min(0, ch - new_h), max(0, ch - new_h) + 1))
    meta = LetterboxMeta(scale, float(pad_x), float(pad_y), w, h, size, meta_canvas(canvas, size))
    out = place(image, (ch, cw), scale, pad_x, pad_y)
    if cfg.color_jitter > 0:
        # only the pixels of the image, after the resize (cheap for large photos; padding stays grey)
        ys = slice(max(pad_y, 0), min(pad_y + new_h, ch))
        xs = slice(max(pad_x, 0), min(pad_x + new_w, cw))
        out[ys, xs] = color_jitter(out[ys, xs], cfg.color_jitter, rng)
    net = boxes_to_letterbox(boxes.astype(np.float32), meta)
    idx = np.arange(boxes.shape[0])
    net, idx = crop_boxes(net, (ch, cw), idx)
    keep = np.zeros(boxes.shape[0], bool)
    keep[idx] = True
    flipped = bool(cfg.hflip > 0 and rng.random() < cfg.hflip)
    if flipped:
        out, net = hflip(out, net)
    return out, net.astype(np.float32), meta, flipped, keep
