"""Evaluate a checkpoint on a dataset split and write metrics, detections and PR curves."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from rich.console import Console

from retina_cli.engine.checkpoint import configs_from_checkpoint, model_from_checkpoint
from retina_cli.engine.detector import InferenceModel, prepare_inference
from retina_cli.engine.distributed import select_device
from retina_cli.engine.evaluate import EvalResult, evaluate_records
from retina_cli.errors import ConfigError, DataError


def align_classes(records: list[Any], data_classes: list[str], model_classes: tuple[str, ...], data: str) -> list[Any]:
    """Records with labels renumbered to the model's class order; DataError when the names differ."""
    if list(data_classes) == list(model_classes):
        return records
    if sorted(data_classes) != sorted(model_classes):
        missing = sorted(set(data_classes) - set(model_classes))
        extra = sorted(set(model_classes) - set(data_classes))
        raise DataError(
            f"{data}: dataset classes {list(data_classes)} do not match the checkpoint's {list(model_classes)}"
            + (f" (not in the model: {missing})" if missing else "") + (f" (not in the data: {extra})" if extra else "")
        )
    import numpy as np

    lut = np.array([model_classes.index(n) for n in data_classes], dtype=np.int64)
    return [replace(r, labels=lut[r.labels]) for r in records]


def run_evaluation(
    checkpoint: Path, data: str, split: str = "val", data_format: str = "auto", batch_size: int = 8, workers: int = 2,
    conf: float | None = None, iou: float | None = None, max_det: int | None = None, device: str = "auto",
    precision: str = "fp32", project: str = "runs/eval", name: str = "", console: Console | None = None,
    winograd: bool = True,
) -> tuple[EvalResult, Path]:
    from retina_cli.data import load_dataset
    from retina_cli.data.loader import make_loader
    from retina_cli.data.runs import next_run_dir

    if precision not in ("fp32", "bf16"):
        raise ConfigError(f"--precision must be fp32 or bf16, got {precision!r}")
    dev = select_device(device)
    if Path(checkpoint).suffix.lower() == ".onnx":
        if precision != "fp32":
            raise ConfigError(f"{checkpoint}: --precision {precision} is for checkpoints; an ONNX model runs as exported")
        from retina_cli.export.runtime import OnnxBackend

        backend = OnnxBackend(checkpoint, "cpu" if dev.type == "cpu" else "auto")
        model, model_cfg, post_cfg = None, backend.model_cfg, backend.post_cfg
    else:
        model, ckpt = model_from_checkpoint(checkpoint)
        model_cfg, _, post_cfg = configs_from_checkpoint(ckpt)
    post_cfg = replace(
        post_cfg,
        score_thresh=post_cfg.score_thresh if conf is None else conf,
        nms_thresh=post_cfg.nms_thresh if iou is None else iou,
        max_det=post_cfg.max_det if max_det is None else max_det,
    )
    dataset = load_dataset(data, data_format)
    if split not in dataset.splits or not dataset.splits[split]:
        raise DataError(f"{data}: no images in split {split!r} (splits: {', '.join(k for k, v in dataset.splits.items() if v)})")
    records = align_classes(dataset.splits[split], dataset.class_names, model_cfg.class_names, data)
    if model is None:
        from retina_cli.export.runtime import OnnxDetector

        infer, dev = OnnxDetector(backend, post_cfg), torch.device("cpu")  # inputs go to onnxruntime from the CPU
    else:
        infer = InferenceModel(prepare_inference(model, dev, precision, winograd), post_cfg).eval()
    loader = make_loader(records, model_cfg.img_size, batch_size, train=False, workers=workers)
    autocast = torch.bfloat16 if precision == "bf16" else None
    if console is not None:
        from rich.progress import Progress

        with Progress(console=console, transient=True) as progress:
            task = progress.add_task(f"eval {split}", total=len(records))
            res = evaluate_records(infer, loader, records, model_cfg.class_names, dev, autocast,
                                   progress=lambda: progress.advance(task))
    else:
        res = evaluate_records(infer, loader, records, model_cfg.class_names, dev, autocast)
    results = res.detections

    run_dir = next_run_dir(Path(project), name or None)
    (run_dir / "metrics.json").write_text(json.dumps(
        {"checkpoint": str(checkpoint), "data": str(data), "split": split, "images": len(records),
         "metrics": res.metrics, "per_class": res.per_class}, indent=2))
    for r in results:  # name the image as well as its id, so the file stands on its own
        r["file_name"] = str(records[r["image_id"] - 1].path)
    (run_dir / "detections.json").write_text(json.dumps(results))
    if res.precision is not None:
        try:
            from retina_cli.engine.plots import plot_pr_curves

            plot_pr_curves(res.precision, model_cfg.class_names, run_dir / "pr_curves.png")
        except ImportError:
            pass
    return res, run_dir
