"""`Metrics`: what :meth:`Detector.val` returns - the COCO numbers of one dataset split."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Metrics:
    """metrics: the 12 COCOeval summary numbers by name ("AP", "AP50", "AP75", "APs", "APm", "APl",
    "AR1", "AR10", "AR100", "ARs", "ARm", "ARl"; -1 where undefined, as COCO reports). per_class:
    class name -> {"AP", "AP50", "num_gt"}. images: how many images were scored. run_dir: where
    metrics.json, detections.json, pr_curves.png and report.html were written, None when nothing
    was saved. diagnosis: a :class:`retina_cli.analysis.diagnosis.Diagnosis`: F1-best score
    thresholds (``.curves``), confusion matrix and error types at ``.conf`` (``.errors``)."""

    metrics: dict[str, float]
    per_class: dict[str, dict[str, float]]
    split: str
    images: int
    run_dir: Path | None = None
    diagnosis: Any = None

    @property
    def best_conf(self) -> float | None:
        """The score threshold of the best F1 averaged over classes (what to deploy at)."""
        return self.diagnosis.conf if self.diagnosis is not None else None

    @property
    def confusion_matrix(self) -> Any:
        """``(K + 1, K + 1)`` counts, rows the true class, columns the prediction, last: background."""
        return self.diagnosis.errors.matrix if self.diagnosis is not None else None

    @property
    def AP(self) -> float:  # noqa: N802  (the name COCO and every paper use)
        """mAP over IoU 0.50:0.95."""
        return self.metrics["AP"]

    @property
    def AP50(self) -> float:  # noqa: N802
        return self.metrics["AP50"]

    @property
    def AP75(self) -> float:  # noqa: N802
        return self.metrics["AP75"]

    def to_dict(self) -> dict[str, Any]:
        """``{"metrics", "per_class"}`` (and ``"diagnosis"``: suggested conf, F1-best thresholds,
        confusion matrix, error counts): what ``retina eval --json`` prints."""
        out: dict[str, Any] = {"metrics": dict(self.metrics), "per_class": {k: dict(v) for k, v in self.per_class.items()}}
        if self.diagnosis is not None:
            out["diagnosis"] = self.diagnosis.to_dict()
        return out
