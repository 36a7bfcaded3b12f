"""The pure RetinaNet: FPN levels, head initialisation, P6 wiring, impossible levels."""

import math

import pytest
import torch
from torch import nn

from retina_cli.config import ModelConfig
from retina_cli.errors import ConfigError
from retina_cli.model.head import concat_levels
from retina_cli.model.retinanet import RetinaNet

SMALL = dict(num_classes=3, backbone="resnet18", fpn_channels=32, head_depth=2, head_width=32)


@pytest.mark.parametrize("levels", [(3, 7), (3, 5), (2, 6)])
def test_fpn_levels_give_one_map_per_level_at_stride_2_pow_l(levels):
    lo, hi = levels
    cfg = ModelConfig(**SMALL, min_level=lo, max_level=hi, img_size=128)
    model = RetinaNet(cfg).eval()
    with torch.no_grad():
        cls_out, box_out = model(torch.randn(1, 3, 128, 96))
    assert len(cls_out) == len(box_out) == hi - lo + 1
    for lvl, c, b in zip(range(lo, hi + 1), cls_out, box_out):
        assert c.shape == (1, 9 * 3, math.ceil(128 / 2**lvl), math.ceil(96 / 2**lvl))
        assert b.shape == (1, 9 * 4, *c.shape[-2:])
    # levels the backbone lacks (resnet18 stops at stride 32) come from extra convs
    assert len(model.fpn.extra) == max(0, hi - 5)


def test_head_initialisation():
    model = RetinaNet(ModelConfig(num_classes=3, backbone="resnet18", head_width=256, img_size=128))
    head = model.head
    torch.testing.assert_close(head.cls_logits.bias, torch.full_like(head.cls_logits.bias, -math.log(0.99 / 0.01)))
    assert head.box_deltas.bias.abs().max() == 0
    convs = [m for m in head.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 2 * 4 + 2
    for conv in convs:
        assert conv.weight.std().item() == pytest.approx(0.01, rel=0.05)
        assert abs(conv.weight.mean().item()) < 1e-3
    with torch.no_grad():
        logits, _ = concat_levels(*model.eval()(torch.randn(1, 3, 128, 128)), 3)
    # at initialisation every anchor predicts close to the prior
    assert torch.sigmoid(logits).mean().item() == pytest.approx(0.01, abs=0.003)


def test_p6_from_c5_or_p5():
    x = torch.randn(1, 3, 128, 128)
    for p6_from, in_ch in (("c5", 512), ("p5", 32)):
        model = RetinaNet(ModelConfig(**SMALL, p6_from=p6_from, img_size=128)).eval()
        assert model.fpn.extra[0].in_channels == in_ch
        with torch.no_grad():
            feats = model.backbone(x)
            c5 = feats[model.feature_indices[-1]]
            pyramid = model.fpn([feats[i] for i in model.feature_indices])
            source = c5 if p6_from == "c5" else pyramid[2]
            torch.testing.assert_close(pyramid[3], model.fpn.extra[0](source))
            torch.testing.assert_close(pyramid[4], model.fpn.extra[1](torch.relu(pyramid[3])))


class _FakeBackbone(nn.Module):
    """Maps at strides 4, 16 and 32 only (no stride 8)."""

    channels = [8, 8, 8]
    strides = [4, 16, 32]

    def forward(self, x):
        return [x[:, :1].expand(-1, 8, -1, -1)[..., :: s, :: s] for s in self.strides]


def test_impossible_levels_are_config_errors():
    with pytest.raises(ConfigError, match="stride"):
        RetinaNet(ModelConfig(**SMALL, min_level=3, max_level=7, img_size=128), backbone=_FakeBackbone())
    with pytest.raises(ConfigError, match="stride"):
        RetinaNet(ModelConfig(**SMALL, min_level=6, max_level=7, img_size=128))
    with pytest.raises(ConfigError):
        ModelConfig(**SMALL, min_level=5, max_level=3)
    with pytest.raises(ConfigError):
        ModelConfig(**SMALL, min_level=0, max_level=3)
    with pytest.raises(ConfigError, match="multiple of 128"):
        ModelConfig(**SMALL, img_size=200)
    # levels the fake backbone does have work
    model = RetinaNet(ModelConfig(**SMALL, min_level=4, max_level=6, img_size=128), backbone=_FakeBackbone())
    assert model.feature_indices == [1, 2] and len(model.fpn.extra) == 1
