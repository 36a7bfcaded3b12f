"""``retina eval CHECKPOINT DATA_DIR``: COCO metrics (pycocotools) on a dataset split."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from retina_cli.cli.app import app, console


@app.command("eval")
def eval_cmd(
    checkpoint: Path = typer.Argument(..., help="A retina checkpoint (best.pt, last.pt or from `retina convert`)."),
    data: str = typer.Argument(..., help="Dataset folder (any supported layout)."),
    split: str = typer.Option("val", "--split", help="Which split to evaluate: train, val or test."),
    data_format: str = typer.Option("auto", "--format", help="auto, yolo, voc, coco or csv."),
    batch_size: int = typer.Option(8, "--batch-size", "--batch"),
    workers: int = typer.Option(2, "--workers"),
    conf: Optional[float] = typer.Option(None, "--conf", help="Score threshold (default: the checkpoint's)."),
    iou: Optional[float] = typer.Option(None, "--iou", help="NMS IoU threshold (default: the checkpoint's)."),
    max_det: Optional[int] = typer.Option(None, "--max-det"),
    device: str = typer.Option("auto", "--device"),
    precision: str = typer.Option("fp32", "--precision", help="fp32 or bf16 (autocast)."),
    winograd: bool = typer.Option(True, "--winograd/--no-winograd", help="On CPU in fp32: wide 3x3 convolutions as Winograd F(4x4, 3x3)."),
    project: str = typer.Option("runs/eval", "--project"),
    name: str = typer.Option("", "--name"),
    json_out: bool = typer.Option(False, "--json", help="Print the metrics as JSON only."),
) -> None:
    """Evaluate a checkpoint: AP, AP50, AP75, AP small/medium/large, AR and per-class AP; writes
    metrics.json, detections (COCO results JSON) and PR curves."""
    from retina_cli import validation

    validation.check_flags(batch_size=batch_size, workers=workers, conf=conf, iou=iou, max_det=max_det)
    validation.check_device(device)
    from retina_cli.api.detector import load
    from retina_cli.cli.progress import RichReporter

    out = console()
    res = load(checkpoint, device=device, precision=precision, winograd=winograd).val(
        data, split=split, data_format=data_format, batch=batch_size, workers=workers, conf=conf, iou=iou, max_det=max_det,
        project=project, name=name, progress=None if json_out else RichReporter(out, transient=True),
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
    per = Table(title="per class")
    per.add_column("class")
    per.add_column("GT boxes", justify="right")
    per.add_column("AP", justify="right")
    per.add_column("AP50", justify="right")
    for cls_name, v in res.per_class.items():
        per.add_row(cls_name, f"{int(v['num_gt'])}", f"{v['AP']:.4f}", f"{v['AP50']:.4f}")
    out.print(per)
    written = [n for n in ("metrics.json", "detections.json", "pr_curves.png") if (run_dir / n).is_file()]
    out.print(f"results in {run_dir}: {', '.join(written)}", highlight=False)
