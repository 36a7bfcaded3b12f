"""`retina bench` end to end: build the subjects for the options, time them together, check that
compared models agree, and (with checkpoints + a dataset) put speed against accuracy."""

from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import torch

from retina_cli.config import AnchorConfig, LossConfig, ModelConfig, PostprocessConfig
from retina_cli.bench.timing import (
    Subject, SubjectResult, bench_images, match_detections, peak_memory_mb, run_stages, time_subjects,
)
from retina_cli.bench.precision import native_bf16, torch_precision_path
from retina_cli.errors import ConfigError

BACKENDS = ("torch", "onnxruntime", "int8", "openvino", "openvino-int8")
COMPARE = ("", "torchvision")


@dataclass(frozen=True)
class BenchOptions:
    """What to time. Without checkpoints the model is built from the layout fields with seeded
    random weights (timing does not depend on the weights; ``score_bias`` "auto" shifts the class
    bias so that a realistic number of candidates reach NMS)."""

    checkpoints: tuple[str, ...] = ()
    backbone: str = "resnet50"
    img_size: int | None = None  # None: 640, or a checkpoint's own size
    levels: tuple[int, int] = (3, 7)
    num_classes: int = 3
    fpn_channels: int = 256
    head_depth: int = 4
    head_width: int = 256
    head_norm: str = "none"
    anchors: AnchorConfig = field(default_factory=AnchorConfig)
    post: PostprocessConfig = field(default_factory=PostprocessConfig)
    batch: int = 1
    train_batch: int = 2
    threads: int = 0
    device: str = "auto"
    runs: int = 5
    warmup: int = 2
    precision: str = "fp32"
    channels_last: bool = True
    winograd: bool = True
    fold_bn: bool = True
    compile: bool = False
    backends: tuple[str, ...] = ("torch",)
    compare: str = ""
    train: bool = True
    memory: bool = True
    score_bias: str = "auto"
    seed: int = 0

    def __post_init__(self) -> None:
        bad = [b for b in self.backends if b not in BACKENDS]
        if bad or not self.backends:
            raise ConfigError(f"--backends {','.join(self.backends)}: choose from {', '.join(BACKENDS)}")
        if self.compare not in COMPARE:
            raise ConfigError(f"--compare {self.compare!r}: only 'torchvision' is supported")
        if self.precision not in ("fp32", "bf16"):
            raise ConfigError(f"--precision {self.precision!r}: expected fp32 or bf16")
        if self.runs < 1 or self.warmup < 0 or self.batch < 1 or self.train_batch < 1:
            raise ConfigError("--runs, --batch and --train-batch must be at least 1, --warmup at least 0")
        if self.compare and self.checkpoints:
            raise ConfigError("--compare torchvision builds both models itself from seeded weights: give no checkpoint")
        if self.compare and (self.backbone != "resnet50" or self.levels != (3, 7) or self.fpn_channels != 256
                             or self.head_depth != 4 or self.head_width != 256 or self.head_norm != "none"):
            raise ConfigError(
                "--compare torchvision times torchvision's retinanet_resnet50_fpn layout: use --backbone resnet50, "
                "--fpn-levels 3-7 and the default FPN/head sizes"
            )


@dataclass
class BenchReport:
    options: dict[str, Any]
    environment: dict[str, Any]
    results: list[SubjectResult]
    agreement: dict[str, float]  # subject name -> share of detections matching the reference
    warnings: list[str]

    def to_dict(self) -> dict[str, Any]:
        ref = self.results[0] if self.results else None
        ratios = {}
        if ref is not None and ref.name == "torchvision":
            for r in self.results[1:]:
                ratios[r.name] = {
                    "inference": _ratio(r.inference, ref.inference),
                    "network": _ratio(r.inference, ref.inference, "network"),
                    "train": _ratio(r.train, ref.train),
                    "train_memory": (r.memory_mb["train"] / ref.memory_mb["train"])
                    if "train" in r.memory_mb and ref.memory_mb.get("train") else None,
                }
        return {
            "options": self.options,
            "environment": self.environment,
            "results": [r.to_dict() for r in self.results],
            "agreement": self.agreement,
            "ratios_to_torchvision": ratios,
            "warnings": self.warnings,
        }


def _ratio(a: dict, b: dict, key: str = "total") -> float | None:
    if key in a and key in b and b[key].median > 0:
        return a[key].median / b[key].median
    return None


