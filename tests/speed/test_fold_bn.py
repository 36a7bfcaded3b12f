"""BatchNorm folding: the arithmetic, which pairs fold, and the guard that undoes a wrong fold."""

import copy

import torch
from torch import nn
from torchvision.ops import FrozenBatchNorm2d

from retina_cli.speed.fold_bn import conv_bn_pairs, fold_batchnorm, fold_conv_bn
from helpers import random_bn as _random_bn


def test_fold_arithmetic_with_and_without_conv_bias():
    torch.manual_seed(0)
    x = torch.randn(2, 4, 9, 9)
    for bias in (True, False):
        conv, bn = nn.Conv2d(4, 6, 3, padding=1, bias=bias), _random_bn(nn.BatchNorm2d(6, eps=1e-3)).eval()
        with torch.no_grad():
            ref = bn(conv(x))
            fold_conv_bn(conv, bn)
            torch.testing.assert_close(conv(x), ref, atol=1e-5, rtol=1e-5)
    # one channel by hand: w = 2, b = 1, gamma = 3, beta = 0.5, mean = 4, var = 0.25, eps = 0
    conv, bn = nn.Conv2d(1, 1, 1), FrozenBatchNorm2d(1, eps=0.0)
    with torch.no_grad():
        conv.weight.fill_(2.0), conv.bias.fill_(1.0)
        bn.weight.fill_(3.0), bn.bias.fill_(0.5), bn.running_mean.fill_(4.0), bn.running_var.fill_(0.25)
    fold_conv_bn(conv, bn)
    assert conv.weight.item() == 12.0  # 2 * 3 / 0.5
    assert conv.bias.item() == -17.5  # (1 - 4) * 6 + 0.5


class Branchy(nn.Module):
    """conv1 -> bn1 (folds); conv2 feeds bn2 and also a second module (does not fold);
    conv3 -> bn3 where the forward also reads conv3's output functionally (hooks cannot see it)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8)
        self.conv2, self.bn2, self.side = nn.Conv2d(8, 8, 1), nn.BatchNorm2d(8), nn.ReLU()
        self.conv3, self.bn3 = nn.Conv2d(8, 8, 1), nn.BatchNorm2d(8)

    def forward(self, x):
        x = self.bn1(self.conv1(x))
        y = self.conv2(x)
        x = self.bn2(y) + self.side(y)
        z = self.conv3(x)
        return self.bn3(z) + z


def test_pairs_come_from_the_forward_pass_and_a_wrong_fold_is_undone():
    torch.manual_seed(0)
    model = Branchy()
    for bn in (model.bn1, model.bn2, model.bn3):
        _random_bn(bn)
    model.eval()
    x = torch.randn(1, 3, 16, 16)
    pairs, _ = conv_bn_pairs(model, x)
    assert sorted(pairs) == [("conv1", "bn1"), ("conv3", "bn3")]  # conv2's output has two readers
    ref = model(x).detach()
    untouched = copy.deepcopy(model.state_dict())
    # conv3's output is also added functionally, so folding bn3 changes the output: all undone
    assert fold_batchnorm(model, x) == 0
    assert isinstance(model.bn1, nn.BatchNorm2d) and model.conv1.bias is None
    for key, value in model.state_dict().items():
        assert torch.equal(value, untouched[key]), key
    torch.testing.assert_close(model(x), ref)


def test_fold_batchnorm_on_a_timm_backbone_keeps_outputs():
    import timm

    torch.manual_seed(0)
    net = timm.create_model("resnet18", pretrained=False, features_only=True).eval()
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            _random_bn(m)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        ref = net(x)
        assert fold_batchnorm(net, x) == 20  # every BatchNorm of resnet18 (downsamples included)
        out = net(x)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in net.modules())
    for a, b in zip(ref, out):
        torch.testing.assert_close(b, a, atol=1e-4 * a.abs().max().item(), rtol=0)


def test_batchnorm_with_its_activation_folds_and_keeps_the_activation():
    """timm's BatchNormAct2d (MobileNetV2, EfficientNet) holds its activation as a child: it is
    folded like a leaf BatchNorm and what is left is the activation (ReLU6 here)."""
    import timm

    torch.manual_seed(0)
    net = timm.create_model("mobilenetv2_100", pretrained=False, features_only=True).eval()
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            _random_bn(m)
    net, x = net.double(), torch.randn(1, 3, 64, 64, dtype=torch.float64)  # random statistics amplify float32 rounding
    with torch.no_grad():
        ref = net(x)
        assert fold_batchnorm(net, x) == 51  # every BatchNorm of the feature network
        out = net(x)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in net.modules())
    assert sum(isinstance(m, nn.ReLU6) for m in net.modules()) == 34  # the activations stayed
    for a, b in zip(ref, out):
        torch.testing.assert_close(b, a, atol=1e-10 * a.abs().max().item(), rtol=0)
