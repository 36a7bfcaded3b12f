"""Padded per-batch ground truth, the form the matcher and loss take."""

from __future__ import annotations

from typing import NamedTuple, Sequence

import torch
from torch import Tensor


class BatchTargets(NamedTuple):
    """GT of N images padded to G boxes: boxes ``(N, G, 4)`` xyxy float32 (network-input pixels),
    labels ``(N, G)`` int64, valid ``(N, G)`` bool (False on padding), ignore ``(N, G)`` bool
    (VOC difficult, COCO crowd: neither foreground nor background)."""

    boxes: Tensor
    labels: Tensor
    valid: Tensor
    ignore: Tensor

    def to(self, device: torch.device | str) -> "BatchTargets":
        return BatchTargets(*(t.to(device, non_blocking=True) for t in self))


def pad_targets(
    boxes: Sequence[Tensor], labels: Sequence[Tensor], ignore: Sequence[Tensor] | None = None
) -> BatchTargets:
    """Stack per-image ``(G_i, 4)`` boxes, ``(G_i,)`` labels and ``(G_i,)`` ignore flags, padding to max G_i."""
    n = len(boxes)
    g = max((b.shape[0] for b in boxes), default=0)
    out_boxes = torch.zeros((n, g, 4), dtype=torch.float32)
    out_labels = torch.zeros((n, g), dtype=torch.int64)
    valid = torch.zeros((n, g), dtype=torch.bool)
    out_ignore = torch.zeros((n, g), dtype=torch.bool)
    for i, (b, lab) in enumerate(zip(boxes, labels)):
        k = b.shape[0]
        out_boxes[i, :k] = b
        out_labels[i, :k] = lab
        valid[i, :k] = True
        if ignore is not None:
            out_ignore[i, :k] = ignore[i]
    return BatchTargets(out_boxes, out_labels, valid, out_ignore)
