"""Which score threshold to deploy at: precision, recall and F1 against the score threshold.

The true/false positive flags are COCOeval's own matching at IoU 0.5 (the same one mAP50 is
computed from: per class, greedy by score, crowd boxes ignored), so the curves and the AP agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

THRESHOLDS = np.round(np.linspace(0.0, 1.0, 101), 2)  # the score thresholds the curves are sampled at


@dataclass
class ClassMatches:
    """One class over a split: ``scores`` ``(D,)`` of its detections, ``tp`` ``(D,)`` bool (matched
    to a box of the class at the IoU), ``num_gt`` its boxes (crowd ones left out)."""

    scores: np.ndarray
    tp: np.ndarray
    num_gt: int


def coco_matches(ev: Any, iou: float = 0.5) -> list[ClassMatches]:
    """Per class (in ``ev.params.catIds`` order) the detections' scores and TP flags from an
    evaluated ``COCOeval`` (``evaluate()`` run): area range "all", the last max-dets setting."""
    p = ev.params
    t = int(np.argmin(np.abs(np.asarray(p.iouThrs) - iou)))
    n_area, n_img = len(p.areaRng), len(p.imgIds)
    out = []
    for k in range(len(p.catIds)):
        scores, tps, num_gt = [], [], 0
        for i in range(n_img):
            e = ev.evalImgs[k * n_area * n_img + i]  # area index 0 ("all")
            if e is None:
                continue
            keep = ~np.asarray(e["dtIgnore"][t], dtype=bool).reshape(-1)
            scores.append(np.asarray(e["dtScores"], dtype=np.float64)[keep])
            tps.append(np.asarray(e["dtMatches"][t]).reshape(-1)[keep] > 0)
            num_gt += int((~np.asarray(e["gtIgnore"], dtype=bool)).sum())
        out.append(ClassMatches(
            np.concatenate(scores) if scores else np.zeros(0), np.concatenate(tps) if tps else np.zeros(0, dtype=bool), num_gt,
        ))
    return out


@dataclass
class ThresholdCurves:
    """``precision``, ``recall``, ``f1``: ``(K, len(thresholds))``. ``best``: class name (and
    ``"all"``, the threshold of the best F1 averaged over classes) -> {"conf", "precision", "recall", "f1"}."""

    class_names: tuple[str, ...]
    thresholds: np.ndarray
    precision: np.ndarray
    recall: np.ndarray
    f1: np.ndarray
    best: dict[str, dict[str, float]]

    def to_dict(self) -> dict[str, Any]:
        return {
            "thresholds": self.thresholds.tolist(),
            "per_class": {
                name: {"precision": self.precision[k].round(4).tolist(), "recall": self.recall[k].round(4).tolist(),
                       "f1": self.f1[k].round(4).tolist()}
                for k, name in enumerate(self.class_names)
            },
            "best": self.best,
        }

    @property
    def suggested_conf(self) -> float | None:
        """The threshold of the best F1 averaged over the classes that have boxes (None: none has)."""
        return self.best["all"]["conf"] if "all" in self.best else None


def threshold_curves(matches: Sequence[ClassMatches], class_names: Sequence[str],
                     thresholds: np.ndarray = THRESHOLDS) -> ThresholdCurves:
    """P, R, F1 of every class at every threshold (a detection counts when its score >= the
    threshold; precision is 1 where nothing is detected), and the F1-best thresholds."""
    thresholds = np.asarray(thresholds, dtype=np.float64)
    k, n = len(matches), len(thresholds)
    precision, recall = np.ones((k, n)), np.zeros((k, n))
    for c, m in enumerate(matches):
        order = np.argsort(-m.scores, kind="stable")
        scores, tp = m.scores[order], m.tp[order]
        cum_tp = np.concatenate([[0], np.cumsum(tp)])
        above = np.searchsorted(-scores, -thresholds, side="right")  # detections with score >= t
        tps = cum_tp[above]
        precision[c] = np.divide(tps, above, out=np.ones(n), where=above > 0)
        recall[c] = tps / m.num_gt if m.num_gt else 0.0
    f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros((k, n)), where=(precision + recall) > 0)
    best = {}
    for c, name in enumerate(class_names):
        j = int(np.argmax(f1[c]))
        best[name] = _point(thresholds[j], precision[c, j], recall[c, j], f1[c, j])
    has_gt = np.asarray([m.num_gt > 0 for m in matches], dtype=bool)
    if has_gt.any():
        mean_f1 = f1[has_gt].mean(axis=0)
        j = int(np.argmax(mean_f1))
        best["all"] = _point(thresholds[j], precision[has_gt, j].mean(), recall[has_gt, j].mean(), mean_f1[j])
    return ThresholdCurves(tuple(class_names), thresholds, precision, recall, f1, best)


def _point(conf: float, p: float, r: float, f1: float) -> dict[str, float]:
    return {"conf": round(float(conf), 2), "precision": round(float(p), 4), "recall": round(float(r), 4), "f1": round(float(f1), 4)}
