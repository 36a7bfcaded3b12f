"""Frozen BatchNorm folded into its convolution for training: the same outputs and gradients as
the unfolded model (float64, so rounding cannot hide an error), the same state_dict, no extra
saved tensors, buffers read at every call, and the guard that leaves a wrong fold undone."""

import copy

import pytest
import torch
from torch import nn
from torchvision.ops import FrozenBatchNorm2d

from retina_cli.speed.fold_frozen_bn import FoldedConv, fold_frozen_batchnorm, folded_count
from retina_cli.speed.winograd import WinogradConv2d, winograd_convs
from helpers import random_bn as _random_bn


class Net(nn.Module):
    """Every kind of pair the backbones have: a strided stem without bias, a depthwise conv into a
    BatchNorm with its activation (timm's FrozenBatchNormAct2d), a conv with bias, a wide 3x3 that
    becomes Winograd, a residual sum; and a trainable BatchNorm (never folded)."""

    def __init__(self) -> None:
        from timm.layers import FrozenBatchNormAct2d

        super().__init__()
        self.stem, self.bn0 = nn.Conv2d(3, 8, 3, stride=2, padding=1, bias=False), FrozenBatchNorm2d(8)
        self.dw, self.bn1 = nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False), FrozenBatchNormAct2d(8)
        self.pw, self.bn2 = nn.Conv2d(8, 8, 1, bias=True), FrozenBatchNorm2d(8)
        self.wide, self.bn3 = nn.Conv2d(8, 8, 3, padding=1, bias=False), FrozenBatchNorm2d(8)
        self.last, self.bn4 = nn.Conv2d(8, 4, 1), nn.BatchNorm2d(4)
        for bn in (self.bn0, self.bn1, self.bn2, self.bn3, self.bn4):
            _random_bn(bn)

    def forward(self, x):
        x = torch.relu(self.bn0(self.stem(x)))
        x = self.bn2(self.pw(self.bn1(self.dw(x)))) + x
        x = self.bn3(self.wide(x))
        return self.bn4(self.last(x))


