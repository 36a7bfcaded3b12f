"""What a loaded dataset is: image records (boxes already validated) grouped into splits."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from retina_cli.data.report import ValidationReport


@dataclass
class ImageRecord:
    """One image and its ground truth, in original (EXIF-oriented) pixels.

    boxes: ``(n, 4)`` float32 xyxy absolute pixels, clipped to the image, none degenerate.
    labels: ``(n,)`` int64 in ``[0, num_classes)``.
    ignore: ``(n,)`` bool, True for VOC ``difficult`` / COCO ``iscrowd`` boxes (neither foreground
        nor background in training, ignored in evaluation).
    image_id: the dataset's own id where it has one (COCO), else None.
    """

    path: Path
    width: int
    height: int
    boxes: np.ndarray
    labels: np.ndarray
    ignore: np.ndarray
    image_id: int | None = None

    @property
    def num_boxes(self) -> int:
        return int(self.boxes.shape[0])


@dataclass
class DetectionDataset:
    """A dataset folder read by :func:`retina_cli.data.load_dataset`.

    root: the dataset folder every path read stays inside (the folder given, or the folder of the
        file given; a YOLO yaml's ``path:`` when it names one).
    splits: keys among "train", "val", "test"; "train" and "val" are always present.
    category_ids: the dataset's own id of each label (COCO category ids; ``range(K)`` elsewhere),
        for writing results other tools can read.
    detected_by: why ``format`` was chosen, for ``retina data info``.
    """

    root: Path
    format: str
    class_names: list[str]
    splits: dict[str, list[ImageRecord]]
    report: ValidationReport
    category_ids: list[int] = field(default_factory=list)
    detected_by: str = ""

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def records(self, split: str | None = None) -> list[ImageRecord]:
        """Records of one split, or of every split (train, val, test order) when ``split`` is None."""
        if split is None:
            return [r for name in ("train", "val", "test") for r in self.splits.get(name, [])]
        return self.splits.get(split, [])
