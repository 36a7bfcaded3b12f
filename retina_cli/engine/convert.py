"""torchvision RetinaNet weights -> a retina checkpoint that gives the same detections.

Supports ``retinanet_resnet50_fpn`` (v1: plain head, P6 from P5, L1 box loss) and
``retinanet_resnet50_fpn_v2`` (GroupNorm head, P6 from C5, GIoU box loss). The backbone becomes
timm's ``resnet50``, whose parameter names are torchvision's; the anchors become
``AnchorConfig(rounding=True)`` with the paper's sizes, which reproduces torchvision's truncated
sizes ``int(32 * 2 ** (k / 3))`` and whole-pixel cell anchors exactly.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from torch import Tensor, nn

from retina_cli.config import IMAGENET_MEAN, IMAGENET_STD, AnchorConfig, LossConfig, ModelConfig, PostprocessConfig
from retina_cli.engine.checkpoint import save_checkpoint
from retina_cli.errors import CheckpointError, ConfigError
from retina_cli.model.retinanet import RetinaNet
from retina_cli.model.weights import read_state_dict


def coco_class_names() -> tuple[str, ...]:
    """torchvision's 91 COCO category names; index = label (0 is ``__background__``, gaps are ``N/A``)."""
    from torchvision.models._meta import _COCO_CATEGORIES

    return tuple(_COCO_CATEGORIES)


