"""What goes wrong at a deploy threshold: a detection confusion matrix and TIDE's error types.

At a score threshold ``conf`` and an IoU threshold ``iou``, each image's detections are matched
one to one to its ground truth in two rounds: first same-class pairs (true positives), then what
is left regardless of class (class confusions). Each pair is taken in order of IoU, best first.
The confusion matrix counts, with rows the true class and columns the predicted class (index
``K``: background), every match at ``[true, predicted]``, every missed box at ``[true, K]`` and
every detection without a box at ``[K, predicted]``.

The unmatched detections get the error types of TIDE (Bolya et al., "TIDE: A General Toolbox for
Identifying Object Detection Errors", 2020): ``dupe`` (a right-class box of IoU >= ``iou`` that
another detection already took), ``loc`` (right class, ``bg_iou <= IoU < iou``), ``both`` (wrong
class and ``bg_iou <= IoU < iou``), ``bkg`` (IoU < ``bg_iou`` with every box); the matched
wrong-class detections are ``cls``; boxes nobody found are ``missed``. Ground truth marked
``ignore`` (COCO's crowd) neither counts as missed nor makes a detection on it an error.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import torch

from retina_cli.boxes.ops import pairwise_iou

ERROR_TYPES = ("cls", "loc", "both", "dupe", "bkg", "missed")


@dataclass
class ImageErrors:
    """One image's outcome. ``det_type``: per kept detection ``"tp"`` or an error type; ``missed``:
    indices of missed ground-truth boxes."""

    index: int
    det_boxes: np.ndarray  # (D, 4) xyxy, detections at or above conf
    det_scores: np.ndarray  # (D,)
    det_labels: np.ndarray  # (D,)
    det_type: list[str]
    missed: np.ndarray  # (M,) indices into the image's ground truth
    confused: list[tuple[int, int]] = field(default_factory=list)  # (detection, ground truth) of "cls" matches

    def count(self, kind: str) -> int:
        return len(self.missed) if kind == "missed" else sum(t == kind for t in self.det_type)

    @property
    def is_false_positive(self) -> np.ndarray:
        """``(D,)`` bool: the detections that are errors (not a true positive, not on an ignored box)."""
        return ~np.isin(np.asarray(self.det_type, dtype=object), ("tp", "ignored"))

    @property
    def false_positive_score(self) -> float:
        """The highest score among this image's false positives (0 without any)."""
        fp = self.is_false_positive
        return float(self.det_scores[fp].max()) if fp.any() else 0.0

    @property
    def num_errors(self) -> int:
        """Missed boxes plus false positives."""
        return int(self.missed.size + self.is_false_positive.sum())


@dataclass
class ErrorAnalysis:
    """``matrix``: ``(K + 1, K + 1)`` counts, rows true class, columns predicted class, index K the
    background. ``errors``: error type -> count over the split."""

    class_names: tuple[str, ...]
    conf: float
    iou: float
    matrix: np.ndarray
    errors: dict[str, int]
    images: list[ImageErrors] = field(default_factory=list)

    def normalised(self) -> np.ndarray:
        """Each row divided by its sum (the share of a true class's boxes that went to each
        prediction); rows without boxes stay zero."""
        sums = self.matrix.sum(axis=1, keepdims=True)
        return np.divide(self.matrix, sums, out=np.zeros(self.matrix.shape, dtype=np.float64), where=sums > 0)

    def to_dict(self) -> dict[str, Any]:
        names = [*self.class_names, "background"]
        return {
            "conf": self.conf, "iou": self.iou, "labels": names,
            "rows": "true class", "columns": "predicted class",
            "counts": self.matrix.astype(int).tolist(),
            "normalised": [[round(v, 4) for v in row] for row in self.normalised().tolist()],
            "errors": dict(self.errors),
        }

    def worst_images(self, n: int) -> list[ImageErrors]:
        """The ``n`` images with the most missed boxes plus false positives, most confident false
        positive first among ties; images without an error are left out."""
        scored = [im for im in self.images if im.num_errors]
        scored.sort(key=lambda im: (-im.num_errors, -im.false_positive_score, im.index))
        return scored[:n]


