"""Frozen configuration dataclasses. They round-trip to plain dicts and travel in checkpoints.

A model is rebuilt from ``ModelConfig`` alone; ``LossConfig`` and ``PostprocessConfig`` hold the
paper's training and inference knobs. CLI flags map to these fields one to one.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Mapping, TypeVar

from retina_cli.errors import ConfigError

T = TypeVar("T")

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class AnchorConfig:
    """Anchors per FPN level: ``len(ratios) * len(scales)`` boxes at every feature-map cell.

    sizes: base size per level, lowest level first; empty means ``size_per_stride * stride``
        (the paper's 4: 32..512 for P3..P7).
    offset: where in a cell the anchor centre sits, as a fraction of the stride (0.0 is
        torchvision's and detectron2's convention, 0.5 the cell centre).
    rounding: torchvision's quantisation (``int(size * scale)`` and cell anchors rounded to
        whole pixels); on for checkpoints converted from torchvision so detections match exactly.
    """

    sizes: tuple[float, ...] = ()
    ratios: tuple[float, ...] = (0.5, 1.0, 2.0)
    scales: tuple[float, ...] = (1.0, 2 ** (1 / 3), 2 ** (2 / 3))
    offset: float = 0.0
    rounding: bool = False
    size_per_stride: float = 4.0

    @property
    def num_anchors(self) -> int:
        return len(self.ratios) * len(self.scales)

    def sizes_for(self, levels: tuple[int, ...]) -> tuple[float, ...]:
        if not self.sizes:
            return tuple(self.size_per_stride * 2**lvl for lvl in levels)
        if len(self.sizes) != len(levels):
            raise ConfigError(
                f"--anchor-sizes has {len(self.sizes)} values but the FPN has {len(levels)} levels "
                f"(P{levels[0]}-P{levels[-1]}); give one size per level"
            )
        return tuple(float(s) for s in self.sizes)


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild a RetinaNet and pre-process its input.

    mean/std are in 0..1 pixel units (images are scaled by 1/255 first).
    """

    num_classes: int
    class_names: tuple[str, ...] = ()
    backbone: str = "resnet50"
    provider: str = "timm"
    min_level: int = 3
    max_level: int = 7
    fpn_channels: int = 256
    p6_from: str = "c5"  # "c5": P6 from the deepest backbone map (paper); "p5": from the top FPN output
    head_depth: int = 4
    head_width: int = 256
    head_norm: str = "none"  # "none" (paper) or "gn" (GroupNorm(32) after each head conv)
    prior: float = 0.01
    anchors: AnchorConfig = field(default_factory=AnchorConfig)
    img_size: int = 640
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    bbox_clip: float = math.log(1000.0 / 16)

    def __post_init__(self) -> None:
        if self.num_classes < 1:
            raise ConfigError(f"num_classes must be at least 1, got {self.num_classes}")
        if self.class_names and len(self.class_names) != self.num_classes:
            raise ConfigError(f"{len(self.class_names)} class names for {self.num_classes} classes")
        if not 1 <= self.min_level <= self.max_level:
            raise ConfigError(f"FPN levels {self.min_level}-{self.max_level} are not a valid range")
        if self.p6_from not in ("c5", "p5"):
            raise ConfigError(f"p6_from must be 'c5' or 'p5', got {self.p6_from!r}")
        if self.head_norm not in ("none", "gn"):
            raise ConfigError(f"head_norm must be 'none' or 'gn', got {self.head_norm!r}")
        if not 0.0 < self.prior < 1.0:
            raise ConfigError(f"prior must be in (0, 1), got {self.prior}")
        if self.img_size % self.top_stride:
            raise ConfigError(
                f"--img-size {self.img_size} must be a multiple of {self.top_stride} "
                f"(the stride of P{self.max_level})"
            )
        self.anchors.sizes_for(self.levels)

    @property
    def levels(self) -> tuple[int, ...]:
        return tuple(range(self.min_level, self.max_level + 1))

    @property
    def strides(self) -> tuple[int, ...]:
        return tuple(2**lvl for lvl in self.levels)

    @property
    def top_stride(self) -> int:
        """The stride of the coarsest level: input sides must be multiples of it."""
        return 2**self.max_level


@dataclass(frozen=True)
class LossConfig:
    """Target assignment and loss (paper defaults: IoU >= 0.5 fg, < 0.4 bg, gamma 2, alpha 0.25)."""

    gamma: float = 2.0
    alpha: float = 0.25  # negative: no alpha weighting
    box_loss: str = "l1"  # "l1", "smooth_l1" or "giou"
    smooth_l1_beta: float = 0.1
    box_weight: float = 1.0
    fg_iou: float = 0.5
    bg_iou: float = 0.4
    low_quality_matches: bool = True

    def __post_init__(self) -> None:
        if self.box_loss not in ("l1", "smooth_l1", "giou"):
            raise ConfigError(f"--box-loss must be l1, smooth_l1 or giou, got {self.box_loss!r}")
        if self.bg_iou > self.fg_iou:
            raise ConfigError(f"background IoU {self.bg_iou} is above foreground IoU {self.fg_iou}")
        if self.gamma < 0:
            raise ConfigError(f"--gamma must be >= 0, got {self.gamma}")


DEFAULT_PREDICT_CONF = 0.25  # predict's score threshold for a model whose training did not choose one


