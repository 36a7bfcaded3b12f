"""Merging the detections of overlapping windows (and of the whole image) into one set per image.

Two methods, both class-aware (boxes of different classes never interact) and both returning the
kept detections best score first:

- ``"nms"``: IoU non-maximum suppression (``torchvision.ops.batched_nms``): of two boxes of a
  class with IoU > ``thresh`` the lower-scored one is dropped.
- ``"nmm"``: SAHI's greedy non-maximum *merging* by intersection over the smaller box (IoS). The
  kept set is exactly greedy NMS's with IoS as the overlap: going down the scores, a box is kept
  unless a box already kept, of its class, has IoS > ``thresh`` with it. Every box not kept is
  absorbed by the highest-scored kept box of its class that matches it; each kept box grows to
  the union (enclosing box) of itself and what it absorbed, and keeps its own score. Matching
  is judged on the boxes as detected, not as they grow. So in a chain A-B-C (scores A > B > C,
  A matches B, B matches C, A does not match C), A absorbs B and C is kept on its own (B, being
  absorbed, absorbs nothing): two boxes, A grown over B, and C; as SAHI's ``greedy_nmm`` does.

Vectorised: the kept set is the fixed point of Cluster-NMS's iteration on the score-sorted
upper-triangular match matrix (Zheng et al., "Enhancing Geometric Factors in Model Learning and
Inference for Object Detection and Instance Segmentation", 2021), which equals greedy NMS's; the
growth is one ``scatter_reduce`` per corner. Memory: the ``(D, D)`` bool match matrix (built in
blocks of rows) for D detections.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchvision.ops import batched_nms

from retina_cli.boxes.ops import pairwise_ios


def merge_detections(
    boxes: Tensor, scores: Tensor, labels: Tensor, method: str = "nms", thresh: float = 0.5
) -> tuple[Tensor, Tensor, Tensor]:
    """boxes ``(D, 4)`` float xyxy, scores ``(D,)``, labels ``(D,)`` int64 -> the kept (or merged)
    ``(K, 4)``, ``(K,)``, ``(K,)``, best score first, on the input's device. method: "nms" or "nmm"
    (see the module docstring); thresh: the IoU (nms) or IoS (nmm) above which two boxes match."""
    if method == "nms":
        keep = batched_nms(boxes.float(), scores.float(), labels, thresh)  # by score, descending
        return boxes[keep], scores[keep], labels[keep]
    if method == "nmm":
        return _nmm(boxes, scores, labels, thresh)
    raise ValueError(f"merge method {method!r}: expected nms or nmm")


def nmm_kept(matches: Tensor) -> Tensor:
    """Greedy NMS's kept set of a score-sorted ``(D, D)`` bool matrix, ``matches[i, j]``: box i (the
    better scored, ``i < j``) suppresses box j when kept -> ``(D,)`` bool.

    Cluster-NMS: start with every box kept and drop each box that some kept box suppresses, until
    nothing changes. It converges, at the latest after D rounds (the first t boxes are final after
    round t), to the greedy result; boxes rarely chain, so it takes a few.
    """
    keep = torch.ones(matches.shape[0], dtype=torch.bool, device=matches.device)
    for _ in range(matches.shape[0]):
        new = ~matches[keep].any(dim=0)
        if torch.equal(new, keep):
            break
        keep = new
    return keep


def _matches(boxes: Tensor, labels: Tensor, thresh: float, chunk_elems: int = 1 << 22) -> Tensor:
    """Score-sorted boxes ``(D, 4)`` and labels ``(D,)`` -> ``(D, D)`` bool: ``i < j``, same class,
    IoS > thresh. Built a block of rows at a time: the IoS of all pairs at once would hold several
    ``(D, D)`` float temporaries (gigabytes for the ~10k detections of a large image's windows)."""
    d = boxes.shape[0]
    cols = torch.arange(d, device=boxes.device)
    rows_per_chunk = max(1, chunk_elems // max(d, 1))
    out = torch.empty(d, d, dtype=torch.bool, device=boxes.device)
    for r0 in range(0, d, rows_per_chunk):  # blocks of rows, not detections
        r1 = min(d, r0 + rows_per_chunk)
        ios = pairwise_ios(boxes[r0:r1], boxes)  # (r, D)
        out[r0:r1] = (ios > thresh) & (labels[r0:r1, None] == labels[None, :]) & (cols[None, :] > cols[r0:r1, None])
    return out


def _nmm(boxes: Tensor, scores: Tensor, labels: Tensor, thresh: float) -> tuple[Tensor, Tensor, Tensor]:
    d = boxes.shape[0]
    if d == 0:
        return boxes, scores, labels
    order = torch.sort(scores, descending=True, stable=True).indices
    boxes, scores, labels = boxes[order], scores[order], labels[order]
    matches = _matches(boxes.float(), labels, thresh)  # (D, D)
    keep = nmm_kept(matches)  # (D,)
    kept_idx = keep.nonzero().squeeze(1)  # (K,) ascending: best score first
    # every box not kept is matched by a kept one (the fixed point says so); argmax gives the first
    # such row, i.e. the best-scored kept box, and each kept box owns itself
    first = matches[kept_idx].to(torch.uint8).argmax(dim=0)  # (D,)
    owner = torch.where(keep, torch.arange(d, device=boxes.device), kept_idx[first])  # (D,)
    grown = boxes.clone()
    idx = owner[:, None].expand(-1, 2)
    grown[:, :2] = grown[:, :2].scatter_reduce(0, idx, boxes[:, :2], reduce="amin", include_self=True)
    grown[:, 2:] = grown[:, 2:].scatter_reduce(0, idx, boxes[:, 2:], reduce="amax", include_self=True)
    return grown[keep], scores[keep], labels[keep]