def _one_to_one(iou: np.ndarray, allowed: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Pairs ``(det, gt)`` with ``allowed`` and IoU >= threshold, each det and gt at most once, best
    IoU first (greedy). iou, allowed: ``(D, G)``. Returns two index arrays of equal length."""
    d, g = np.nonzero(allowed & (iou >= threshold))
    if d.size == 0:
        return d, g
    order = np.argsort(-iou[d, g], kind="stable")
    d, g = d[order], g[order]
    taken_d: set[int] = set()
    taken_g: set[int] = set()
    keep = np.zeros(d.size, dtype=bool)
    for i, (di, gi) in enumerate(zip(d.tolist(), g.tolist())):  # greedy over candidate pairs of one image
        if di not in taken_d and gi not in taken_g:
            taken_d.add(di)
            taken_g.add(gi)
            keep[i] = True
    return d[keep], g[keep]


def image_errors(
    index: int, gt_boxes: np.ndarray, gt_labels: np.ndarray, gt_ignore: np.ndarray,
    det_boxes: np.ndarray, det_scores: np.ndarray, det_labels: np.ndarray,
    conf: float, iou: float = 0.5, bg_iou: float = 0.1,
) -> ImageErrors:
    """Match one image. gt_*: ``(G, 4)`` xyxy, ``(G,)`` labels, ``(G,)`` bool ignore; det_*: ``(D, 4)``,
    ``(D,)``, ``(D,)`` in the same pixels. Detections below ``conf`` are dropped first."""
    keep = np.asarray(det_scores) >= conf
    det_boxes = np.asarray(det_boxes, dtype=np.float64).reshape(-1, 4)[keep]
    det_scores, det_labels = np.asarray(det_scores)[keep], np.asarray(det_labels, dtype=np.int64)[keep]
    gt_boxes = np.asarray(gt_boxes, dtype=np.float64).reshape(-1, 4)
    gt_labels = np.asarray(gt_labels, dtype=np.int64)
    gt_ignore = np.asarray(gt_ignore, dtype=bool) if len(gt_ignore) else np.zeros(len(gt_labels), dtype=bool)
    n_det, n_gt = len(det_scores), len(gt_labels)
    if n_gt == 0:
        return ImageErrors(index, det_boxes, det_scores, det_labels, ["bkg"] * n_det, np.zeros(0, dtype=np.int64))
    if n_det == 0:
        return ImageErrors(index, det_boxes, det_scores, det_labels, [], np.flatnonzero(~gt_ignore))
    ious = pairwise_iou(torch.from_numpy(det_boxes), torch.from_numpy(gt_boxes)).numpy()  # (D, G)
    same = det_labels[:, None] == gt_labels[None, :]
    d_tp, g_tp = _one_to_one(ious, same & ~gt_ignore[None, :], iou)
    free_d = np.ones(n_det, dtype=bool)
    free_g = np.ones(n_gt, dtype=bool)
    free_d[d_tp], free_g[g_tp] = False, False
    d_cls, g_cls = _one_to_one(ious, free_d[:, None] & free_g[None, :] & ~gt_ignore[None, :], iou)
    free_d[d_cls], free_g[g_cls] = False, False
    # unmatched detections: what they overlap, first rule that holds wins
    best_same = np.where(same, ious, 0.0).max(axis=1)
    best_any = ious.max(axis=1)
    on_ignored = (ious * gt_ignore[None, :]).max(axis=1) >= iou
    kinds = np.select([on_ignored, best_same >= iou, best_same >= bg_iou, best_any >= bg_iou],
                      ["ignored", "dupe", "loc", "both"], "bkg").astype(object)
    kinds[d_tp], kinds[d_cls] = "tp", "cls"
    types = kinds.tolist()
    missed = np.flatnonzero(free_g & ~gt_ignore)
    confused = list(zip(d_cls.tolist(), g_cls.tolist()))
    return ImageErrors(index, det_boxes, det_scores, det_labels, types, missed, confused)


def analyse_errors(
    records: Sequence[Any], detections: Sequence[dict[str, Any]], class_names: Sequence[str],
    conf: float, iou: float = 0.5, bg_iou: float = 0.1,
) -> ErrorAnalysis:
    """Confusion matrix and error types of a split. records: ImageRecord-like (``boxes``, ``labels``,
    ``ignore``); detections: COCO results (``image_id`` = record index + 1, ``category_id`` = label
    + 1, ``bbox`` xywh in original pixels, ``score``), as :func:`retina_cli.engine.evaluate.coco_evaluate`
    keeps them."""
    k = len(class_names)
    by_image: dict[int, list[dict[str, Any]]] = {}
    for r in detections:
        by_image.setdefault(int(r["image_id"]) - 1, []).append(r)
    matrix = np.zeros((k + 1, k + 1), dtype=np.int64)
    errors = {t: 0 for t in ERROR_TYPES}
    images = []
    for i, rec in enumerate(records):
        dets = by_image.get(i, [])
        xywh = np.asarray([r["bbox"] for r in dets], dtype=np.float64).reshape(-1, 4)
        boxes = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1)
        scores = np.asarray([r["score"] for r in dets], dtype=np.float64)
        labels = np.asarray([r["category_id"] - 1 for r in dets], dtype=np.int64)
        gt_labels = np.asarray(rec.labels, dtype=np.int64)
        ignore = np.asarray(rec.ignore, dtype=bool) if len(rec.ignore) else np.zeros(len(gt_labels), dtype=bool)
        im = image_errors(i, rec.boxes, gt_labels, ignore, boxes, scores, labels, conf, iou, bg_iou)
        images.append(im)
        _add_to_matrix(matrix, im, gt_labels, ignore, k)
        for t in ERROR_TYPES:
            errors[t] += im.count(t)
    return ErrorAnalysis(tuple(class_names), float(conf), float(iou), matrix, errors, images)


def _add_to_matrix(matrix: np.ndarray, im: ImageErrors, gt_labels: np.ndarray, ignore: np.ndarray, k: int) -> None:
    types = np.asarray(im.det_type, dtype=object)
    labels = im.det_labels
    tp = types == "tp"
    np.add.at(matrix, (labels[tp], labels[tp]), 1)
    fp = np.isin(types, ("loc", "both", "dupe", "bkg"))
    np.add.at(matrix, (np.full(int(fp.sum()), k), labels[fp]), 1)
    np.add.at(matrix, (gt_labels[im.missed], np.full(im.missed.size, k)), 1)
    if im.confused:
        d, g = np.asarray(im.confused, dtype=np.int64).T
        np.add.at(matrix, (gt_labels[g], labels[d]), 1)
