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
    metrics.json, detections.json and pr_curves.png were written, None when nothing was saved."""

    metrics: dict[str, float]
    per_class: dict[str, dict[str, float]]
    split: str
    images: int
    run_dir: Path | None = None

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
        """``{"metrics", "per_class"}``: what ``retina eval --json`` prints."""
        return {"metrics": dict(self.metrics), "per_class": {k: dict(v) for k, v in self.per_class.items()}}
