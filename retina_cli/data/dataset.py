"""``load_dataset``: detect the layout, read it, validate every box, assemble train/val/test."""

from __future__ import annotations

import os
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


NAMES = {"voc": "Pascal VOC", "yolo": "YOLO", "coco": "COCO", "csv": "CSV"}


def detect_format(root: Path) -> tuple[str, str]:
    """``(format, reason)`` for a dataset folder or file; DataError when no layout fits."""
    return detect_formats(root)[0]


def detect_formats(root: Path) -> list[tuple[str, str]]:
    """``(format, reason)`` of every layout ``root`` holds, the one used first; DataError when none fits."""
    found = [(name, reason) for name, module in FORMATS.items() if (reason := module.detect(root)) is not None]
    if not found:
        raise DataError(
            f"{root}: cannot tell the dataset format; expected Annotations/ (VOC), images/ + labels/ or data.yaml "
            f"(YOLO), a COCO instances_*.json, or classes.csv + annotation CSV; or pass --format"
        )
    return found


def mixed_layouts(root: Path, formats: list[str]) -> str:
    """The warning for a folder holding several layouts (``formats``, the one used first): what was
    found of each, with counts, what is ignored and the flag that picks another one."""
    what = {f: FORMATS[f].evidence(root) for f in formats}
    used, others = formats[0], formats[1:]
    found = ", ".join(what[f] for f in formats[:-1]) + f" and {what[formats[-1]]}"
    ignored = " and ".join(what[f] for f in others)
    flags = " or ".join(f"--format {f}" for f in others)
    return (f"found {found}; using {NAMES[used]}, ignoring the {ignored}; pass {flags} to use those instead "
            f"(or --format {used} to keep this choice without this warning)")


def load_dataset(
    root: Path | str, format: str = "auto", strict: bool = False, val_fraction: float = 0.1, seed: int = 0
) -> DetectionDataset:
    """Read a dataset folder (or a COCO json / CSV / data.yaml file) into validated records.

    format: "auto", "yolo", "voc", "coco" or "csv". strict: the first problem (clipped, dropped,
    missing image, ...) raises DataError instead of being counted in ``report``.
    Splits: the dataset's own where it has them; a missing val is carved deterministically out of
    trainval/train (``val_fraction``, ``seed``); a dataset without splits is split the same way.
    "auto" on a folder holding several layouts uses the first of :data:`FORMATS` and reports the
    others (first problem, with counts and the ``--format`` to pick them); an explicit format does not.
    Every path read must stay inside the dataset folder, symlinks followed
    (:func:`retina_cli.data.validate.inside_root`).
    """
    root = Path(root).expanduser().absolute()
    if not root.exists():
        raise DataError(f"{root}: no such file or folder; pass the dataset folder")
    report = ValidationReport(strict=strict)
    if format == "auto":
        found = detect_formats(root)
        format, why = found[0]
        if len(found) > 1:
            report.warn(root, None, mixed_layouts(root, [f for f, _ in found]))
            why += f"; also found {', '.join(NAMES[f] for f, _ in found[1:])} files, ignored (see the first warning)"
    elif format in FORMATS:
        why = "forced with --format"
    else:
        raise DataError(f"unknown dataset format {format!r}; use one of auto, {', '.join(FORMATS)}")
    raw = FORMATS[format].load(root, report)
    if not any(raw.groups.values()):
        raise DataError(f"{root}: no usable images found ({format} layout, {why}); see the problems with `retina data info`")
    splits = assemble_splits(raw, val_fraction, seed)
    folder = root if root.is_dir() else root.parent
    if raw.root is not None and Path(os.path.normpath(raw.root)) != folder:
        folder = Path(os.path.normpath(raw.root))
        why += f"; dataset root {folder} (paths must stay inside it)"
    return DetectionDataset(
        root=folder,
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