@dataclass(frozen=True)
class PostprocessConfig:
    """Inference: per level keep the ``topk`` best scores above ``score_thresh``, decode, NMS.

    score_thresh is validation's and ``retina eval``'s (low: mAP needs the whole ranking).
    predict_conf is ``retina predict``'s and ``Detector.predict``'s when no ``--conf`` is given:
    training sets it to the threshold of the best mean F1 on the validation of ``best.pt``; None
    (a model trained before that, or without validation) means :data:`DEFAULT_PREDICT_CONF`;
    either way never below score_thresh (:meth:`predict_threshold`).
    """

    score_thresh: float = 0.05
    nms_thresh: float = 0.5
    topk: int = 1000
    max_det: int = 300
    predict_conf: float | None = None

    def __post_init__(self) -> None:
        if self.predict_conf is not None and not 0.0 <= self.predict_conf < 1.0:
            raise ConfigError(f"predict_conf must be in [0, 1), got {self.predict_conf}")

    def predict_threshold(self) -> float:
        """The score threshold predict uses when none is given: predict_conf (else the default),
        never below score_thresh (a model trained with a higher ``--conf`` keeps it)."""
        return max(self.score_thresh, DEFAULT_PREDICT_CONF if self.predict_conf is None else self.predict_conf)


def to_dict(cfg: Any) -> dict[str, Any]:
    """A dataclass (nested ones included) as a dict of plain Python values; tuples become lists."""

    def plain(v: Any) -> Any:
        if dataclasses.is_dataclass(v):
            return {f.name: plain(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if isinstance(v, (tuple, list)):
            return [plain(x) for x in v]
        return v

    return plain(cfg)


def from_dict(cls: type[T], data: Mapping[str, Any]) -> T:
    """Rebuild ``cls`` from :func:`to_dict` output. Unknown keys are an error, missing ones default."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(data) - set(fields)
    if unknown:
        raise ConfigError(f"unknown {cls.__name__} fields: {', '.join(sorted(unknown))}")
    kwargs: dict[str, Any] = {}
    for name, value in data.items():
        ftype = fields[name].type
        if ftype == "AnchorConfig" or ftype is AnchorConfig:
            value = from_dict(AnchorConfig, value)
        elif isinstance(value, list):
            value = tuple(value)
        kwargs[name] = value
    return cls(**kwargs)


@dataclass(frozen=True)
class TrainConfig:
    """How to train: optimisation, schedule, run folder. Saved in the run folder and checkpoints."""

    data: str = ""
    data_format: str = "auto"
    preset: str = ""  # the --model preset these settings were resolved from ("" for none)
    epochs: int = 12  # with a time budget, 0 means: as many as the budget allows
    time: float = 0.0  # wall-clock budget in minutes for the whole run (0: off; then epochs decide)
    patience: int = 0  # stop after this many validations without a better val mAP (0: off)
    batch_size: int = 8
    workers: int = 2
    optimizer: str = "sgd"  # "sgd" (momentum, as the paper) or "adamw"
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 1e-4
    warmup_iters: int = 200
    warmup_factor: float = 0.001
    schedule: str = "cosine"  # "cosine", "step" (x0.1 at 2/3 and 8/9 of training, as the paper) or "constant"
    min_lr_ratio: float = 0.01
    grad_clip: float = 0.0  # max gradient norm; 0 switches clipping off
    freeze_bn: bool = False  # backbone BatchNorm in eval mode with frozen affine parameters
    freeze_backbone: bool = False
    freeze_stride: int = 0  # backbone layers that run at strides <= this (before the first coarser one) are not trained
    channels_last: bool = True  # NHWC weights and batches: faster convolutions (oneDNN, cuDNN with AMP)
    winograd: bool = True  # on CPU without amp: wide 3x3 stride-1 convs as Winograd F(4x4, 3x3)
    fold_bn: bool = True  # frozen backbone BatchNorm applied by the convolution before it (same weights and state_dict)
    amp: bool = False  # float16 autocast + GradScaler on CUDA, bfloat16 autocast on CPU
    ema: bool = False
    ema_decay: float = 0.9998
    seed: int = 0
    device: str = "auto"
    project: str = "runs/train"
    name: str = ""
    exist_ok: bool = False
    val_interval: int = 1
    val_fraction: float = 0.1
    strict: bool = False
    backbone_weights: str = ""
    pretrained: bool = False
    tensorboard: bool = False
    hflip: float = 0.5
    scale_min: float = 0.75
    scale_max: float = 1.25
    color_jitter: float = 0.2
    # each image on its own rectangle (long side img_size, sides multiples of the top stride) instead
    # of the square: 512 x 384 for a 4:3 photo, a quarter less work per step, as eval and predict run
    rect: bool = True
    max_bad_steps: int = 5  # consecutive non-finite losses before training stops

    def __post_init__(self) -> None:
        if self.optimizer not in ("sgd", "adamw"):
            raise ConfigError(f"--optimizer must be sgd or adamw, got {self.optimizer!r}")
        if self.schedule not in ("cosine", "step", "constant"):
            raise ConfigError(f"--schedule must be cosine, step or constant, got {self.schedule!r}")
        if self.freeze_stride < 0:
            raise ConfigError(f"--freeze-stride must be 0 (off) or a stride such as 4, got {self.freeze_stride}")
        if self.time < 0 or self.patience < 0:
            raise ConfigError("--time and --patience must be >= 0 (0 switches them off)")
        if (self.epochs < 1 and not (self.epochs == 0 and self.time > 0)) or self.batch_size < 1:
            raise ConfigError("--epochs and --batch-size must be at least 1 (--epochs may be left out with --time)")


def stored_train_config(data: Mapping[str, Any]) -> TrainConfig:
    """A checkpoint's ``train_config`` -> TrainConfig. Runs saved before rectangular training
    (no ``rect`` key) trained on squares and resume on squares: the same run, not a new recipe."""
    return from_dict(TrainConfig, {"rect": False, **data})
