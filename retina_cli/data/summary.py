"""The numbers ``retina data info`` shows: boxes per split and class, a box-size histogram, the
validation counts - as plain values (``--json``) and as text lines."""

from __future__ import annotations

import numpy as np

from retina_cli.data.records import DetectionDataset

# sqrt(area) bin edges in original pixels; 32 and 96 are the COCO small/medium/large limits
SIZE_EDGES = (8, 16, 32, 64, 96, 128, 256, 512)


def size_histogram(sides: np.ndarray, width: int = 40) -> list[str]:
    """Text histogram of box sides ``sqrt(w * h)`` ``(B,)`` -> one line per bin."""
    counts = np.bincount(np.digitize(sides, SIZE_EDGES), minlength=len(SIZE_EDGES) + 1)
    labels = [f"< {SIZE_EDGES[0]}"] + [f"{a}-{b}" for a, b in zip(SIZE_EDGES, SIZE_EDGES[1:])] + [f">= {SIZE_EDGES[-1]}"]
    top = max(int(counts.max()), 1)
    return [
        f"{lab:>9} px  {'#' * int(round(width * c / top)):<{width}} {c}" for lab, c in zip(labels, counts.tolist())
    ]


def split_counts(ds: DetectionDataset) -> dict[str, dict]:
    """Per split: images, negatives, boxes, ignored boxes and boxes per class name."""
    out = {}
    for name, recs in ds.splits.items():
        labels = np.concatenate([r.labels for r in recs]) if recs else np.zeros(0, np.int64)
        out[name] = {
            "images": len(recs),
            "negatives": int(sum(r.num_boxes == 0 for r in recs)),
            "boxes": int(labels.size),
            "ignored": sum(int(r.ignore.sum()) for r in recs),
            "per_class": dict(zip(ds.class_names, np.bincount(labels, minlength=ds.num_classes).tolist())),
        }
    return out


def box_sides(ds: DetectionDataset) -> np.ndarray:
    """``sqrt(w * h)`` of every box in original pixels ``(B,)``."""
    boxes = [r.boxes for r in ds.records()]
    if not boxes:
        return np.zeros(0)
    b = np.concatenate(boxes)
    return np.sqrt((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]))


def info_dict(ds: DetectionDataset) -> dict:
    """What ``retina data info --json`` prints: the same numbers as the tables, as plain values."""
    sides = box_sides(ds)
    report = ds.report
    return {
        "root": str(ds.root),
        "format": ds.format,
        "detected_by": ds.detected_by,
        "classes": list(ds.class_names),
        "splits": split_counts(ds),
        "box_sides": {
            "edges": list(SIZE_EDGES),
            "counts": np.bincount(np.digitize(sides, SIZE_EDGES), minlength=len(SIZE_EDGES) + 1).tolist(),
        },
        "validation": {
            "images": report.images, "negatives": report.negatives, "skipped_images": report.skipped_images,
            "kept": report.kept, "clipped": report.clipped, "dropped": report.dropped,
        },
        "problems": [{"file": str(p.file), "line": p.line, "message": p.message} for p in report.problems],
    }
