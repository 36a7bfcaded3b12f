"""``retina train DATA_DIR``: flags -> ModelConfig / LossConfig / PostprocessConfig / TrainConfig -> engine."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console

from retina_cli.cli.app import app, console
from retina_cli.cli.options import apply_config_file, parse_floats, parse_levels
from retina_cli.config import AnchorConfig, LossConfig, ModelConfig, PostprocessConfig, TrainConfig

_T = TrainConfig()
_L = LossConfig()
_P = PostprocessConfig()


def build_configs(p: dict[str, Any]) -> tuple[ModelConfig, LossConfig, PostprocessConfig, TrainConfig]:
    """Flag values by parameter name -> the four configs (class names are filled from the data later)."""
    from retina_cli import plugins

    provider, backbone = plugins.split_backbone_name(p["backbone"])
    mean, std = plugins.check_backbone_name(provider, backbone).normalization(backbone)
    lo, hi = parse_levels(p["fpn_levels"])
    anchors = AnchorConfig(
        sizes=parse_floats(p["anchor_sizes"], "--anchor-sizes"),
        ratios=parse_floats(p["anchor_ratios"], "--anchor-ratios") or AnchorConfig().ratios,
        scales=parse_floats(p["anchor_scales"], "--anchor-scales") or AnchorConfig().scales,
    )
    model = ModelConfig(
        num_classes=1, backbone=backbone, provider=provider, min_level=lo, max_level=hi,
        fpn_channels=p["fpn_channels"], p6_from=p["p6_from"], head_depth=p["head_depth"],
        head_width=p["head_width"], head_norm=p["head_norm"], prior=p["prior"], anchors=anchors,
        img_size=p["img_size"], mean=mean, std=std,
    )
    loss = LossConfig(gamma=p["gamma"], alpha=p["alpha"], box_loss=p["box_loss"], fg_iou=p["fg_iou"], bg_iou=p["bg_iou"])
    post = PostprocessConfig(score_thresh=p["conf"], nms_thresh=p["iou"], max_det=p["max_det"])
    train_fields = {f for f in TrainConfig.__dataclass_fields__}
    train = TrainConfig(**{k: v for k, v in p.items() if k in train_fields})
    return model, loss, post, train


@app.command("train")
def train(
    ctx: typer.Context,
    data: str = typer.Argument(..., help="Dataset folder (YOLO, Pascal VOC, COCO JSON or CSV; detected automatically)."),
    config: Optional[Path] = typer.Option(None, "--config", help="YAML of flag names to values (a run's args.yaml); flags given here win."),
    resume: Optional[Path] = typer.Option(None, "--resume", help="Continue a run from its last.pt (configs come from the checkpoint)."),
    data_format: str = typer.Option(_T.data_format, "--format", help="auto, yolo, voc, coco or csv."),
    # model
    backbone: str = typer.Option("resnet50", "--backbone", "-b", help="timm name, or provider:name for a plugin (see `retina backbones`)."),
    backbone_weights: str = typer.Option("", "--backbone-weights", help="Local classification checkpoint to load into the backbone."),
    pretrained: bool = typer.Option(False, "--pretrained", help="Download the backbone's ImageNet weights through timm's hub."),
    img_size: int = typer.Option(640, "--img-size", help="Letterboxed square input size (multiple of the top stride)."),
    fpn_levels: str = typer.Option("3-7", "--fpn-levels", help="Pyramid levels MIN-MAX (P3-P7 in the paper)."),
    fpn_channels: int = typer.Option(256, "--fpn-channels"),
    p6_from: str = typer.Option("c5", "--p6-from", help="c5 (paper) or p5 (torchvision)."),
    head_depth: int = typer.Option(4, "--head-depth", help="Conv layers in each subnet."),
    head_width: int = typer.Option(256, "--head-width", help="Channels of the subnet convs."),
    head_norm: str = typer.Option("none", "--head-norm", help="none (paper) or gn."),
    prior: float = typer.Option(0.01, "--prior", help="Initial foreground probability of the classifier."),
    anchor_sizes: str = typer.Option("", "--anchor-sizes", help="Base size per level, e.g. 32,64,128,256,512 (default 4 x stride)."),
    anchor_ratios: str = typer.Option("0.5,1,2", "--anchor-ratios", help="Height/width ratios."),
    anchor_scales: str = typer.Option("1,1.2599,1.5874", "--anchor-scales", help="Scales of the base size."),
    anchors: str = typer.Option("manual", "--anchors", help="manual (the --anchor-* flags) or auto: search sizes, ratios and scales on the training split first (see `retina anchors`)."),
    # loss
    gamma: float = typer.Option(_L.gamma, "--gamma", help="Focal loss focusing parameter."),
    alpha: float = typer.Option(_L.alpha, "--alpha", help="Focal loss foreground weight (negative: off)."),
    box_loss: str = typer.Option(_L.box_loss, "--box-loss", help="l1, smooth_l1 or giou."),
    fg_iou: float = typer.Option(_L.fg_iou, "--fg-iou"),
    bg_iou: float = typer.Option(_L.bg_iou, "--bg-iou"),
    # post-processing (used for validation, stored for predict)
    conf: float = typer.Option(_P.score_thresh, "--conf", help="Score threshold of detections."),
    iou: float = typer.Option(_P.nms_thresh, "--iou", help="NMS IoU threshold."),
    max_det: int = typer.Option(_P.max_det, "--max-det"),
    # optimisation
    epochs: int = typer.Option(_T.epochs, "--epochs", "-e"),
    batch_size: int = typer.Option(_T.batch_size, "--batch-size", "--batch"),
    workers: int = typer.Option(_T.workers, "--workers"),
    optimizer: str = typer.Option(_T.optimizer, "--optimizer", help="sgd (momentum) or adamw."),
    lr: float = typer.Option(_T.lr, "--lr"),
    momentum: float = typer.Option(_T.momentum, "--momentum"),
    weight_decay: float = typer.Option(_T.weight_decay, "--weight-decay"),
    warmup_iters: int = typer.Option(_T.warmup_iters, "--warmup-iters"),
    schedule: str = typer.Option(_T.schedule, "--schedule", help="cosine, step or constant."),
    grad_clip: float = typer.Option(_T.grad_clip, "--grad-clip", help="Max gradient norm (0: off)."),
    freeze_bn: bool = typer.Option(_T.freeze_bn, "--freeze-bn/--no-freeze-bn", help="Freeze backbone BatchNorm."),
    channels_last: bool = typer.Option(_T.channels_last, "--channels-last/--no-channels-last", help="NHWC weights and batches (faster convolutions on CPU and with AMP)."),
    winograd: bool = typer.Option(_T.winograd, "--winograd/--no-winograd", help="On CPU without --amp: 3x3 stride-1 convolutions of >= 96 channels as Winograd F(4x4, 3x3) (4x fewer multiply-adds)."),
    freeze_backbone: bool = typer.Option(_T.freeze_backbone, "--freeze-backbone", help="Train only FPN and head."),
    freeze_stride: int = typer.Option(_T.freeze_stride, "--freeze-stride", help="Do not train the backbone layers that run at strides up to this (4: stem and first stage; 0: train all). For fine-tuning from ImageNet weights: their backward pass is skipped."),
    amp: bool = typer.Option(_T.amp, "--amp", help="Mixed precision (fp16 on CUDA, bf16 on CPU)."),
    ema: bool = typer.Option(_T.ema, "--ema", help="Keep an exponential moving average of the weights."),
    seed: int = typer.Option(_T.seed, "--seed"),
    device: str = typer.Option(_T.device, "--device", help="auto, cpu, cuda or cuda:N."),
    # data
    val_fraction: float = typer.Option(_T.val_fraction, "--val-fraction", help="Validation share when the data has no split."),
    strict: bool = typer.Option(False, "--strict", help="Treat every data warning as an error."),
    hflip: float = typer.Option(_T.hflip, "--hflip", help="Horizontal flip probability."),
    scale_min: float = typer.Option(_T.scale_min, "--scale-min", help="Scale jitter lower bound."),
    scale_max: float = typer.Option(_T.scale_max, "--scale-max", help="Scale jitter upper bound."),
    color_jitter: float = typer.Option(_T.color_jitter, "--color-jitter", help="Colour jitter strength (0: off)."),
    # run folder
    project: str = typer.Option(_T.project, "--project", help="Parent folder of runs."),
    name: str = typer.Option("", "--name", help="Run folder name (default exp, exp2, ...)."),
    exist_ok: bool = typer.Option(False, "--exist-ok", help="Reuse an existing run folder."),
    val_interval: int = typer.Option(_T.val_interval, "--val-interval", help="Validate every N epochs."),
    tensorboard: bool = typer.Option(False, "--tensorboard", help="Also log to TensorBoard (needs tensorboard)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No bars or tables: epoch lines go to stderr, stdout gets only the paths of best.pt and last.pt."),
) -> None:
    """Train RetinaNet on a folder of labels; writes last.pt, best.pt, metrics.csv and curves to the run folder."""
    from retina_cli.data.report import print_report
    from retina_cli.engine import distributed as dist_utils
    from retina_cli.engine.trainer import prepare_training

    # --quiet: a console that is not a terminal draws no progress bars; it writes to stderr
    out = Console(stderr=True, force_terminal=False, soft_wrap=True) if quiet else console()
    params = apply_config_file(ctx, dict(ctx.params), config)
    params["data"] = data
    model_cfg, loss_cfg, post_cfg, train_cfg = build_configs(params)
    if anchors not in ("manual", "auto"):
        from retina_cli.errors import ConfigError

        raise ConfigError(f"--anchors must be manual or auto, got {anchors!r}")
    if anchors == "auto" and resume is None:
        from retina_cli.cli.anchors import auto_anchors

        model_cfg = auto_anchors(model_cfg, loss_cfg, train_cfg, out)
    trainer = prepare_training(
        model_cfg, loss_cfg, post_cfg, train_cfg, resume=str(resume) if resume else None, console=out,
        on_dataset=(lambda ds: _count_problems(ds, data, out)) if quiet else (lambda ds: print_report(ds.report, out)),
    )
    if trainer.dist.is_main:
        _write_args(trainer.run_dir, params)
    if trainer.dist.is_main and not quiet:
        m = trainer.model.cfg
        out.print(
            f"training {m.backbone} P{m.min_level}-P{m.max_level} at {m.img_size}px on {len(trainer.train_loader.dataset)} "
            f"images ({', '.join(m.class_names)}), {trainer.cfg.epochs} epochs on {trainer.device}"
            + (f" x{trainer.dist.world_size} processes" if trainer.dist.enabled else "")
            + f" -> {trainer.run_dir}",
            highlight=False,
        )
    try:
        result = trainer.fit()
    finally:
        dist_utils.cleanup()
    if trainer.dist.is_main and quiet:
        typer.echo(f"{result.run_dir / 'best.pt'}\n{result.run_dir / 'last.pt'}")
    elif trainer.dist.is_main:
        out.print(
            f"done: best val mAP {max(result.best_ap, 0):.4f} (mAP50 {max(result.best_ap50, 0):.4f}); "
            f"weights {result.run_dir / 'best.pt'}, {result.run_dir / 'last.pt'}; metrics {result.run_dir / 'metrics.csv'}",
            highlight=False,
        )


def _count_problems(ds: Any, data: str, out: Console) -> None:
    if ds.report.problems:
        out.print(f"warning: {len(ds.report.problems)} problems in the dataset; `retina data info {data}` lists them",
                  highlight=False, soft_wrap=True)


def _write_args(run_dir: Path, params: dict[str, Any]) -> None:
    import yaml

    keep = {k: (str(v) if isinstance(v, Path) else v) for k, v in params.items() if k not in ("config", "resume", "quiet")}
    (run_dir / "args.yaml").write_text(yaml.safe_dump(keep, sort_keys=False))
