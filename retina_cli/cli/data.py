"""``retina data info DATA``: what was detected, split sizes, boxes per class, box sizes, problems."""

from __future__ import annotations

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


def print_info(ds: DetectionDataset) -> None:
    out = console()
    out.print(f"[bold]{ds.root}[/]: format [bold]{ds.format}[/] ({ds.detected_by})", highlight=False, soft_wrap=True)
    out.print(f"{ds.num_classes} classes: {', '.join(ds.class_names)}", highlight=False, soft_wrap=True)

    splits = Table(title="splits")
    for col in ("split", "images", "negatives", "boxes", "ignored"):
        splits.add_column(col, justify="left" if col == "split" else "right")
    per_class = Table(title="boxes per class")
    per_class.add_column("class")
    names = list(ds.splits)
    for name in names:
        per_class.add_column(name, justify="right")
    per_class.add_column("total", justify="right")
    counts = np.zeros((ds.num_classes, len(names)), np.int64)
    for j, name in enumerate(names):
        recs = ds.splits[name]
        labels = np.concatenate([r.labels for r in recs]) if recs else np.zeros(0, np.int64)
        ignored = sum(int(r.ignore.sum()) for r in recs)
        counts[:, j] = np.bincount(labels, minlength=ds.num_classes)
        negatives = sum(r.num_boxes == 0 for r in recs)
        splits.add_row(name, str(len(recs)), str(negatives), str(labels.size), str(ignored))
    for k, cname in enumerate(ds.class_names):
        per_class.add_row(cname, *map(str, counts[k].tolist()), str(int(counts[k].sum())))
    out.print(splits)
    out.print(per_class)

    boxes = [r.boxes for r in ds.records()]
    if boxes:
        b = np.concatenate(boxes)
        sides = np.sqrt((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]))
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
) -> None:
    """Detect and validate a dataset; print splits, boxes per class, a box-size histogram and problems."""
    print_info(load_dataset(data, format=data_format, strict=strict, val_fraction=val_fraction, seed=seed))
