"""Freezing the backbone layers that run at strides up to a given one (found by a forward pass)."""

import pytest
import torch

from retina_cli.config import TrainConfig
from retina_cli.errors import ConfigError
from retina_cli.model.freeze import freeze_early_layers
from retina_cli.model.timm_backbones import TimmFeatures


def _frozen(backbone) -> set[str]:
    return {n.removeprefix("body.") for n, p in backbone.named_parameters() if not p.requires_grad}


def test_resnet18_stride_4_is_stem_and_layer1():
    b = TimmFeatures("resnet18")
    n = freeze_early_layers(b, 4)
    frozen = _frozen(b)
    expected = {"conv1.weight", "bn1.weight", "bn1.bias"} | {
        f"layer1.{i}.{layer}.{p}" for i in (0, 1) for layer, ps in (("conv1", ("weight",)), ("bn1", ("weight", "bias")),
                                                                   ("conv2", ("weight",)), ("bn2", ("weight", "bias")))
        for p in ps
    }
    assert frozen == expected and n == 15
    # layer2 begins with a stride-2 conv: trained
    assert b.body.layer2[0].conv1.weight.requires_grad


def test_mobilenetv2_stride_4_stops_before_the_first_stride_8_layer():
    b = TimmFeatures("mobilenetv2_100")
    freeze_early_layers(b, 4)
    frozen = _frozen(b)
    assert {"conv_stem.weight", "bn1.weight", "blocks.0.0.conv_dw.weight", "blocks.1.1.conv_pwl.weight",
            "blocks.1.1.bn3.weight"} <= frozen
    # the 1x1 expansion of block 2.0 still outputs at stride 4 (the depthwise conv after it is strided)
    assert "blocks.2.0.conv_pw.weight" in frozen and "blocks.2.0.bn1.weight" in frozen
    assert "blocks.2.0.conv_dw.weight" not in frozen and "blocks.6.0.conv_pw.weight" not in frozen
    assert len(frozen) == 30


def test_stride_0_freezes_nothing_and_stride_8_freezes_more():
    b = TimmFeatures("resnet18")
    assert freeze_early_layers(b, 0) == 0 and not _frozen(b)
    assert freeze_early_layers(b, 8) > 15 and "layer2.1.conv2.weight" in _frozen(b)
    assert "layer3.0.conv1.weight" not in _frozen(b)


def test_frozen_layers_get_no_gradient_and_the_rest_do():
    torch.manual_seed(0)
    b = TimmFeatures("resnet18").train()
    freeze_early_layers(b, 4)
    sum(f.square().mean() for f in b(torch.randn(2, 3, 64, 64))).backward()
    for name, p in b.named_parameters():
        assert (p.grad is None) == (not p.requires_grad), name
    # (timm zero-initialises each block's last BatchNorm, so the shortcut is where a gradient shows first)
    assert b.body.layer2[0].downsample[0].weight.grad.abs().sum() > 0


def test_negative_stride_is_refused():
    with pytest.raises(ConfigError, match="--freeze-stride"):
        TrainConfig(freeze_stride=-4)
