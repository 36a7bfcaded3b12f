"""``retina eval CHECKPOINT DATA_DIR``: COCO metrics (pycocotools) on a dataset split."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from retina_cli.cli.app import app, console
from retina_cli.slicing.config import MERGE_METHODS, SliceConfig

_SLICE = SliceConfig(size=640)  # the defaults of the --slice-* flags


@app.command("eval")
def eval_cmd(
    checkpoint: Path = typer.Argument(..., help="A retina checkpoint (best.pt, last.pt or from `retina convert`)."),
    data: str = typer.Argument(..., help="Dataset folder (any supported layout)."),
    split: str = typer.Option("val", "--split", help="Which split to evaluate: train, val or test."),
    data_format: str = typer.Option("auto", "--format", help="auto, yolo, voc, coco or csv."),
    batch_size: int = typer.Option(8, "--batch-size", "--batch"),
    workers: int = typer.Option(2, "--workers"),
    conf: Optional[float] = typer.Option(None, "--conf", help="Score threshold (default: the checkpoint's validation threshold, usually 0.05: mAP ranks every detection)."),
    iou: Optional[float] = typer.Option(None, "--iou", help="NMS IoU threshold (default: the checkpoint's)."),
    max_det: Optional[int] = typer.Option(None, "--max-det"),
    device: str = typer.Option("auto", "--device"),
    precision: str = typer.Option("fp32", "--precision", help="fp32 or bf16 (autocast)."),
    winograd: bool = typer.Option(True, "--winograd/--no-winograd", help="On CPU in fp32: wide 3x3 convolutions as Winograd F(4x4, 3x3)."),
    project: str = typer.Option("runs/eval", "--project"),
    name: str = typer.Option("", "--name"),
    json_out: bool = typer.Option(False, "--json", help="Print the metrics as JSON only."),
    slice_size: Optional[int] = typer.Option(
        None, "--slice", metavar="SIZE",
        help="Sliced inference (SAHI): run SIZE x SIZE windows of each original image (and the whole image) and merge; "
             "for small objects in large images. Leave it out for no slicing."),
    slice_overlap: float = typer.Option(_SLICE.overlap, "--slice-overlap", help="Fraction of a window its neighbour shares, in [0, 0.9]."),
    slice_merge: str = typer.Option(_SLICE.merge, "--slice-merge",
                                    help="nms (IoU suppression) or nmm (merge boxes cut by window borders, by intersection over the smaller box)."),
    slice_merge_thresh: float = typer.Option(_SLICE.merge_thresh, "--slice-merge-thresh", help="IoU (nms) or IoS (nmm) above which boxes merge."),
    slice_full: bool = typer.Option(_SLICE.full_image, "--slice-full/--no-slice-full", help="Also run the whole image (finds objects larger than a window)."),
) -> None:
    """Evaluate a checkpoint: AP, AP50, AP75, AP small/medium/large, AR and per-class AP, the F1-best
    score threshold per class, a confusion matrix and error types; writes metrics.json, detections
    (COCO results JSON), PR and threshold curves, the worst images (errors/) and report.html."""
    from retina_cli import validation

    validation.check_flags(batch_size=batch_size, workers=workers, conf=conf, iou=iou, max_det=max_det,
                           slice=slice_size, slice_overlap=slice_overlap, slice_merge_thresh=slice_merge_thresh)
    validation.check_device(device)
    validation.check_choice(slice_merge, MERGE_METHODS, "--slice-merge")
    slicing = None
    if slice_size is not None:
        slicing = SliceConfig(slice_size, slice_overlap, slice_full, slice_merge, slice_merge_thresh)
    from retina_cli.api.detector import load
    from retina_cli.cli.progress import RichReporter

    out = console()
    progress = None if json_out else RichReporter(out, transient=True)
    res = load(checkpoint, device=device, precision=precision, winograd=winograd).val(
        data, split=split, data_format=data_format, batch=batch_size, workers=workers, conf=conf, iou=iou, max_det=max_det,
        project=project, name=name, progress=progress, slicing=slicing,
    )
    run_dir = res.run_dir
    if json_out:
        typer.echo(json.dumps(res.to_dict(), indent=2))
        return
    table = Table(title=f"COCO metrics on {data} [{split}]")
    for key in ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100"):
        table.add_column(key, justify="right")
    table.add_row(*(f"{res.metrics[k]:.4f}" for k in ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100")))
    out.print(table)
    diag = res.diagnosis
    best = diag.curves.best
    per = Table(title="per class")
    for col in ("class", "GT boxes", "AP", "AP50", "F1-best conf", "P", "R", "F1"):
        per.add_column(col, justify="left" if col == "class" else "right")
    for cls_name, v in res.per_class.items():
        b = best[cls_name]
        per.add_row(cls_name, f"{int(v['num_gt'])}", f"{v['AP']:.4f}", f"{v['AP50']:.4f}",
                    f"{b['conf']:.2f}", f"{b['precision']:.3f}", f"{b['recall']:.3f}", f"{b['f1']:.3f}")
    if "all" in best:
        b = best["all"]
        per.add_row("all (mean)", "", "", "", f"{b['conf']:.2f}", f"{b['precision']:.3f}", f"{b['recall']:.3f}", f"{b['f1']:.3f}")
    out.print(per)
    e = diag.errors
    errs = ", ".join(f"{k} {v}" for k, v in e.errors.items())
    out.print(f"at --conf {diag.conf:.2f} (IoU {e.iou:.2f}): {errs}", highlight=False)
    out.print(f"suggested: --conf {diag.conf:.2f} (the best F1 averaged over classes)", highlight=False)
    written = [n for n in ("metrics.json", "detections.json", "pr_curves.png", "confusion_matrix.png",
                           "threshold_curves.png", "report.html") if (run_dir / n).is_file()]
    out.print(f"results in {run_dir}: {', '.join(written)}", highlight=False)
