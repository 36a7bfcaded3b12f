"""``load_dataset``: detect the layout, read it, validate every box, assemble train/val/test."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

from retina_cli.data.formats import RawDataset, coco, voc, yolo
from retina_cli.data.formats import csv as csv_format
from retina_cli.data.records import DetectionDataset, ImageRecord
from retina_cli.data.report import ValidationReport
from retina_cli.data.splits import split_off
from retina_cli.errors import DataError

# detection order: the most specific layouts first (a VOC folder may also hold a data.yaml, etc.)
FORMATS: dict[str, ModuleType] = {"voc": voc, "yolo": yolo, "coco": coco, "csv": csv_format}


def detect_format(root: Path) -> tuple[str, str]:
    """``(format, reason)`` for a dataset folder or file; DataError when no layout fits."""
    for name, module in FORMATS.items():
        reason = module.detect(root)
        if reason is not None:
            return name, reason
    raise DataError(
        f"{root}: cannot tell the dataset format; expected Annotations/ (VOC), images/ + labels/ or data.yaml "
        f"(YOLO), a COCO instances_*.json, or classes.csv + annotation CSV; or pass --format"
    )


def load_dataset(
    root: Path | str, format: str = "auto", strict: bool = False, val_fraction: float = 0.1, seed: int = 0
) -> DetectionDataset:
    """Read a dataset folder (or a COCO json / CSV / data.yaml file) into validated records.

    format: "auto", "yolo", "voc", "coco" or "csv". strict: the first problem (clipped, dropped,
    missing image, ...) raises DataError instead of being counted in ``report``.
    Splits: the dataset's own where it has them; a missing val is carved deterministically out of
    trainval/train (``val_fraction``, ``seed``); a dataset without splits is split the same way.
    """
    root = Path(root).expanduser().absolute()
    if not root.exists():
        raise DataError(f"{root}: no such file or folder; pass the dataset folder")
    if format == "auto":
        format, why = detect_format(root)
    elif format in FORMATS:
        why = "forced with --format"
    else:
        raise DataError(f"unknown dataset format {format!r}; use one of auto, {', '.join(FORMATS)}")
    report = ValidationReport(strict=strict)
    raw = FORMATS[format].load(root, report)
    if not any(raw.groups.values()):
        raise DataError(f"{root}: no usable images found ({format} layout, {why}); see the problems with `retina data info`")
    splits = assemble_splits(raw, val_fraction, seed)
    return DetectionDataset(
        root=root if root.is_dir() else root.parent,
        format=format,
        class_names=raw.class_names,
        splits=splits,
        report=report,
        category_ids=raw.category_ids or list(range(len(raw.class_names))),
        detected_by=why,
    )


def assemble_splits(raw: RawDataset, val_fraction: float, seed: int) -> dict[str, list[ImageRecord]]:
    """The dataset's groups -> {"train", "val"[, "test"]}; see :func:`load_dataset` for the rules."""
    g = dict(raw.groups)
    unsplit = g.pop(None, [])
    train = g.get("train", []) + g.get("trainval", [])
    val = g.get("val", [])
    if not train and not val:
        train = unsplit
    if not val:
        train, val = split_off(train, val_fraction, seed)
    out = {"train": train, "val": val}
    if g.get("test"):
        out["test"] = g["test"]
    return out
