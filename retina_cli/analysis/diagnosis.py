"""An evaluated split explained: the F1-best score thresholds and, at the deploy threshold, the
confusion matrix and error types (:mod:`retina_cli.analysis.thresholds`, :mod:`retina_cli.analysis.errors`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from retina_cli.analysis.errors import ErrorAnalysis, analyse_errors
from retina_cli.analysis.thresholds import ClassMatches, ThresholdCurves, threshold_curves


@dataclass
class Diagnosis:
    curves: ThresholdCurves
    errors: ErrorAnalysis  # at ``conf``
    conf: float  # the threshold the errors are counted at: the given one, else the F1-best overall

    def to_dict(self) -> dict[str, Any]:
        return {"conf": self.conf, "best_thresholds": self.curves.best, "confusion": self.errors.to_dict()}


def diagnose(result: Any, records: Sequence[Any], class_names: Sequence[str],
             conf: float | None = None, iou: float = 0.5) -> Diagnosis:
    """``result``: an :class:`retina_cli.engine.evaluate.EvalResult` of ``records`` (image id ``i + 1``
    is ``records[i]``). ``conf`` None: count the errors at the F1-best threshold over all classes."""
    matches = result.matches or [  # no detections: every box is missed
        ClassMatches(np.zeros(0), np.zeros(0, dtype=bool), n) for n in _boxes_per_class(records, len(class_names))
    ]
    curves = threshold_curves(matches, class_names)
    suggested = curves.suggested_conf
    at = float(conf) if conf is not None else (0.5 if suggested is None else float(suggested))
    errors = analyse_errors(records, result.detections, class_names, at, iou)
    return Diagnosis(curves, errors, at)


def _boxes_per_class(records: Sequence[Any], num_classes: int) -> list[int]:
    """Ground-truth boxes per class, ignored (crowd / difficult) ones left out."""
    counts = np.zeros(num_classes, dtype=np.int64)
    for rec in records:
        labels = np.asarray(rec.labels, dtype=np.int64)
        keep = ~np.asarray(rec.ignore, dtype=bool) if len(rec.ignore) else np.ones(len(labels), dtype=bool)
        counts += np.bincount(labels[keep], minlength=num_classes)[:num_classes]
    return counts.tolist()
