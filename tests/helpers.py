"""Shared test helpers (``tests`` is on pytest's pythonpath)."""

from __future__ import annotations

from pathlib import Path

import torch

from retina_cli.config import ModelConfig, PostprocessConfig
from retina_cli.engine.checkpoint import save_checkpoint
from retina_cli.model.retinanet import RetinaNet

NAMES = ("cat", "dog", "bird")
POST = PostprocessConfig(score_thresh=0.3, nms_thresh=0.5, topk=200, max_det=100)


def make_model(seed: int = 0, names: tuple[str, ...] = NAMES) -> RetinaNet:
    """Tiny RetinaNet whose classifier is pushed up so random weights give detections."""
    torch.manual_seed(seed)
    cfg = ModelConfig(num_classes=len(names), class_names=names, backbone="resnet18", img_size=128, fpn_channels=32,
                      head_width=32, head_depth=1, min_level=3, max_level=5)
    model = RetinaNet(cfg).eval()
    with torch.no_grad():
        model.head.cls_logits.weight.normal_(0, 0.3)  # spread the scores: no ties, image-dependent
        model.head.cls_logits.bias.fill_(0.0)
        model.head.box_deltas.weight.normal_(0, 0.05)
    return model


def make_checkpoint(path: Path, seed: int = 0, names: tuple[str, ...] = NAMES,
                    post: PostprocessConfig = POST) -> tuple[Path, RetinaNet]:
    model = make_model(seed, names)
    save_checkpoint(path, model, post_cfg=post)
    return path, model


def random_bn(bn: torch.nn.Module) -> torch.nn.Module:
    """A BatchNorm (plain or frozen) with random affine parameters and statistics, in place:
    folding tests must not pass because gamma = 1, beta = 0, mean = 0, var = 1."""
    with torch.no_grad():
        bn.weight.copy_(torch.rand(bn.weight.shape) + 0.5)
        bn.bias.copy_(torch.randn(bn.bias.shape))
        bn.running_mean.copy_(torch.randn(bn.running_mean.shape))
        bn.running_var.copy_(torch.rand(bn.running_var.shape) + 0.1)
    return bn
