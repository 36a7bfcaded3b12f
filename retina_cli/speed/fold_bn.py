"""Fold inference-mode BatchNorm into the convolution that feeds it.

``bn(conv(x)) = conv'(x)`` with ``w' = w * s`` and ``b' = (b - mean) * s + beta``, ``s = gamma /
sqrt(var + eps)`` per output channel: one pass over the activations less per BatchNorm. Which
BatchNorm follows which convolution is read from one traced forward pass (a BatchNorm whose input
is exactly one convolution's output, and nothing else reads that output), not from attribute
names, so any timm backbone is handled without knowing its layout.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor, nn

from timm.layers import FrozenBatchNormAct2d as _TimmFrozenAct
from torchvision.ops import FrozenBatchNorm2d as _TvFrozen

# frozen BatchNorm as `retina train --freeze-bn` makes it (timm's freeze_batch_norm_2d: torchvision's
# class, or timm's with its activation) and as torchvision's detection models have it
FROZEN_BN_TYPES: tuple[type, ...] = (_TvFrozen, _TimmFrozenAct)
try:  # older timm had a FrozenBatchNorm2d of its own
    from timm.layers import FrozenBatchNorm2d as _TimmFrozen  # type: ignore[attr-defined]

    FROZEN_BN_TYPES += (_TimmFrozen,)
except ImportError:
    pass
_BN_TYPES: tuple[type, ...] = (nn.BatchNorm2d, *FROZEN_BN_TYPES)


def _is_bn(m: nn.Module) -> bool:
    return type(m) in _BN_TYPES or (isinstance(m, nn.BatchNorm2d) and not m.training)


def conv_bn_pairs(
    model: nn.Module, example: Tensor, is_norm: Callable[[nn.Module], bool] = _is_bn,
) -> tuple[list[tuple[str, str]], object]:
    """Names of (conv, BatchNorm) where the BatchNorm's only input is the conv's output and no
    other module reads it, from one forward pass of ``example`` ``(N, C, H, W)`` through ``model``;
    and the model's output on ``example``. ``is_norm`` says which modules count as BatchNorm."""
    outputs: dict[int, str] = {}  # output storage pointer -> conv name
    readers: dict[int, list[str]] = {}  # input storage pointer -> modules that read it
    alive: list[object] = []  # every output kept, so no pointer is reused during the pass
    hooks = []

    def record(name: str, module: nn.Module):
        def hook(_m, inputs, output):
            alive.append((inputs, output))  # inputs too: a functional op's result (a residual sum) read here and freed
            # could otherwise hand its address to a later conv output and look like a second reader
            for t in inputs:
                if isinstance(t, Tensor):
                    readers.setdefault(t.data_ptr(), []).append(name)
            if isinstance(module, nn.Conv2d) and isinstance(output, Tensor):
                outputs[output.data_ptr()] = name
        return hook

    names = {}
    for name, m in model.named_modules():
        names[name] = m
        # leaves (convs, norms, activations: whatever reads a tensor) and the norms that hold their
        # activation as a child (timm's BatchNormAct2d)
        if not list(m.children()) or is_norm(m):
            hooks.append(m.register_forward_hook(record(name, m)))
    try:
        with torch.no_grad():
            result = model(example)
    finally:
        for h in hooks:
            h.remove()
    pairs = []
    for ptr, conv_name in outputs.items():
        users = readers.get(ptr, [])
        if len(users) == 1 and is_norm(names[users[0]]) and names[users[0]].weight.numel() == names[conv_name].out_channels:
            pairs.append((conv_name, users[0]))
    return pairs, result


def bn_affine(bn: nn.Module) -> tuple[Tensor, Tensor]:
    """A BatchNorm's eval-mode map ``y * scale + shift``: ``(K,)`` each, from its current buffers,
    ``scale = gamma / sqrt(var + eps)`` and ``shift = beta - mean * scale``."""
    scale = bn.weight * (bn.running_var + bn.eps).rsqrt()
    return scale, bn.bias - bn.running_mean * scale


def scaled_conv_params(weight: Tensor, bias: Tensor | None, scale: Tensor, shift: Tensor) -> tuple[Tensor, Tensor]:
    """The weight ``(K, C/groups, kh, kw)`` and bias ``(K,)`` of a convolution followed by the map
    ``y * scale + shift``: ``w * scale`` and ``b * scale + shift`` (``shift`` without a bias)."""
    return weight * scale.view(-1, 1, 1, 1), shift if bias is None else bias * scale + shift


@torch.no_grad()
def fold_conv_bn(conv: nn.Conv2d, bn: nn.Module) -> None:
    """Fold ``bn`` (eval statistics) into ``conv`` in place; ``conv`` gains a bias if it had none."""
    weight, bias = scaled_conv_params(conv.weight, conv.bias, *bn_affine(bn))
    conv.weight.copy_(weight.to(conv.weight.dtype))
    if conv.bias is None:
        conv.bias = nn.Parameter(bias.to(conv.weight.dtype), requires_grad=False)
    else:
        conv.bias.copy_(bias)


def _set(model: nn.Module, name: str, value: nn.Module) -> None:
    parent, _, leaf = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, leaf, value)


def _remainder(bn: nn.Module) -> nn.Module:
    """What is left of a folded BatchNorm: its activation after its dropout (timm's
    BatchNormAct2d and FrozenBatchNormAct2d), or nothing."""
    if isinstance(getattr(bn, "act", None), nn.Module):
        return nn.Sequential(bn.drop, bn.act) if isinstance(getattr(bn, "drop", None), nn.Module) else bn.act
    return nn.Identity()


def _flat(out: object) -> list[Tensor]:
    if isinstance(out, Tensor):
        return [out]
    if isinstance(out, (list, tuple)):
        return [t for o in out for t in _flat(o)]
    if isinstance(out, dict):
        return [t for o in out.values() for t in _flat(o)]
    return []


@torch.no_grad()
def fold_batchnorm(model: nn.Module, example: Tensor, rtol: float = 1e-4) -> int:
    """Fold every foldable BatchNorm of ``model`` (in eval mode) into its convolution, replacing
    it by ``nn.Identity``; ``example`` ``(N, C, H, W)`` is what the model takes. Returns the number
    folded. The model's outputs on ``example`` are compared before and after: should a functional
    op the hooks cannot see also read a folded conv's output, the outputs differ and the model is
    put back as it was (0 returned)."""
    pairs, out = conv_bn_pairs(model, example)
    if not pairs:
        return 0
    before = _flat(out)
    saved = {name: model.get_submodule(name) for pair in pairs for name in pair}
    saved_state = {name: {k: v.clone() for k, v in m.state_dict().items()} for name, m in saved.items()}
    had_bias = {conv: model.get_submodule(conv).bias is not None for conv, _ in pairs}
    for conv_name, bn_name in pairs:
        bn = model.get_submodule(bn_name)
        fold_conv_bn(model.get_submodule(conv_name), bn)
        _set(model, bn_name, _remainder(bn))
    after = _flat(model(example))
    scale = max((float(b.abs().max()) for b in before if b.numel()), default=1.0) or 1.0
    if len(before) == len(after) and all(torch.allclose(b, a, rtol=0, atol=rtol * scale) for b, a in zip(before, after)):
        return len(pairs)
    for conv_name, bn_name in pairs:  # undo
        conv = saved[conv_name]
        if not had_bias[conv_name]:
            conv.bias = None
        conv.load_state_dict(saved_state[conv_name])
        _set(model, bn_name, saved[bn_name])
    return 0
