"""Anchor labelling for a whole batch at once (no per-image loop).

Each anchor gets a state: FOREGROUND (IoU >= fg_iou with its best GT), BACKGROUND (< bg_iou) or
IGNORE (in between, or matched to a GT marked ignore such as VOC ``difficult``). With low-quality
matches on, every GT also keeps the anchors that overlap it best, as in the paper's code.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from retina_cli.boxes.ops import pairwise_iou

BACKGROUND = 0
FOREGROUND = 1
IGNORE = 2


class Matches(NamedTuple):
    """gt_index: ``(N, R)`` int64 index into the padded GT (meaningful where state is FOREGROUND).
    state: ``(N, R)`` uint8, one of BACKGROUND / FOREGROUND / IGNORE."""

    gt_index: Tensor
    state: Tensor


def match_anchors(
    anchors: Tensor,
    gt_boxes: Tensor,
    gt_valid: Tensor,
    fg_iou: float = 0.5,
    bg_iou: float = 0.4,
    low_quality: bool = True,
    gt_ignore: Tensor | None = None,
) -> Matches:
    """Label ``anchors`` ``(R, 4)`` against padded GT ``gt_boxes`` ``(N, G, 4)``.

    gt_valid: ``(N, G)`` bool, False on padding. gt_ignore: ``(N, G)`` bool, True for GT boxes whose
    anchors are neither trained as foreground nor as background.
    """
    n, g = gt_boxes.shape[:2]
    r = anchors.shape[0]
    if g == 0:
        zeros = torch.zeros((n, r), dtype=torch.int64, device=anchors.device)
        return Matches(zeros, torch.full((n, r), BACKGROUND, dtype=torch.uint8, device=anchors.device))
    iou = pairwise_iou(gt_boxes, anchors)  # (N, G, R)
    iou.masked_fill_(~gt_valid[:, :, None], -1.0)  # in place: (N, G, R) is the loss stage's largest tensor
    best_iou, gt_index = iou.max(dim=1)  # (N, R)

    state = torch.full((n, r), IGNORE, dtype=torch.uint8, device=anchors.device)
    state[best_iou < bg_iou] = BACKGROUND
    fg = best_iou >= fg_iou
    if low_quality:
        # each GT keeps every anchor that ties for its best overlap (an anchor keeps its own best GT)
        best_per_gt = iou.max(dim=2, keepdim=True).values  # (N, G, 1)
        is_best = (iou == best_per_gt) & (best_per_gt > 0) & gt_valid[:, :, None]
        fg |= is_best.any(dim=1)
    state[fg] = FOREGROUND
    if gt_ignore is not None:
        # low-quality matches included: an ignored GT must never produce a foreground anchor
        matched_ignore = torch.gather(gt_ignore, 1, gt_index) & (state != BACKGROUND)
        state[matched_ignore] = IGNORE
    return Matches(gt_index, state)
