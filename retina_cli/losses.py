"""Focal loss and box losses, computed for the whole batch on stacked ``(N, R, ...)`` tensors."""

from __future__ import annotations

from typing import Callable, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.ops import generalized_box_iou_loss

from retina_cli.boxes import coder
from retina_cli.boxes.matcher import FOREGROUND, IGNORE, match_anchors
from retina_cli.config import LossConfig


def sigmoid_focal_loss(logits: Tensor, targets: Tensor, gamma: float = 2.0, alpha: float = 0.25) -> Tensor:
    """Elementwise focal loss FL(p_t) = -alpha_t (1 - p_t)^gamma log(p_t); same shape as ``logits``.

    ``targets`` are 0/1 floats of the same shape. ``alpha < 0`` switches alpha weighting off; with
    ``gamma = 0`` and ``alpha < 0`` this is binary cross-entropy with logits.
    """
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    if gamma == 0:
        loss = ce
    else:
        # 1 - p_t straight from the logits: sigmoid(-x) where the target is 1, sigmoid(x) where it
        # is 0. Computed as 1 - p_t it rounds to exactly 0 once |x| > ~17, and for gamma < 1 the
        # gradient of 0 ** gamma is infinite (NaN losses at gamma 0.5, seen on BCCD); the clamp
        # keeps the base positive where even sigmoid underflows (|x| > ~88)
        one_minus_p_t = torch.sigmoid(torch.where(targets > 0.5, -logits, logits))
        loss = ce * one_minus_p_t.clamp(min=torch.finfo(one_minus_p_t.dtype).tiny) ** gamma
    if alpha >= 0:
        loss = (alpha * targets + (1 - alpha) * (1 - targets)) * loss
    return loss


class AnchorTargets(NamedTuple):
    """What each anchor is trained towards. state: ``(N, R)`` uint8 (matcher's BACKGROUND /
    FOREGROUND / IGNORE); cls_targets: ``(N, R, K)`` float32 one-hot of the matched GT class on
    foreground anchors, zero elsewhere; boxes: ``(N, R, 4)`` the matched GT box (meaningful on
    foreground anchors only)."""

    state: Tensor
    cls_targets: Tensor
    boxes: Tensor


def assign_targets(
    anchors: Tensor,
    gt_boxes: Tensor,
    gt_labels: Tensor,
    gt_valid: Tensor,
    cfg: LossConfig,
    num_classes: int,
    gt_ignore: Tensor | None = None,
) -> AnchorTargets:
    """Label every anchor of a batch as the loss sees it (shapes as in :func:`retinanet_loss`)."""
    if gt_boxes.shape[1] == 0:
        # no image of the batch has a box: one padding slot keeps the gathers below in range
        n = gt_boxes.shape[0]
        gt_boxes = gt_boxes.new_zeros((n, 1, 4))
        gt_labels = gt_labels.new_zeros((n, 1))
        gt_valid = gt_valid.new_zeros((n, 1))
        gt_ignore = None
    matches = match_anchors(
        anchors, gt_boxes, gt_valid, cfg.fg_iou, cfg.bg_iou, cfg.low_quality_matches, gt_ignore
    )
    fg = matches.state == FOREGROUND  # (N, R)
    matched_labels = torch.gather(gt_labels, 1, matches.gt_index)  # (N, R)
    cls_targets = torch.zeros((*fg.shape, num_classes), dtype=torch.float32, device=anchors.device)
    cls_targets[fg, matched_labels[fg]] = 1.0
    matched_boxes = torch.gather(gt_boxes, 1, matches.gt_index[..., None].expand(-1, -1, 4))  # (N, R, 4)
    return AnchorTargets(matches.state, cls_targets, matched_boxes)


def retinanet_loss(
    cls_logits: Tensor,
    box_deltas: Tensor,
    anchors: Tensor,
    gt_boxes: Tensor,
    gt_labels: Tensor,
    gt_valid: Tensor,
    cfg: LossConfig,
    gt_ignore: Tensor | None = None,
    normalizer: Tensor | Callable[[Tensor], Tensor] | None = None,
) -> dict[str, Tensor]:
    """RetinaNet loss for a batch.

    cls_logits: ``(N, R, K)``; box_deltas: ``(N, R, 4)``; anchors: ``(R, 4)`` xyxy;
    gt_boxes: ``(N, G, 4)`` xyxy padded; gt_labels: ``(N, G)`` int64 in ``[0, K)``;
    gt_valid / gt_ignore: ``(N, G)`` bool.
    normalizer: what to divide by: a tensor, or a function of this batch's foreground count
    (a 0-d int64 tensor) such as :func:`ddp_normalizer`; defaults to that count, at least 1.

    Returns ``{"cls", "box", "loss", "num_fg"}``: the focal loss summed over non-ignored anchors and
    the box loss summed over foreground anchors, each divided by the normaliser.
    """
    assigned = assign_targets(anchors, gt_boxes, gt_labels, gt_valid, cfg, cls_logits.shape[-1], gt_ignore)
    fg = assigned.state == FOREGROUND  # (N, R)
    valid = assigned.state != IGNORE  # (N, R)
    num_fg = fg.sum()
    if callable(normalizer):
        norm = normalizer(num_fg).to(cls_logits.dtype)
    else:
        norm = normalizer if normalizer is not None else num_fg.clamp(min=1).to(cls_logits.dtype)

    targets = assigned.cls_targets.to(cls_logits.dtype)
    focal = sigmoid_focal_loss(cls_logits[valid], targets[valid], cfg.gamma, cfg.alpha)
    cls_loss = focal.sum() / norm

    fg_anchors = anchors.expand(fg.shape[0], -1, -1)[fg]  # (F, 4)
    fg_boxes = assigned.boxes[fg]
    fg_deltas = box_deltas[fg].float()
    if cfg.box_loss == "giou":
        pred = coder.decode(fg_deltas, fg_anchors)
        box = generalized_box_iou_loss(pred, fg_boxes, reduction="sum")
    else:
        target = coder.encode(fg_boxes, fg_anchors)
        if cfg.box_loss == "l1":
            box = F.l1_loss(fg_deltas, target, reduction="sum")
        else:
            box = F.smooth_l1_loss(fg_deltas, target, reduction="sum", beta=cfg.smooth_l1_beta)
    box_loss = cfg.box_weight * box / norm
    return {"cls": cls_loss, "box": box_loss, "loss": cls_loss + box_loss, "num_fg": num_fg}


def ddp_normalizer(num_fg: Tensor) -> Tensor:
    """Under DDP: the foreground count of the whole global batch (summed over ranks, at least 1)
    divided by the number of ranks. DDP averages the ranks' gradients, so each rank dividing its
    loss sum by this makes W processes with batch b step exactly as one process with batch W*b.
    Without a process group: ``max(num_fg, 1)``."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return num_fg.clamp(min=1).float()
    total = num_fg.detach().float().clone()
    dist.all_reduce(total, op=dist.ReduceOp.SUM)
    return total.clamp(min=1) / dist.get_world_size()
