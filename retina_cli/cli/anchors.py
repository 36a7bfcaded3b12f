"""``retina anchors DATA``: how well the anchor settings cover a dataset's boxes, and better ones.

Coverage is measured at the network input size: the share of GT boxes whose best anchor IoU
reaches the matcher's foreground threshold, per class and COCO size bucket. The search is
:func:`retina_cli.anchors.search.search_anchors`; ``retina train`` runs the same search on its
training split when its anchors reach fewer than 95% of the boxes (``--anchors check``, the
default) or always (``--anchors auto``): :func:`retina_cli.anchors.auto.fit_anchors`.
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Optional, Sequence

import typer
from rich.console import Console
from rich.table import Table

from retina_cli.cli.app import app, console
from retina_cli.config import LossConfig, TrainConfig, to_dict
from retina_cli.anchors.auto import COVERAGE_FLOOR, anchor_flags  # light module
from retina_cli.errors import ConfigError

def _percent(share: float | None) -> str:
    return "-" if share is None else f"{100 * share:.2f}"


def _print_report(out: Console, before: dict, after: dict, class_names: Sequence[str], fg_iou: float,
                  title: str) -> None:
    table = Table(title=title)
    for col in ("subset", "GT boxes", "covered before %", "covered after %"):
        table.add_column(col, justify="left" if col == "subset" else "right")
    table.add_row("all", str(before["boxes"]), _percent(before["coverage"]), _percent(after["coverage"]))
    for name in class_names:
        table.add_row(f"class {name}", str(before["class_boxes"][name]),
                      _percent(before["per_class"][name]), _percent(after["per_class"][name]))
    for name in before["per_size"]:
        table.add_row(f"size {name}", str(before["size_boxes"][name]),
                      _percent(before["per_size"][name]), _percent(after["per_size"][name]))
    out.print(table)
    out.print(f"covered: best anchor IoU >= {fg_iou}; mean best IoU {before['mean_best_iou']} -> {after['mean_best_iou']}; "
              f"mean foreground anchors per box {before['mean_positives']} -> {after['mean_positives']} "
              f"(matcher on {before['positives_boxes']} boxes)", highlight=False)


def _summaries(records, class_names, before_cfg, after_cfg, levels, img_size, loss: LossConfig, matched_images: int):
    import numpy as np

    from retina_cli.anchors.fit import BUCKETS, anchor_fit, coverage_summary

    out = []
    for cfg in (before_cfg, after_cfg):
        fit = anchor_fit(records, cfg, levels, img_size, loss.fg_iou, loss.bg_iou, matched_images=matched_images)
        summary = coverage_summary(fit, class_names, loss.fg_iou)
        summary["class_boxes"] = {n: int((fit.labels == k).sum()) for k, n in enumerate(class_names)}
        summary["size_boxes"] = {n: int((fit.buckets == b).sum()) for b, n in enumerate(BUCKETS)}
        summary["anchors"] = {k: v for k, v in to_dict(cfg).items() if k in ("sizes", "ratios", "scales")}
        summary["anchors"]["sizes"] = list(cfg.sizes_for(tuple(levels)))
        out.append((summary, np.asarray(fit.best_iou)))
    return out


def _plot(path: Path, before_iou, after_iou, fg_iou: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    bins = [i / 40 for i in range(41)]
    ax.hist(before_iou, bins=bins, alpha=0.6, label="before")
    ax.hist(after_iou, bins=bins, alpha=0.6, label="after")
    ax.axvline(fg_iou, color="k", linestyle="--", linewidth=1, label=f"fg IoU {fg_iou}")
    ax.set_xlabel("best anchor IoU per GT box")
    ax.set_ylabel("GT boxes")
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


@app.command("anchors")
def anchors(
    data: str = typer.Argument(..., help="Dataset folder (YOLO, Pascal VOC, COCO JSON or CSV; detected automatically)."),
    data_format: str = typer.Option("auto", "--format", help="auto, yolo, voc, coco or csv."),
    split: str = typer.Option("train", "--split", help="train, val, test or all."),
    val_fraction: float = typer.Option(TrainConfig().val_fraction, "--val-fraction", help="Validation share when the data has no split."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="The `retina train` preset whose input size, levels and anchors to measure (default auto: as `retina train` picks)."),
    img_size: Optional[int] = typer.Option(None, "--img-size", help="Letterboxed square input size (default: the preset's)."),
    fpn_levels: Optional[str] = typer.Option(None, "--fpn-levels", help="Pyramid levels MIN-MAX (default: the preset's)."),
    anchor_sizes: Optional[str] = typer.Option(None, "--anchor-sizes", help="Current base size per level, or Nx for N x stride (default: the preset's)."),
    anchor_ratios: Optional[str] = typer.Option(None, "--anchor-ratios", help="Current height/width ratios (default: the preset's)."),
    anchor_scales: Optional[str] = typer.Option(None, "--anchor-scales", help="Current scales of the base size (default: the preset's)."),
    fg_iou: float = typer.Option(LossConfig().fg_iou, "--fg-iou", help="Foreground IoU of the matcher (a box is covered at this IoU)."),
    bg_iou: float = typer.Option(LossConfig().bg_iou, "--bg-iou", help="Background IoU of the matcher."),
    num_ratios: int = typer.Option(0, "--num-ratios", help="Ratios to search (0: as many as now, so anchors per location stay the same)."),
    num_scales: int = typer.Option(0, "--num-scales", help="Scales to search (0: as many as now)."),
    generations: int = typer.Option(200, "--generations", help="Evolution steps of the search."),
    max_boxes: int = typer.Option(1000, "--max-boxes", help="Boxes the evolution scores (a seeded sample); the final pick uses all."),
    matched_images: int = typer.Option(32, "--matched-images", help="Images the full matcher runs on for foreground anchors per box (0: none)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the search and of the train/val split."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of the table."),
    plot: Optional[Path] = typer.Option(None, "--plot", help="Write a PNG of best-IoU histograms before and after."),
) -> None:
    """Report how well the anchors cover the dataset's boxes (best anchor IoU >= --fg-iou, per class and
    size), search sizes, ratios and scales that cover them better, and print the flags to train with."""
    from retina_cli import validation

    validation.check_settings(dict(val_fraction=val_fraction, img_size=img_size, fg_iou=fg_iou, bg_iou=bg_iou,
                                   num_ratios=num_ratios, num_scales=num_scales, generations=generations,
                                   max_boxes=max_boxes, matched_images=matched_images, seed=seed))
    from retina_cli.anchors.search import search_anchors
    from retina_cli.data import load_dataset
    from retina_cli.anchors.fit import letterboxed_boxes
    from retina_cli.engine.runs import output_file

    if plot is not None:
        output_file(plot, "--plot")  # its folder made and probed before the search runs

    import torch

    # small tensor ops on a machine that may be busy: one thread is several times faster here
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    from retina_cli.train_settings import geometry, resolve

    settings = resolve({"model": model, "img_size": img_size, "fpn_levels": fpn_levels, "anchor_sizes": anchor_sizes,
                        "anchor_ratios": anchor_ratios, "anchor_scales": anchor_scales})
    img_size, (lo, hi), current = geometry(settings)
    levels = tuple(range(lo, hi + 1))
    loss = LossConfig(fg_iou=fg_iou, bg_iou=bg_iou)
    ds = load_dataset(data, format=data_format, val_fraction=val_fraction, seed=seed)
    if split != "all" and split not in ds.splits:
        raise ConfigError(f"--split {split!r}: this dataset has {', '.join(ds.splits)} (or use all)")
    records = ds.records(None if split == "all" else split)
    boxes, _ = letterboxed_boxes(records, img_size)
    if boxes.shape[0] == 0:
        raise ConfigError(f"{data}: the {split} split has no boxes to fit anchors to")
    t1 = time.perf_counter()
    found = search_anchors(boxes, current, levels, img_size, fg_iou, num_ratios, num_scales, generations,
                           max_boxes=max_boxes, seed=seed)
    search_s = time.perf_counter() - t1
    (before, before_iou), (after, after_iou) = _summaries(
        records, ds.class_names, current, found, levels, img_size, loss, matched_images
    )
    flags = anchor_flags(found, levels)
    if plot is not None:
        _plot(plot, before_iou, after_iou, fg_iou)
    total_s = time.perf_counter() - t0
    if as_json:
        payload: dict[str, Any] = {
            "data": str(ds.root), "split": split, "img_size": img_size, "fpn_levels": [lo, hi], "fg_iou": fg_iou,
            "before": before, "after": after, "changed": found != current, "flags": flags,
            "search_seconds": round(search_s, 2), "seconds": round(total_s, 2),
        }
        typer.echo(json.dumps(payload, indent=2))
        return
    out = console()
    _print_report(out, before, after, ds.class_names, fg_iou,
                  f"anchor coverage of {before['boxes']} GT boxes ({split}, {img_size}px input, P{lo}-P{hi})")
    out.print(f"before: {anchor_flags(current, levels)}", highlight=False, soft_wrap=True)
    if found == current:
        out.print("no setting found covers these boxes better; keep the current anchors", highlight=False)
    else:
        out.print(f"after:  {flags}", highlight=False, soft_wrap=True)
        if before["coverage"] is not None and before["coverage"] < COVERAGE_FLOOR and not any((anchor_sizes, anchor_ratios, anchor_scales)):
            out.print(f"`retina train` searches by itself here (its anchors reach under {100 * COVERAGE_FLOOR:g}% of the boxes; "
                      "--anchors manual keeps them)", highlight=False, soft_wrap=True)
    out.print(f"search {search_s:.1f}s, total {total_s:.1f}s" + (f"; histogram {plot}" if plot else ""), highlight=False)
