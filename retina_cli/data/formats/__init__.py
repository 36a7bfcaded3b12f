"""Readers of dataset layouts on disk (YOLO, Pascal VOC, COCO JSON, keras-retinanet CSV).

Each reader turns files into :class:`RawDataset`: class names and image records grouped by the
dataset's own split names; :mod:`retina_cli.data.dataset` turns those groups into train/val/test.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from retina_cli.data.records import ImageRecord


@dataclass
class RawDataset:
    """groups: the dataset's own split name ("train", "val", "test", "trainval") or None for
    records the dataset does not assign to a split -> records. category_ids: the dataset's id of
    each label (COCO), empty when labels are the ids."""

    class_names: list[str]
    groups: dict[str | None, list[ImageRecord]]
    category_ids: list[int] = field(default_factory=list)


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
