"""Readers of dataset layouts on disk (YOLO, Pascal VOC, COCO JSON, keras-retinanet CSV).

Each reader turns files into :class:`RawDataset`: class names and image records grouped by the
dataset's own split names; :mod:`retina_cli.data.dataset` turns those groups into train/val/test.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from retina_cli.data.records import ImageRecord
from retina_cli.errors import DataError


@dataclass
class RawDataset:
    """groups: the dataset's own split name ("train", "val", "test", "trainval") or None for
    records the dataset does not assign to a split -> records. category_ids: the dataset's id of
    each label (COCO), empty when labels are the ids. root: the folder every path was kept inside
    (:func:`~retina_cli.data.validate.inside_root`) where the reader knows it (a YOLO yaml's
    ``path:`` may name another folder than the one given), else None."""

    class_names: list[str]
    groups: dict[str | None, list[ImageRecord]]
    category_ids: list[int] = field(default_factory=list)
    root: Path | None = None


def split_from_name(name: str) -> str | None:
    """The split a file or folder name stands for ("instances_val2017" -> "val"), or None."""
    low = name.lower()
    if "trainval" in low:
        return "trainval"
    for split in ("train", "val", "test"):
        if split in low:
            return split
    if "valid" in low:
        return "val"
    return None


def read_text(path: Path, errors: str = "strict") -> str:
    """The text of a label, list or class file (UTF-8; a leading BOM is dropped).

    errors: "strict" for files of names (a non-UTF-8 byte is a DataError naming the line: a
    garbled class name must not pass silently), "replace" for label lines (a bad byte makes its
    line malformed, reported by the reader), "surrogateescape" for files of paths (non-UTF-8 file
    names on Linux round-trip to the same bytes).
    """
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot be read ({exc.strerror or exc}); check the file and its permissions") from None
    try:
        return data.decode("utf-8-sig", errors)
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise DataError(f"{path}:{line}: not UTF-8 text (byte {data[exc.start]:#04x}); save the file as UTF-8") from None


def count(n: int, noun: str) -> str:
    """``count(1, "XML file")`` -> "1 XML file", ``count(80, ...)`` -> "80 XML files"."""
    return f"{n} {noun}" + ("" if n == 1 else "s")
