"""``retina analyze-loss CHECKPOINT DATA_DIR``: the paper's Figure 4 (cumulative focal loss of
positive and negative examples for several gammas) for a trained model on a dataset."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from retina_cli.cli.app import app, console
from retina_cli.errors import ConfigError


def parse_gammas(text: str) -> tuple[float, ...]:
    """``"0,0.5,1,2"`` -> (0.0, 0.5, 1.0, 2.0); zero is allowed, negatives and an empty list are not."""
    try:
        values = tuple(float(x) for x in text.replace(" ", "").split(",") if x)
    except ValueError as exc:
        raise ConfigError(f"--gammas {text!r}: expected comma-separated numbers such as 0,0.5,1,2") from exc
    if not values or any(not 0 <= v < math.inf for v in values):  # NaN fails this too
        raise ConfigError(f"--gammas {text!r}: give one or more values >= 0")
    return values


@app.command("analyze-loss")
def analyze_loss(
    checkpoint: Path = typer.Argument(..., help="A retina checkpoint (best.pt, last.pt)."),
    data: str = typer.Argument(..., help="Dataset folder (any supported layout)."),
    split: str = typer.Option("train", "--split", help="Images to run on: train (what the loss was trained on), val or test."),
    data_format: str = typer.Option("auto", "--format", help="auto, yolo, voc, coco or csv."),
    max_images: int = typer.Option(100, "--max-images", help="Use the first N images of the split."),
    img_size: int = typer.Option(0, "--img-size", help="Network input size (default: the checkpoint's)."),
    gammas: str = typer.Option("0,0.5,1,2", "--gammas", help="Focal loss gammas to compare."),
    alpha: Optional[float] = typer.Option(None, "--alpha", help="Focal loss alpha (default: the checkpoint's; it cancels in the curves)."),
    max_negatives: int = typer.Option(10_000_000, "--max-negatives", help="Keep a uniform sample of about this many negatives (memory bound)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the negative sample."),
    batch_size: int = typer.Option(4, "--batch-size", "--batch"),
    workers: int = typer.Option(2, "--workers"),
    device: str = typer.Option("auto", "--device"),
    out: Optional[Path] = typer.Option(None, "--out", help="PNG to write (default runs/analyze/exp*/loss_cdf.png); the JSON goes beside it."),
    project: str = typer.Option("runs/analyze", "--project"),
    name: str = typer.Option("", "--name"),
    json_out: bool = typer.Option(False, "--json", help="Print the numbers as JSON only."),
) -> None:
    """Cumulative focal loss of positive anchors (their GT class) and negative entries (every class of
    background anchors), normalised and sorted, for each gamma, as the RetinaNet paper's Figure 4;
    prints the share of each set's loss carried by its hardest 1% and 10%."""
    from retina_cli import validation

    # --img-size 0 is the checkpoint's size; --max-images must keep at least one image here
    validation.check_flags(img_size=img_size or None, alpha=alpha, max_negatives=max_negatives, seed=seed,
                           batch_size=batch_size, workers=workers)
    validation.check("loss_max_images", max_images, "--max-images")
    validation.check_device(device)
    from retina_cli.cli.progress import RichReporter
    from retina_cli.analysis.focal_loss import HARDEST, run_loss_analysis

    term = console()
    analysis, png = run_loss_analysis(
        checkpoint, data, split=split, data_format=data_format, max_images=max_images, img_size=img_size or None,
        gammas=parse_gammas(gammas), alpha=alpha, max_negatives=max_negatives, seed=seed, batch_size=batch_size,
        workers=workers, device=device, out=out, project=project, name=name, progress=None if json_out else RichReporter(term, transient=True),
    )
    if json_out:
        typer.echo(json.dumps(json.loads(png.with_suffix(".json").read_text()), indent=2))
        return
    sampled = "" if analysis.sampled_negatives == analysis.num_negatives else f" (a sample of {analysis.sampled_negatives:,})"
    table = Table(
        title=f"share of each set's focal loss from its hardest examples ({analysis.images} {split} images, alpha {analysis.alpha:g})",
        caption=f"{analysis.num_positives:,} positives, {analysis.num_negatives:,} negatives{sampled}",
    )
    table.add_column("gamma", justify="right")
    for kind in ("neg", "pos"):
        for f in HARDEST:
            table.add_column(f"{kind} {f:.0%}", justify="right")
    table.add_column("neg share of all", justify="right")
    for r in analysis.results:
        shares = [d.hardest.get(f) for d in (r.negative, r.positive) for f in HARDEST]
        table.add_row(f"{r.gamma:g}", *("-" if s is None else f"{s:.1%}" for s in shares), f"{r.neg_loss_share:.1%}")
    term.print(table)
    term.print(f"curves in {png}, numbers in {png.with_suffix('.json')}", highlight=False)
