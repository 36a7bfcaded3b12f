"""How well an anchor configuration covers a dataset's GT boxes at the network input size.

Foreground anchors per box come from the training matcher itself
(:func:`retina_cli.boxes.matcher.match_anchors`), run on batches of letterboxed GT; "unmatched"
means no anchor reaches IoU >= ``fg_iou`` with the box (such a box only trains through the
matcher's low-quality fallback).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from torch import Tensor

from retina_cli.anchors.search import best_anchor_iou
from retina_cli.boxes.anchors import feature_sizes_for, generate_anchors
from retina_cli.boxes.matcher import FOREGROUND, match_anchors
from retina_cli.boxes.ops import box_area, pairwise_iou
from retina_cli.config import AnchorConfig
from retina_cli.data.batch import pad_targets
from retina_cli.data.records import ImageRecord
from retina_cli.data.transforms import boxes_to_letterbox, letterbox_meta

# COCO size buckets (area in pixels^2), applied here to network-input pixels
SMALL, MEDIUM = 32**2, 96**2
BUCKETS = ("small", "medium", "large")


@dataclass
class AnchorFit:
    """Per GT box over the records (ignored boxes left out), in network-input pixels:
    labels ``(B,)`` int64, areas ``(B,)`` float32, best_iou ``(B,)`` float32 (best IoU with any
    anchor), positives ``(B,)`` int64 (anchors the matcher labels foreground for this box; -1
    where the matcher was not run on the box's image)."""

    labels: np.ndarray
    areas: np.ndarray
    best_iou: np.ndarray
    positives: np.ndarray

    @property
    def buckets(self) -> np.ndarray:
        """``(B,)`` int: 0 small, 1 medium, 2 large."""
        return np.digitize(self.areas, [SMALL, MEDIUM])


def all_anchors(cfg: AnchorConfig, levels: Sequence[int], img_size: int) -> Tensor:
    """``(R, 4)`` anchors of a square ``img_size`` input."""
    return torch.cat(generate_anchors(cfg, levels, feature_sizes_for(img_size, img_size, levels)))


def letterboxed_gt(records: Sequence[ImageRecord], img_size: int):
    """Records -> padded targets in network-input pixels (no pixels are read)."""
    boxes, labels, ignore = [], [], []
    for r in records:
        meta = letterbox_meta(r.width, r.height, img_size)
        boxes.append(torch.from_numpy(boxes_to_letterbox(r.boxes.astype(np.float32), meta)))
        labels.append(torch.from_numpy(r.labels))
        ignore.append(torch.from_numpy(r.ignore))
    return pad_targets(boxes, labels, ignore)


def match_batch(records: Sequence[ImageRecord], anchors: Tensor, img_size: int, fg_iou: float, bg_iou: float):
    """-> (targets, matches, best IoU per GT ``(N, G)``) for a batch of records."""
    targets = letterboxed_gt(records, img_size)
    matches = match_anchors(anchors, targets.boxes, targets.valid, fg_iou, bg_iou, True, targets.ignore)
    best = pairwise_iou(targets.boxes, anchors).amax(dim=-1) if targets.boxes.shape[1] else targets.boxes[..., 0]
    return targets, matches, best


def anchor_fit(
    records: Sequence[ImageRecord],
    cfg: AnchorConfig,
    levels: Sequence[int],
    img_size: int,
    fg_iou: float = 0.5,
    bg_iou: float = 0.4,
    chunk: int = 8,
    matched_images: int | None = None,
) -> AnchorFit:
    """Best anchor IoU of every GT box, and its foreground anchors from the training matcher.

    The matcher (``chunk`` images at a time, a ``(chunk, G, R)`` IoU tensor) is the slow part: with
    ``matched_images`` it runs on that many records spread evenly through ``records`` and the boxes
    of the others get ``positives`` -1. Best IoU comes from the anchors of each box's nearest
    cells (:func:`best_anchor_iou`, exact) for every box.
    """
    levels = tuple(levels)
    n = len(records)
    if matched_images is None or matched_images >= n:
        matched = set(range(n))
    else:
        matched = set(np.linspace(0, n - 1, matched_images).round().astype(int).tolist()) if matched_images > 0 else set()
    anchors = all_anchors(cfg, levels, img_size) if matched else None
    out: dict[str, list[np.ndarray]] = {"labels": [], "areas": [], "best_iou": [], "positives": []}
    for start in range(0, n, chunk):
        batch = records[start : start + chunk]
        targets = letterboxed_gt(batch, img_size)
        if targets.boxes.shape[1] == 0:
            continue
        use = targets.valid & ~targets.ignore  # (N, G)
        positives = torch.full(use.shape, -1, dtype=torch.int64)
        rows = [i for i in range(len(batch)) if start + i in matched]
        if rows:
            sub = targets.boxes[rows], targets.valid[rows], targets.ignore[rows]
            matches = match_anchors(anchors, sub[0], sub[1], fg_iou, bg_iou, True, sub[2])
            fg = matches.state == FOREGROUND  # (n, R)
            positives[rows] = torch.zeros(len(rows), use.shape[1], dtype=torch.int64).scatter_add_(1, matches.gt_index, fg.long())
        out["labels"].append(targets.labels[use].numpy())
        out["areas"].append(box_area(targets.boxes)[use].numpy())
        out["best_iou"].append(best_anchor_iou(targets.boxes, cfg, levels, img_size)[use].numpy())
        out["positives"].append(positives[use].numpy())
    cat = {k: np.concatenate(v) if v else np.zeros(0) for k, v in out.items()}
    return AnchorFit(
        cat["labels"].astype(np.int64), cat["areas"].astype(np.float32),
        cat["best_iou"].astype(np.float32), cat["positives"].astype(np.int64),
    )


def letterboxed_boxes(records: Sequence[ImageRecord], img_size: int) -> tuple[Tensor, Tensor]:
    """GT of the records in network-input pixels, ignored boxes left out -> boxes ``(B, 4)``
    float32 xyxy, labels ``(B,)`` int64 (no pixels are read)."""
    boxes, labels = [torch.zeros(0, 4)], [torch.zeros(0, dtype=torch.int64)]
    for start in range(0, len(records), 256):  # bounds the padding of the (N, G, 4) targets
        targets = letterboxed_gt(records[start : start + 256], img_size)
        use = targets.valid & ~targets.ignore
        boxes.append(targets.boxes[use])
        labels.append(targets.labels[use])
    return torch.cat(boxes), torch.cat(labels)


def coverage_summary(fit: AnchorFit, class_names: Sequence[str], fg_iou: float) -> dict:
    """Share of GT boxes whose best anchor IoU reaches ``fg_iou`` overall, per class and per size
    bucket, with the mean best IoU and the mean foreground anchors per box (over matched boxes)."""
    hit = fit.best_iou >= fg_iou
    counted = fit.positives >= 0
    buckets = fit.buckets

    def share(sel: np.ndarray) -> float | None:
        return round(float(hit[sel].mean()), 4) if sel.any() else None

    return {
        "boxes": int(hit.size),
        "coverage": share(np.ones_like(hit)),
        "mean_best_iou": round(float(fit.best_iou.mean()), 4) if hit.size else None,
        "mean_positives": round(float(fit.positives[counted].mean()), 2) if counted.any() else None,
        "positives_boxes": int(counted.sum()),
        "per_class": {name: share(fit.labels == k) for k, name in enumerate(class_names)},
        "per_size": {name: share(buckets == b) for b, name in enumerate(BUCKETS)},
    }


def unmatched_table(fit: AnchorFit, class_names: Sequence[str], fg_iou: float) -> list[tuple[str, str, int, int]]:
    """Rows ``(class, bucket, GT boxes, unmatched)``: per class and size bucket, plus "all" rows."""
    miss = fit.best_iou < fg_iou
    buckets = fit.buckets
    rows = []
    for k, name in enumerate(class_names):
        for b, bname in enumerate(BUCKETS):
            sel = (fit.labels == k) & (buckets == b)
            if sel.any():
                rows.append((name, bname, int(sel.sum()), int(miss[sel].sum())))
    for b, bname in enumerate(BUCKETS):
        sel = buckets == b
        rows.append(("all", bname, int(sel.sum()), int(miss[sel].sum())))
    rows.append(("all", "all", int(miss.size), int(miss.sum())))
    return rows