def _step(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    model.zero_grad(set_to_none=True)
    xx = x.clone().requires_grad_(True)
    out = model(xx)
    (out.square().mean() + out.sum()).backward()
    grads = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    return out.detach(), {**grads, "input": xx.grad}


def _nets():
    torch.manual_seed(0)
    ref = Net().double()
    ref.train()
    winograd_convs(ref, min_channels=8)  # the wide 3x3 (and the depthwise stays direct: groups)
    assert isinstance(ref.wide, WinogradConv2d)
    return ref, copy.deepcopy(ref)


def test_outputs_gradients_and_state_dict_match_the_unfolded_model():
    ref, net = _nets()
    x = torch.randn(2, 3, 36, 36, dtype=torch.float64)
    stats = {k: v.clone() for k, v in net.state_dict().items()}
    assert fold_frozen_batchnorm(net, x[:1]) == 4  # bn4 is a trainable BatchNorm: left alone
    assert folded_count(net) == 4 and isinstance(net.wide, (FoldedConv, WinogradConv2d))
    assert type(net.bn4) is nn.BatchNorm2d and net.training  # the probe ran in eval mode, then back
    assert list(net.state_dict()) == list(ref.state_dict())  # same keys, same order
    for key, value in net.state_dict().items():  # and the probe pass changed no statistics
        assert torch.equal(value, stats[key]), key
    (out_ref, g_ref), (out, g) = _step(ref, x), _step(net, x)
    torch.testing.assert_close(out, out_ref, rtol=1e-10, atol=1e-10)
    assert set(g) == set(g_ref)
    for name in g_ref:
        torch.testing.assert_close(g[name], g_ref[name], rtol=1e-9, atol=1e-10, msg=name)
    with torch.no_grad():  # the cached no-grad path (Winograd keeps its transform of the folded weight)
        ref.eval(), net.eval()
        torch.testing.assert_close(net(x), ref(x), rtol=1e-10, atol=1e-10)


def test_folded_layers_follow_weight_and_buffer_changes():
    """The BatchNorm's map is read from its buffers at every call: load_state_dict (a resumed run)
    and optimiser steps reach the folded model, also through the no-grad cache."""
    ref, net = _nets()
    x = torch.randn(1, 3, 20, 20, dtype=torch.float64)
    fold_frozen_batchnorm(net, x)
    net.eval(), ref.eval()
    with torch.no_grad():
        net(x)  # fills the caches
        other = Net().double().state_dict()
        ref.load_state_dict(other), net.load_state_dict(other)
        torch.testing.assert_close(net(x), ref(x), rtol=1e-10, atol=1e-10)
        for model in (ref, net):
            model.wide.weight.mul_(-0.5)
            model.bn1.running_var.add_(1.0)
        torch.testing.assert_close(net(x), ref(x), rtol=1e-10, atol=1e-10)


def test_training_saves_no_second_copy_of_the_weights():
    """autograd of ``conv(x, w * s)`` would keep ``w * s`` for the backward pass; the folded
    layers save the input and the raw weight only, like the unfolded convolution."""
    ref, net = _nets()
    x = torch.randn(2, 3, 36, 36, dtype=torch.float64)
    fold_frozen_batchnorm(net, x[:1])

    def saved_bytes(model):
        total = []

        def pack(t):
            total.append(t.numel() * t.element_size() if t.grad_fn is not None or not t.requires_grad else 0)
            return t
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            model(x.clone().requires_grad_(True)).sum()
        return sum(total)

    assert saved_bytes(net) <= saved_bytes(ref)


def test_a_fold_the_hooks_cannot_see_is_undone():
    class Sneaky(nn.Module):  # conv's output is also read functionally: folding would change it
        def __init__(self):
            super().__init__()
            self.conv, self.bn = nn.Conv2d(3, 4, 1), _random_bn(FrozenBatchNorm2d(4))

        def forward(self, x):
            y = self.conv(x)
            return self.bn(y) + y

    net = Sneaky().double()
    x = torch.randn(1, 3, 8, 8, dtype=torch.float64)
    ref = net(x).detach()
    assert fold_frozen_batchnorm(net, x) == 0
    assert type(net.conv) is nn.Conv2d and type(net.bn) is FrozenBatchNorm2d
    torch.testing.assert_close(net(x), ref)


@pytest.mark.parametrize("backbone, frozen", [("mobilenetv2_100", 51), ("resnet18", 20)])
def test_every_frozen_backbone_batchnorm_folds_in_a_retinanet(backbone, frozen):
    from retina_cli.config import ModelConfig
    from retina_cli.engine.trainer import fold_training_bn, freeze_backbone_bn
    from retina_cli.model.retinanet import RetinaNet

    torch.manual_seed(0)
    ref = RetinaNet(ModelConfig(backbone=backbone, num_classes=2, img_size=64, min_level=3, max_level=5,
                                fpn_channels=16, head_width=16, head_depth=1))
    freeze_backbone_bn(ref)
    for m in ref.backbone.modules():
        if hasattr(m, "running_var"):
            _random_bn(m)
    ref = ref.double()
    net = copy.deepcopy(ref)
    assert fold_training_bn(net, torch.device("cpu"), torch.contiguous_format) == frozen
    x = torch.randn(1, 3, 64, 64, dtype=torch.float64)
    outs = []
    for model in (ref, net):
        model.zero_grad()
        cls, box = model(x)
        sum(t.square().mean() for t in [*cls, *box]).backward()
        outs.append(([t.detach() for t in [*cls, *box]], {n: p.grad for n, p in model.named_parameters() if p.grad is not None}))
    for a, b in zip(outs[0][0], outs[1][0]):
        torch.testing.assert_close(b, a, rtol=1e-9, atol=1e-10)
    for name, g in outs[0][1].items():
        torch.testing.assert_close(outs[1][1][name], g, rtol=1e-8, atol=1e-10, msg=name)


def test_training_under_autocast_matches_the_unfolded_model():
    """`retina train --amp` on a CPU: bfloat16 autocast inside the folded convolutions gives the
    float32 gradients within bfloat16's error, as the unfolded model does."""
    torch.manual_seed(0)
    ref = Net().eval()  # bn4 on its running statistics: a train-mode BatchNorm at the end would
    net = copy.deepcopy(ref)  # normalise the loss away and leave gradients of rounding noise
    x = torch.randn(2, 3, 24, 24)
    assert fold_frozen_batchnorm(net, x[:1]) == 4
    probe = torch.randn(2, 4, 12, 12)
    grads = []
    for model, amp in ((ref, False), (ref, True), (net, True)):
        model.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
            out = model(x)
        (out.float() * probe).sum().backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    exact, unfolded, folded = grads
    assert set(folded) == set(exact)
    for name, g in exact.items():
        scale = g.abs().max().item()
        err_unfolded = (unfolded[name] - g).abs().max().item() / scale
        err_folded = (folded[name] - g).abs().max().item() / scale
        assert err_folded < max(0.05, 2 * err_unfolded), (name, err_folded, err_unfolded)
