"""``retina data info DATA``: what was detected, split sizes, boxes per class, box sizes, problems."""

from __future__ import annotations

import json

import numpy as np
import typer
from rich.table import Table

from retina_cli.cli.app import app, console
from retina_cli.data import load_dataset, print_report
from retina_cli.data.records import DetectionDataset

data_app = typer.Typer(help="Inspect and validate datasets.", no_args_is_help=True)
app.add_typer(data_app, name="data")

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


def print_info(ds: DetectionDataset) -> None:
    out = console()
    out.print(f"[bold]{ds.root}[/]: format [bold]{ds.format}[/] ({ds.detected_by})", highlight=False, soft_wrap=True)
    out.print(f"{ds.num_classes} classes: {', '.join(ds.class_names)}", highlight=False, soft_wrap=True)

    splits = Table(title="splits")
    for col in ("split", "images", "negatives", "boxes", "ignored"):
        splits.add_column(col, justify="left" if col == "split" else "right")
    per_class = Table(title="boxes per class")
    per_class.add_column("class")
    counts = split_counts(ds)
    for name, c in counts.items():
        per_class.add_column(name, justify="right")
        splits.add_row(name, str(c["images"]), str(c["negatives"]), str(c["boxes"]), str(c["ignored"]))
    per_class.add_column("total", justify="right")
    for cname in ds.class_names:
        row = [c["per_class"][cname] for c in counts.values()]
        per_class.add_row(cname, *map(str, row), str(sum(row)))
    out.print(splits)
    out.print(per_class)

    sides = box_sides(ds)
    if sides.size:
        out.print("box sizes, sqrt(w*h) in original pixels:", highlight=False)
        for line in size_histogram(sides):
            out.print(line, highlight=False)
    print_report(ds.report, out)


@data_app.command("info")
def info(
    data: str = typer.Argument(..., help="Dataset folder (or COCO json / CSV / data.yaml)."),
    data_format: str = typer.Option("auto", "--format", help="auto, yolo, voc, coco or csv."),
    strict: bool = typer.Option(False, "--strict", help="Fail on the first problem instead of skipping it."),
    val_fraction: float = typer.Option(0.1, "--val-fraction", help="Share of images held out when the dataset has no val split."),
    seed: int = typer.Option(0, "--seed", help="Seed of that split."),
    json_out: bool = typer.Option(False, "--json", help="Print the same numbers as JSON only."),
) -> None:
    """Detect and validate a dataset; print splits, boxes per class, a box-size histogram and problems."""
    ds = load_dataset(data, format=data_format, strict=strict, val_fraction=val_fraction, seed=seed)
    if json_out:
        typer.echo(json.dumps(info_dict(ds), indent=2))
    else:
        print_info(ds)