def _rename(state: dict[str, Tensor], head_norm: str) -> dict[str, Tensor]:
    """torchvision key -> retina key; unknown keys are an error so nothing is silently dropped."""
    per_layer = 3 if head_norm == "gn" else 2  # our tower: conv, [GroupNorm], ReLU
    out: dict[str, Tensor] = {}
    for key, value in state.items():
        new = None
        if key.startswith("backbone.body."):
            new = key
        elif m := re.match(r"backbone\.fpn\.(inner|layer)_blocks\.(\d+)\.(?:0\.)?(weight|bias)$", key):
            new = f"fpn.{'lateral' if m[1] == 'inner' else 'output'}.{m[2]}.{m[3]}"
        elif m := re.match(r"backbone\.fpn\.extra_blocks\.p(\d)\.(weight|bias)$", key):
            new = f"fpn.extra.{int(m[1]) - 6}.{m[2]}"
        elif m := re.match(r"head\.(classification|regression)_head\.conv\.(\d+)\.(?:(\d+)\.)?(weight|bias)$", key):
            layer, sub = (int(m[2]), int(m[3])) if m[3] is not None else (int(m[2]) // 2, 0)
            tower = "cls_tower" if m[1] == "classification" else "box_tower"
            new = f"head.{tower}.{layer * per_layer + sub}.{m[4]}"
        elif m := re.match(r"head\.classification_head\.cls_logits\.(weight|bias)$", key):
            new = f"head.cls_logits.{m[1]}"
        elif m := re.match(r"head\.regression_head\.bbox_reg\.(weight|bias)$", key):
            new = f"head.box_deltas.{m[1]}"
        if new is None:
            raise CheckpointError(f"unexpected key {key!r}: not a torchvision retinanet_resnet50_fpn state dict")
        out[new] = value
    for key in [k for k, v in out.items() if k.startswith("head.") and v.dim() == 4]:
        # v2's convs before a GroupNorm have no bias; ours do, and a zero bias is the same function
        out.setdefault(key[: -len("weight")] + "bias", out[key].new_zeros(out[key].shape[0]))
    return out


def _fold_bn_eps(model: nn.Module, state: dict[str, Tensor], source_eps: float) -> None:
    """Make ``var + eps`` equal the source's for every BatchNorm (the published COCO weights use eps 0)."""
    for name, module in model.named_modules():
        key = f"{name}.running_var"
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and key in state and module.eps != source_eps:
            state[key] = (state[key] + (source_eps - module.eps)).clamp(min=0)


def torchvision_to_retina(
    state: dict[str, Tensor],
    class_names: tuple[str, ...] = (),
    num_classes: int | None = None,
    img_size: int = 640,
    bn_eps: float = 1e-5,
) -> tuple[RetinaNet, LossConfig]:
    """A torchvision RetinaNet state dict -> our model with those weights loaded, and its loss config.

    class_names: empty gives COCO's 91 names when the head has 91 classes, no names otherwise.
    num_classes: checked against the classification head when given.
    bn_eps: the eps the source's batch norms ran with (torchvision's default 1e-5; 0 for the
    published ``COCO_V1`` weights, which torchvision loads with eps 0).
    """
    state = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    head_norm = "gn" if any(re.match(r"head\.classification_head\.conv\.\d+\.1\.weight$", k) for k in state) else "none"
    renamed = _rename(state, head_norm)
    needed = ["fpn.lateral.0.weight", "fpn.extra.0.weight", "head.cls_logits.weight", "head.box_deltas.weight"]
    missing = [k for k in needed if k not in renamed]
    if missing:
        raise CheckpointError(f"not a torchvision RetinaNet state dict: nothing maps to {', '.join(missing)}")
    num_anchors = renamed["head.box_deltas.weight"].shape[0] // 4
    anchors = AnchorConfig(rounding=True)
    if num_anchors != anchors.num_anchors:
        raise CheckpointError(
            f"the box head predicts {num_anchors} anchors per cell; torchvision's default anchors are 9"
        )
    found_classes = renamed["head.cls_logits.weight"].shape[0] // num_anchors
    if num_classes is not None and num_classes != found_classes:
        raise ConfigError(f"--num-classes {num_classes}, but the classification head has {found_classes} classes")
    if not class_names and found_classes == 91:
        class_names = coco_class_names()
    if class_names and len(class_names) != found_classes:
        raise ConfigError(
            f"--classes has {len(class_names)} names, but the classification head has {found_classes} classes"
        )

    fpn_channels = renamed["fpn.lateral.0.weight"].shape[0]
    cfg = ModelConfig(
        num_classes=found_classes, class_names=tuple(class_names), backbone="resnet50", provider="timm",
        min_level=3, max_level=7, fpn_channels=fpn_channels,
        # torchvision's LastLevelP6P7 takes P5 when its input has the FPN's width, C5 otherwise
        p6_from="p5" if renamed["fpn.extra.0.weight"].shape[1] == fpn_channels else "c5",
        head_depth=sum(1 for k, v in renamed.items() if k.startswith("head.cls_tower.") and v.dim() == 4),
        head_width=renamed["head.cls_logits.weight"].shape[1], head_norm=head_norm, anchors=anchors,
        img_size=img_size, mean=IMAGENET_MEAN, std=IMAGENET_STD,
    )
    model = RetinaNet(cfg)
    _fold_bn_eps(model, renamed, bn_eps)
    ours = {k for k in model.state_dict() if not k.endswith("num_batches_tracked")}
    if set(renamed) != ours:
        absent, extra = sorted(ours - set(renamed)), sorted(set(renamed) - ours)
        raise CheckpointError(f"weights do not fit timm resnet50-FPN: missing {absent[:5]}, unexpected {extra[:5]}")
    try:
        model.load_state_dict(renamed, strict=False)
    except RuntimeError as exc:
        raise CheckpointError(f"weights do not fit timm resnet50-FPN: {exc}") from exc
    # v2 was trained with GIoU; v1 with L1 (our default)
    return model.eval(), LossConfig(box_loss="giou" if head_norm == "gn" else "l1")


def convert_torchvision(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    class_names: tuple[str, ...] = (),
    num_classes: int | None = None,
    img_size: int = 640,
    bn_eps: float = 1e-5,
) -> ModelConfig:
    """Read a torchvision RetinaNet ``.pth`` (a state dict, or a dict holding one under "model" or
    "state_dict"), write a retina checkpoint to ``dst``; returns the model config written."""
    state = read_state_dict(src)
    try:
        model, loss_cfg = torchvision_to_retina(state, class_names, num_classes, img_size, bn_eps)
    except CheckpointError as exc:
        raise CheckpointError(f"{src}: {exc}") from exc
    # torchvision's inference defaults (score 0.05, NMS 0.5, top 1000 per level, 300 per image) are ours
    save_checkpoint(dst, model, loss_cfg, PostprocessConfig(), converted_from=str(Path(src).name))
    return model.cfg
