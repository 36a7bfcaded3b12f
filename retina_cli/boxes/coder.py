"""Box regression targets: the R-CNN (dx, dy, dw, dh) parameterisation, as in the paper.

Identical to torchvision's ``BoxCoder(weights=(1, 1, 1, 1))``: widths are ``x2 - x1`` (no +1),
centres ``x1 + 0.5 w``; decoding clamps dw, dh at ``log(1000 / 16)``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

DEFAULT_CLIP = math.log(1000.0 / 16)


def encode(boxes: Tensor, anchors: Tensor) -> Tensor:
    """Deltas that turn ``anchors`` into ``boxes``; both ``(..., 4)`` xyxy, broadcastable -> ``(..., 4)``."""
    aw = anchors[..., 2] - anchors[..., 0]
    ah = anchors[..., 3] - anchors[..., 1]
    ax = anchors[..., 0] + 0.5 * aw
    ay = anchors[..., 1] + 0.5 * ah
    bw = boxes[..., 2] - boxes[..., 0]
    bh = boxes[..., 3] - boxes[..., 1]
    bx = boxes[..., 0] + 0.5 * bw
    by = boxes[..., 1] + 0.5 * bh
    return torch.stack(((bx - ax) / aw, (by - ay) / ah, torch.log(bw / aw), torch.log(bh / ah)), dim=-1)


def decode(deltas: Tensor, anchors: Tensor, clip: float = DEFAULT_CLIP) -> Tensor:
    """Boxes from ``deltas`` ``(..., 4)`` applied to ``anchors`` ``(..., 4)`` xyxy -> ``(..., 4)`` xyxy."""
    aw = anchors[..., 2] - anchors[..., 0]
    ah = anchors[..., 3] - anchors[..., 1]
    ax = anchors[..., 0] + 0.5 * aw
    ay = anchors[..., 1] + 0.5 * ah
    dx, dy, dw, dh = deltas.unbind(-1)
    cx = dx * aw + ax
    cy = dy * ah + ay
    half_w = 0.5 * torch.exp(dw.clamp(max=clip)) * aw
    half_h = 0.5 * torch.exp(dh.clamp(max=clip)) * ah
    return torch.stack((cx - half_w, cy - half_h, cx + half_w, cy + half_h), dim=-1)
