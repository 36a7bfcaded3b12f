"""Elementary box operations. Boxes are ``xyxy`` in absolute pixels everywhere in the code."""

from __future__ import annotations

import torch
from torch import Tensor


def box_area(boxes: Tensor) -> Tensor:
    """Area of ``(..., 4)`` xyxy boxes -> ``(...)``; degenerate boxes have area 0."""
    return (boxes[..., 2] - boxes[..., 0]).clamp(min=0) * (boxes[..., 3] - boxes[..., 1]).clamp(min=0)


def pairwise_intersection(a: Tensor, b: Tensor) -> Tensor:
    """Intersection area of every box in ``a`` ``(..., M, 4)`` with every box in ``b`` ``(..., N, 4)`` -> ``(..., M, N)``.

    Leading dimensions broadcast as in :func:`pairwise_iou`; 0 for boxes that do not overlap.
    Width and height are formed one at a time, each ``(..., M, N)`` overwritten in place: a
    training batch's anchors against its GT (2 x 8 x 76,725 pairs at 640 px, P3-P7) never holds
    the four ``(..., M, N, 2)`` corner tensors at once (39 MB, the loss stage's peak).
    """
    def extent(lo: int, hi: int) -> Tensor:  # overlap along one axis, >= 0
        side = torch.minimum(a[..., :, None, hi], b[..., None, :, hi])
        return side.sub_(torch.maximum(a[..., :, None, lo], b[..., None, :, lo])).clamp_(min=0)

    return extent(0, 2).mul_(extent(1, 3))


def pairwise_iou(a: Tensor, b: Tensor) -> Tensor:
    """IoU of every box in ``a`` ``(..., M, 4)`` with every box in ``b`` ``(..., N, 4)`` -> ``(..., M, N)``.

    Leading dimensions broadcast, so a batch ``(B, G, 4)`` against shared anchors ``(R, 4)`` gives
    ``(B, G, R)``. Matches ``torchvision.ops.box_iou`` for 2-D inputs; 0 where the union is empty
    (two boxes that overlap have a positive union, so an empty union comes with no intersection).
    """
    inter = pairwise_intersection(a, b)
    union = (box_area(a)[..., :, None] + box_area(b)[..., None, :]).sub_(inter).clamp_(min=1e-12)
    return inter.div_(union)


def pairwise_ios(a: Tensor, b: Tensor) -> Tensor:
    """Intersection over the smaller box's area of every box in ``a`` ``(..., M, 4)`` with every box in
    ``b`` ``(..., N, 4)`` -> ``(..., M, N)``; 1 when one box lies inside the other.

    The overlap measure of sliced inference (SAHI's "IOS"): a box cut by a tile border is mostly
    inside the whole object's box, whatever their IoU. 0 where the smaller box has no area.
    """
    smaller = torch.minimum(box_area(a)[..., :, None], box_area(b)[..., None, :])
    # a box without area has no intersection: 0 / 1e-12 = 0, no where() needed
    return pairwise_intersection(a, b).div_(smaller.clamp_(min=1e-12))


def clip_boxes(boxes: Tensor, height: int | Tensor, width: int | Tensor) -> Tensor:
    """Clip ``(..., 4)`` xyxy boxes to ``[0, width] x [0, height]``."""
    x = boxes[..., 0::2].clamp(min=0, max=width)
    y = boxes[..., 1::2].clamp(min=0, max=height)
    return torch.stack((x[..., 0], y[..., 0], x[..., 1], y[..., 1]), dim=-1)


def xyxy_to_cxcywh(boxes: Tensor) -> Tensor:
    """``(..., 4)`` xyxy -> ``(..., 4)`` centre x, centre y, width, height."""
    x1, y1, x2, y2 = boxes.unbind(-1)
    return torch.stack(((x1 + x2) * 0.5, (y1 + y2) * 0.5, x2 - x1, y2 - y1), dim=-1)


def cxcywh_to_xyxy(boxes: Tensor) -> Tensor:
    """``(..., 4)`` centre x, centre y, width, height -> ``(..., 4)`` xyxy."""
    cx, cy, w, h = boxes.unbind(-1)
    return torch.stack((cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h), dim=-1)
