"""The error gallery: the worst images of an evaluated split with ground truth and detections
drawn, each box labelled with what it is (true positive or a TIDE error type, see
:mod:`retina_cli.analysis.errors`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import cv2
import numpy as np

from retina_cli.analysis.errors import ErrorAnalysis, ImageErrors
from retina_cli.drawing.boxes import draw_title, line_width, put_label, write_png

# RGB: green for what is right, warm colours for errors, white for missed ground truth
TYPE_COLORS = {
    "tp": (40, 190, 40), "ignored": (150, 150, 150), "cls": (255, 140, 0), "loc": (240, 210, 0),
    "both": (200, 60, 200), "dupe": (90, 140, 255), "bkg": (230, 30, 30), "missed": (255, 255, 255),
}


@dataclass
class GalleryItem:
    path: Path  # the PNG written
    image: str  # the source image
    missed: int
    false_positives: int
    top_false_positive: float  # score of the most confident false positive (0 without one)


def draw_errors(image: np.ndarray, im: ImageErrors, gt_boxes: np.ndarray, gt_labels: np.ndarray,
                names: Sequence[str]) -> np.ndarray:
    """``(H, W, 3)`` uint8 RGB copy with the missed boxes (white, "missed CLASS") and every kept
    detection coloured and labelled by its type ("CLASS 0.87" for a true positive, "CLASS 0.87 bkg"...)."""
    out = np.ascontiguousarray(image).copy()
    lw = line_width(out)
    name = lambda k: names[k] if 0 <= k < len(names) else f"class {k}"  # noqa: E731
    gt = np.round(np.asarray(gt_boxes, np.float64).reshape(-1, 4)).astype(np.int64)
    for g in im.missed.tolist():  # one OpenCV call per box: drawing, not a hot path
        x1, y1, x2, y2 = gt[g].tolist()
        cv2.rectangle(out, (x1, y1), (x2, y2), TYPE_COLORS["missed"], lw, cv2.LINE_AA)
        put_label(out, f"missed {name(int(gt_labels[g]))}", x1, y1, TYPE_COLORS["missed"], lw)
    dets = np.round(im.det_boxes).astype(np.int64)
    for d, kind in enumerate(im.det_type):
        x1, y1, x2, y2 = dets[d].tolist()
        color = TYPE_COLORS.get(kind, (255, 0, 0))
        cv2.rectangle(out, (x1, y1), (x2, y2), color, lw, cv2.LINE_AA)
        text = f"{name(int(im.det_labels[d]))} {float(im.det_scores[d]):.2f}" + ("" if kind == "tp" else f" {kind}")
        put_label(out, text, x1, y1, color, lw)
    return out


def write_gallery(analysis: ErrorAnalysis, records: Sequence[Any], out_dir: Path, n: int = 12,
                  read: Any = None) -> list[GalleryItem]:
    """PNG per image of :meth:`ErrorAnalysis.worst_images` into ``out_dir`` (``01_name.png``...).
    records: the evaluated records (``path``, ``boxes``, ``labels``); read: image reader (default
    :func:`retina_cli.data.images.read_image`). An image that cannot be read is left out."""
    from retina_cli.errors import DataError

    if read is None:
        from retina_cli.data.images import read_image as read
    items = []
    for rank, im in enumerate(analysis.worst_images(n), start=1):
        rec = records[im.index]
        try:
            pixels = read(rec.path)
        except DataError:
            continue
        drawn = draw_errors(pixels, im, rec.boxes, rec.labels, analysis.class_names)
        fps = int(im.is_false_positive.sum())
        title = f"{Path(rec.path).name}: {im.missed.size} missed, {fps} false positives (score >= {analysis.conf:.2f})"
        path = write_png(out_dir / f"{rank:02d}_{Path(rec.path).stem}.png", draw_title(drawn, title))
        items.append(GalleryItem(path, str(rec.path), int(im.missed.size), fps, im.false_positive_score))
    return items
