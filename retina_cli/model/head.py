"""The class and box subnets, shared across FPN levels."""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor, nn


def _tower(in_ch: int, width: int, depth: int, norm: str) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(depth):
        layers.append(nn.Conv2d(in_ch if i == 0 else width, width, 3, padding=1))
        if norm == "gn":
            # 32 groups (detectron2's and the GN paper's); a width that 32 does not divide gets the
            # largest group count that does, so a narrow head never refuses --head-norm gn
            layers.append(nn.GroupNorm(math.gcd(32, width), width))
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class RetinaHead(nn.Module):
    """``depth`` conv3x3+ReLU layers then a conv3x3 predictor, for classes and for boxes.

    Output channel ``a * K + k`` is anchor ``a``, class ``k`` (box: ``a * 4 + j``), matching the
    anchor order of :mod:`retina_cli.boxes.anchors`.
    """

    def __init__(
        self, in_channels: int, num_anchors: int, num_classes: int, depth: int = 4, width: int = 256,
        prior: float = 0.01, norm: str = "none",
    ) -> None:
        super().__init__()
        self.num_anchors = num_anchors
        self.num_classes = num_classes
        self.cls_tower = _tower(in_channels, width, depth, norm)
        self.box_tower = _tower(in_channels, width, depth, norm)
        last = width if depth else in_channels
        self.cls_logits = nn.Conv2d(last, num_anchors * num_classes, 3, padding=1)
        self.box_deltas = nn.Conv2d(last, num_anchors * 4, 3, padding=1)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, std=0.01)
                nn.init.zeros_(m.bias)
        # every anchor starts at foreground probability ``prior`` so the many easy negatives
        # do not swamp the first iterations (paper, section 4.1)
        nn.init.constant_(self.cls_logits.bias, -math.log((1 - prior) / prior))

    def forward(self, feats: Sequence[Tensor]) -> tuple[list[Tensor], list[Tensor]]:
        """FPN maps ``(N, C, H_l, W_l)`` -> per level ``(N, A*K, H_l, W_l)`` logits, ``(N, A*4, H_l, W_l)`` deltas."""
        cls_out = [self.cls_logits(self.cls_tower(f)) for f in feats]
        box_out = [self.box_deltas(self.box_tower(f)) for f in feats]
        return cls_out, box_out


def flatten_level(x: Tensor, last: int) -> Tensor:
    """``(N, A*last, H, W)`` -> ``(N, H*W*A, last)``: anchors in (H, W, A) order."""
    n, _, h, w = x.shape
    return x.view(n, -1, last, h, w).permute(0, 3, 4, 1, 2).reshape(n, -1, last)


def concat_levels(cls_out: Sequence[Tensor], box_out: Sequence[Tensor], num_classes: int) -> tuple[Tensor, Tensor]:
    """Per-level head outputs -> ``(N, R, K)`` logits and ``(N, R, 4)`` deltas, levels concatenated."""
    return (
        torch.cat([flatten_level(c, num_classes) for c in cls_out], dim=1),
        torch.cat([flatten_level(b, 4) for b in box_out], dim=1),
    )
