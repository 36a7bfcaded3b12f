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
    matches = result.matches or [
        ClassMatches(np.zeros(0), np.zeros(0, dtype=bool), int(result.per_class[n]["num_gt"])) for n in class_names
    ]
    curves = threshold_curves(matches, class_names)
    at = float(conf) if conf is not None else float(curves.best.get("all", {"conf": 0.5})["conf"])
    errors = analyse_errors(records, result.detections, class_names, at, iou)
    return Diagnosis(curves, errors, at)
