"""Raw head outputs -> detections: per-level top-k, decode, clip, class-aware NMS, cap.

Works on the whole batch at once: one top-k per level over ``(N, R_l * K)`` and a single
``batched_nms`` call whose groups are (image, class) pairs.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import torch
from torch import Tensor
from torchvision.ops import batched_nms

from retina_cli.boxes import coder
from retina_cli.boxes.ops import clip_boxes
from retina_cli.config import PostprocessConfig


class Detections(NamedTuple):
    """One image's detections, best first: boxes ``(D, 4)`` xyxy, scores ``(D,)``, labels ``(D,)`` int64."""

    boxes: Tensor
    scores: Tensor
    labels: Tensor


class Candidates(NamedTuple):
    """Per-level top-k candidates of a batch, decoded but not yet thresholded, clipped or NMS-ed.

    scores ``(N, C)`` sigmoid, labels ``(N, C)`` int64, boxes ``(N, C, 4)`` xyxy network-input
    pixels, with ``C = sum_l min(topk, R_l * K)``. This is what an exported ONNX graph returns.
    """

    scores: Tensor
    labels: Tensor
    boxes: Tensor


def topk_candidates(
    cls_logits: Sequence[Tensor],
    box_deltas: Sequence[Tensor],
    anchors: Sequence[Tensor],
    topk: int,
    bbox_clip: float = coder.DEFAULT_CLIP,
) -> Candidates:
    """Per level the ``topk`` best (anchor, class) pairs, decoded.

    cls_logits[l]: ``(N, R_l, K)``; box_deltas[l]: ``(N, R_l, 4)``; anchors[l]: ``(R_l, 4)``.
    """
    n = cls_logits[0].shape[0]
    num_classes = cls_logits[0].shape[-1]
    all_scores, all_labels, all_boxes = [], [], []
    for logits, deltas, level_anchors in zip(cls_logits, box_deltas, anchors):
        flat = logits.reshape(n, -1)  # (N, R_l * K)
        # traced for ONNX, k is a graph value: a dynamic-size graph then works at any input size
        k = torch.clamp(torch.as_tensor(flat.shape[1]), max=topk) if torch.jit.is_tracing() else min(topk, flat.shape[1])
        # top-k on logits: sigmoid is monotonic, so only the k survivors pay for it
        top_logits, top_idx = flat.topk(k, dim=1)  # (N, k)
        anchor_idx = top_idx // num_classes
        all_scores.append(torch.sigmoid(top_logits.float()))
        all_labels.append(top_idx % num_classes)
        picked = torch.gather(deltas, 1, anchor_idx[..., None].expand(-1, -1, 4)).float()  # (N, k, 4)
        all_boxes.append(coder.decode(picked, level_anchors[anchor_idx], bbox_clip))
    return Candidates(torch.cat(all_scores, dim=1), torch.cat(all_labels, dim=1), torch.cat(all_boxes, dim=1))


def select_detections(cand: Candidates, image_size: tuple[int, int], cfg: PostprocessConfig) -> list[Detections]:
    """Clip to ``image_size`` = (H, W), drop scores <= ``score_thresh``, class-aware NMS, keep ``max_det``.

    Takes :class:`Candidates` ``(N, C)``; ``cfg.topk`` is not used here (it was applied before).
    """
    scores, labels = cand.scores, cand.labels  # (N, C)
    n = scores.shape[0]
    boxes = clip_boxes(cand.boxes, image_size[0], image_size[1])  # (N, C, 4)
    image_idx = torch.arange(n, device=scores.device)[:, None].expand_as(scores)
    # group ids only need to be distinct per (image, class): the largest label + 1 is enough
    num_groups = int(labels.max()) + 1 if labels.numel() else 1

    keep = scores > cfg.score_thresh
    scores, labels, boxes, image_idx = scores[keep], labels[keep], boxes[keep], image_idx[keep]
    kept = batched_nms(boxes, scores, image_idx * num_groups + labels, cfg.nms_thresh)  # by score
    # stable sort by image keeps each image's detections in score order; then cap per image
    kept = kept[torch.sort(image_idx[kept], stable=True).indices]
    img_of = image_idx[kept]
    counts = torch.bincount(img_of, minlength=n)
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.arange(kept.numel(), device=kept.device) - starts[img_of]
    kept = kept[rank < cfg.max_det]
    per_image = torch.bincount(image_idx[kept], minlength=n).tolist()
    return [
        Detections(b, s, lab)
        for b, s, lab in zip(boxes[kept].split(per_image), scores[kept].split(per_image), labels[kept].split(per_image))
    ]


def postprocess(
    cls_logits: Sequence[Tensor],
    box_deltas: Sequence[Tensor],
    anchors: Sequence[Tensor],
    image_size: tuple[int, int],
    cfg: PostprocessConfig,
    bbox_clip: float = coder.DEFAULT_CLIP,
) -> list[Detections]:
    """Detections per image, boxes in the network input's pixels (clipped to ``image_size`` = (H, W)).

    cls_logits[l]: ``(N, R_l, K)``; box_deltas[l]: ``(N, R_l, 4)``; anchors[l]: ``(R_l, 4)``.
    """
    return select_detections(topk_candidates(cls_logits, box_deltas, anchors, cfg.topk, bbox_clip), image_size, cfg)