def environment(device: torch.device, precision: str = "fp32") -> dict[str, Any]:
    import platform

    env = {
        "torch": torch.__version__, "device": str(device), "threads": torch.get_num_threads(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(), "native_bf16": native_bf16(),
        "precision_path": torch_precision_path(precision, device),
        "processor": platform.processor() or platform.machine(),
    }
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
    for runtime in ("onnxruntime", "openvino"):
        try:
            env[runtime] = __import__(runtime).__version__
        except ImportError:
            pass
    return env


def _model_from_options(opts: BenchOptions) -> tuple[Any, LossConfig, PostprocessConfig]:
    from retina_cli.model.retinanet import RetinaNet

    torch.manual_seed(opts.seed)
    cfg = ModelConfig(
        num_classes=opts.num_classes, backbone=opts.backbone, min_level=opts.levels[0], max_level=opts.levels[1],
        fpn_channels=opts.fpn_channels, head_depth=opts.head_depth, head_width=opts.head_width,
        head_norm=opts.head_norm, anchors=opts.anchors, img_size=opts.img_size or 640,
    )
    return RetinaNet(cfg).eval(), LossConfig(), opts.post


def _set_score_bias(heads: list[torch.nn.Conv2d], model, images, opts: BenchOptions, device) -> None:
    """Make random class logits look like a trained model's: spread them (std >= 1.5, so scores
    are not all tied) and shift the bias so that about ``topk`` (anchor, class) pairs of the first
    image score above the threshold; otherwise every score sits at the prior (nothing reaches NMS)
    or above the threshold (everything does). ``heads``: the class-logit convs of every model
    compared, changed alike so they keep identical weights."""
    if opts.score_bias == "none":
        return
    if opts.score_bias != "auto":
        for h in heads:
            h.bias.data.fill_(float(opts.score_bias))
        return
    from retina_cli.bench.subjects import retina_subject

    probe = retina_subject(model, opts.post, LossConfig(), device, images[:1], channels_last=False, winograd=False)
    (cls_out, _), _ = run_stages(probe.inference[:2], images[:1], device)
    bias = float(heads[0].bias.detach().mean())
    logits = torch.cat([c.flatten() for c in cls_out]).float()
    spread = float(logits.std())
    if spread < 1.5:
        scale = 1.5 / max(spread, 1e-6)
        for h in heads:
            h.weight.data.mul_(scale)
        logits = bias + (logits - bias) * scale  # the bias is per class, but equal at init
    wanted = min(opts.post.topk, logits.numel() - 1)
    cut = logits.topk(wanted).values[-1]
    shift = math.log(opts.post.score_thresh / (1 - opts.post.score_thresh)) - float(cut)
    for h in heads:
        h.bias.data.add_(shift)


def run_bench(opts: BenchOptions, progress: Callable[[str], None] | None = None) -> BenchReport:
    from retina_cli.bench import subjects as subj
    from retina_cli.engine.distributed import select_device

    if opts.threads:
        torch.set_num_threads(opts.threads)
    device = select_device(opts.device)
    warnings: list[str] = []
    if opts.precision == "bf16" and device.type == "cpu" and not native_bf16():
        warnings.append(
            "this CPU has no AVX-512 BF16 / AMX: PyTorch emulates bfloat16 here and bf16 runs much slower than fp32"
        )
    if any(b != "torch" for b in opts.backends):
        if device.type != "cpu":
            warnings.append("onnxruntime and openvino subjects run on the CPU")

    if opts.checkpoints:
        if len(opts.checkpoints) > 1:
            raise ConfigError("run_bench times one model; use speed_accuracy() for several checkpoints")
        from retina_cli.engine.checkpoint import configs_from_checkpoint, model_from_checkpoint

        model, ckpt = model_from_checkpoint(opts.checkpoints[0])
        _, loss_cfg, post_cfg = configs_from_checkpoint(ckpt)
        if opts.img_size and opts.img_size != model.cfg.img_size:
            model.cfg = replace(model.cfg, img_size=opts.img_size)
        tv = None
    elif opts.compare == "torchvision":
        tv, model, loss_cfg = subj.torchvision_pair(opts.num_classes, opts.img_size or 640, opts.post, None, opts.seed)
        post_cfg = opts.post
    else:
        model, loss_cfg, post_cfg = _model_from_options(opts)
        tv = None
    size = model.cfg.img_size
    images, targets = bench_images(size, max(opts.batch, opts.train_batch), opts.seed)
    infer_images, train_targets = images[: opts.batch], targets[: opts.train_batch]
    if not opts.checkpoints:
        heads = [model.head.cls_logits] + ([tv.head.classification_head.cls_logits] if tv is not None else [])
        _set_score_bias(heads, model, infer_images, opts, device)

    subjects: list[Subject] = []
    train_images = images[: opts.train_batch]
    if tv is not None:
        subjects.append(subj.torchvision_subject(tv, device, train_images, train_targets if opts.train else None))
    if "torch" in opts.backends:
        subjects.append(subj.retina_subject(
            model, post_cfg, loss_cfg, device, train_images, train_targets if opts.train else None,
            opts.precision, opts.channels_last, opts.compile, winograd=opts.winograd, fold_bn=opts.fold_bn,
        ))
    tmp = tempfile.TemporaryDirectory(prefix="retina-bench-")
    try:
        for backend in ("onnxruntime", "int8", "openvino", "openvino-int8"):
            if backend in opts.backends:
                if progress:
                    progress(f"exporting the model for {backend}")
                subjects.append(subj.onnx_subject(
                    model, post_cfg, Path(tmp.name), int8=backend in ("int8", "openvino-int8"),
                    calibration=bench_images(size, 8, opts.seed + 1)[0],
                    runtime="openvino" if backend.startswith("openvino") else "onnxruntime", precision=opts.precision,
                ))
        if progress:
            progress("checking detections")
        reference = run_stages(subjects[0].inference, infer_images, device)
        results, agreement = [], {}
        for s in subjects:
            dets = run_stages(s.inference, infer_images, device)
            results.append(SubjectResult(s.name, detections=sum(len(d.scores) for d in dets), note=s.note))
            if s is not subjects[0]:
                agreement[s.name] = sum(match_detections(a, b, *s.tolerance) for a, b in zip(dets, reference)) / len(dets)
        for r, stats in zip(results, time_subjects(subjects, "inference", infer_images, device, opts.warmup, opts.runs, progress)):
            r.inference = stats
        if opts.train:
            for r, stats in zip(results, time_subjects(subjects, "train", None, device, 1, opts.runs, progress)):
                r.train = stats
        if opts.memory:
            for r, s in zip(results, subjects):
                if progress:
                    progress(f"peak memory: {s.name}")
                if s.name.startswith(("onnxruntime", "openvino")):
                    continue  # these runtimes allocate outside torch: not comparable
                r.memory_mb["inference"] = peak_memory_mb(lambda: run_stages(s.inference, infer_images, device), device)
                if s.train is not None and opts.train:
                    r.memory_mb["train"] = peak_memory_mb(lambda: run_stages(s.train, None, device), device)
    finally:
        tmp.cleanup()
    options = {k: v for k, v in vars(opts).items() if k not in ("anchors", "post")}
    options.update(anchors=vars(model.cfg.anchors), post=vars(post_cfg), backbone=model.cfg.backbone,
                   img_size=size, levels=[model.cfg.min_level, model.cfg.max_level], num_classes=model.cfg.num_classes)
    return BenchReport(options, environment(device, opts.precision), results, agreement, warnings)


def speed_accuracy(
    opts: BenchOptions, data: str, split: str, img_size: int | None, plot: Path | None,
    progress: Callable[[str], None] | None = None,
) -> list[dict[str, Any]]:
    """Per checkpoint: median inference ms per image (our PyTorch path with ``opts``' device,
    threads, precision and layout) and, with ``data``, COCO AP / AP50 on ``split``; ``plot`` writes
    ms against AP, one labelled point per checkpoint (the paper's Figure 2 on this machine)."""
    from retina_cli.bench.subjects import retina_subject
    from retina_cli.engine.checkpoint import configs_from_checkpoint, model_from_checkpoint
    from retina_cli.engine.distributed import select_device

    if not opts.checkpoints:
        raise ConfigError("speed/accuracy needs checkpoints: retina bench A.pt B.pt --data DATA")
    if plot and not data:
        raise ConfigError("--plot needs --data (the dataset that gives each checkpoint its mAP)")
    if opts.threads:
        torch.set_num_threads(opts.threads)
    device = select_device(opts.device)
    rows = []
    with tempfile.TemporaryDirectory(prefix="retina-bench-") as tmp:
        for ckpt_path in opts.checkpoints:
            model, ckpt = model_from_checkpoint(ckpt_path)
            _, loss_cfg, post_cfg = configs_from_checkpoint(ckpt)
            if img_size and img_size != model.cfg.img_size:
                model.cfg = replace(model.cfg, img_size=img_size)
            images, _ = bench_images(model.cfg.img_size, opts.batch, opts.seed)
            subject = retina_subject(model, post_cfg, loss_cfg, device, images, None, opts.precision,
                                     opts.channels_last, opts.compile, name=Path(ckpt_path).name,
                                     winograd=opts.winograd)
            stats = time_subjects([subject], "inference", images, device, opts.warmup, opts.runs, progress)[0]
            row: dict[str, Any] = {
                "checkpoint": str(ckpt_path), "backbone": model.cfg.backbone, "img_size": model.cfg.img_size,
                "ms_per_image": stats["total"].median / opts.batch, "network_ms": stats["network"].median / opts.batch,
                "AP": None, "AP50": None,
            }
            if data:
                from retina_cli.engine.evaluation_run import run_evaluation

                if progress:
                    progress(f"evaluating {ckpt_path} on {data} [{split}]")
                res, _ = run_evaluation(Path(ckpt_path), data, split=split, device=opts.device,
                                        precision=opts.precision, project=tmp)
                row.update(AP=res.metrics["AP"], AP50=res.metrics["AP50"])
            rows.append(row)
    if plot:
        from retina_cli.drawing.plots import plot_speed_accuracy

        plot_speed_accuracy(rows, plot, f"{device}, {torch.get_num_threads()} threads, {data} [{split}]")
    return rows
