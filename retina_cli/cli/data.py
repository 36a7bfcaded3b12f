"""``retina data info DATA``: what was detected, split sizes, boxes per class, box sizes, problems."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import typer
from rich.table import Table

from retina_cli.cli.app import app, console

if TYPE_CHECKING:  # numpy and the readers (OpenCV) load when the command runs, not for --help
    from retina_cli.data.records import DetectionDataset

data_app = typer.Typer(help="Inspect and validate datasets.", no_args_is_help=True)
app.add_typer(data_app, name="data")


def print_info(ds: DetectionDataset) -> None:
    from retina_cli.cli.data_report import print_report
    from retina_cli.data.summary import box_sides, size_histogram, split_counts

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
    from retina_cli import validation

    validation.check_flags(val_fraction=val_fraction, seed=seed)
    from retina_cli.data import load_dataset
    from retina_cli.data.summary import info_dict

    ds = load_dataset(data, format=data_format, strict=strict, val_fraction=val_fraction, seed=seed)
    if json_out:
        typer.echo(json.dumps(info_dict(ds), indent=2))
    else:
        print_info(ds)
