"""Anchor generation over the FPN levels.

Order: levels lowest first; inside a level row-major cells ``(H, W)``; inside a cell ratio-major,
scale-minor, the same as torchvision's ``AnchorGenerator`` and the channel layout of the head
(channel ``a * K + k`` for anchor ``a``, class ``k``). ``R = sum(H_l * W_l * A)``.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor

from retina_cli.config import AnchorConfig


def cell_anchors(size: float, ratios: Sequence[float], scales: Sequence[float], rounding: bool) -> Tensor:
    """The ``A = len(ratios) * len(scales)`` anchors centred on (0, 0) -> ``(A, 4)`` float32 xyxy.

    A ratio is height / width; each anchor keeps the area ``(size * scale) ** 2``.
    """
    sides = torch.tensor([int(size * s) if rounding else size * s for s in scales], dtype=torch.float32)
    h_ratios = torch.sqrt(torch.tensor(list(ratios), dtype=torch.float32))
    w_ratios = 1.0 / h_ratios
    ws = (w_ratios[:, None] * sides[None, :]).reshape(-1)
    hs = (h_ratios[:, None] * sides[None, :]).reshape(-1)
    base = torch.stack((-ws, -hs, ws, hs), dim=1) / 2
    return base.round() if rounding else base


def grid_anchors(cells: Tensor, stride: int, height: int, width: int, offset: float) -> Tensor:
    """Shift ``cells`` ``(A, 4)`` over a ``height x width`` grid of the given stride -> ``(H*W*A, 4)``."""
    xs = (torch.arange(width, dtype=torch.float32) + offset) * stride
    ys = (torch.arange(height, dtype=torch.float32) + offset) * stride
    yy, xx = torch.meshgrid(ys, xs, indexing="ij")
    shifts = torch.stack((xx, yy, xx, yy), dim=-1).reshape(-1, 1, 4)
    return (shifts + cells.reshape(1, -1, 4)).reshape(-1, 4)


def generate_anchors(
    cfg: AnchorConfig, levels: Sequence[int], feature_sizes: Sequence[tuple[int, int]]
) -> list[Tensor]:
    """Anchors per level -> list of ``(H_l * W_l * A, 4)`` float32 xyxy (``torch.cat`` gives ``(R, 4)``)."""
    sizes = cfg.sizes_for(tuple(levels))
    out = []
    for lvl, size, (h, w) in zip(levels, sizes, feature_sizes):
        cells = cell_anchors(size, cfg.ratios, cfg.scales, cfg.rounding)
        out.append(grid_anchors(cells, 2**lvl, h, w, cfg.offset))
    return out


def feature_sizes_for(img_h: int, img_w: int, levels: Sequence[int]) -> list[tuple[int, int]]:
    """Feature-map sizes of an input ``img_h x img_w`` at each level (ceil division, as stride-2 convs give)."""
    return [(math.ceil(img_h / 2**lvl), math.ceil(img_w / 2**lvl)) for lvl in levels]


class AnchorCache:
    """Per-level anchors for a feature-map layout, computed once per (sizes, device)."""

    def __init__(self, cfg: AnchorConfig, levels: Sequence[int]) -> None:
        self.cfg = cfg
        self.levels = tuple(levels)
        self._cache: dict[tuple, list[Tensor]] = {}

    def __call__(self, feature_sizes: Sequence[tuple[int, int]], device: torch.device) -> list[Tensor]:
        key = (tuple(feature_sizes), str(device))
        if key not in self._cache:
            self._cache[key] = [a.to(device) for a in generate_anchors(self.cfg, self.levels, feature_sizes)]
        return self._cache[key]
