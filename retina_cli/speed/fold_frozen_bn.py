"""Frozen BatchNorm folded into the convolution before it, while training.

A frozen BatchNorm is a fixed per-channel affine map, ``bn(y) = y * s + t`` with
``s = gamma / sqrt(var + eps)`` and ``t = beta - mean * s``, so ``bn(conv(x, w, b))`` is
``conv(x, w * s, b * s + t)``. Computing the convolution with the scaled weight (made again at
every step and in the backward pass, so that the gradient reaches the raw ``w`` and no second
copy of the weights is kept) saves a pass over the activations forward and another backward
for every BatchNorm, passes that are memory-bound on a CPU: on a 2-core Zen 3, 6% of the paper
config's training step (0.846 -> 0.795 of torchvision's) and 3% of the small preset's, whose
GroupNorm head dominates.

Unlike :mod:`retina_cli.speed.fold_bn` (inference, which rewrites the weights once), nothing is
rewritten here: the model keeps its modules, parameters and ``state_dict`` keys and values, so
checkpoints, EMA, ``load_state_dict`` (resume) and DDP see the same model. Only the classes of
the paired modules change: the convolution applies the BatchNorm's map, read from its buffers at
every call, and the BatchNorm keeps only its activation (``FrozenBatchNormAct2d``) or none.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from retina_cli.speed.fold_bn import FROZEN_BN_TYPES, _flat, bn_affine, conv_bn_pairs, scaled_conv_params
from retina_cli.speed.winograd import WinogradConv2d, transform_weight, winograd_conv2d, winograd_conv2d_backward


def _conv(conv: nn.Conv2d, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """``conv``'s convolution of ``x`` with the given weight and bias, nothing cached: Winograd
    where the layer is a Winograd one and the map large enough, the direct one otherwise."""
    if isinstance(conv, WinogradConv2d) and x.shape[-2] * x.shape[-1] >= conv.min_pixels:
        return winograd_conv2d(x, transform_weight(weight, conv.out), bias)
    return F.conv2d(x, weight, bias, conv.stride, conv.padding, conv.dilation, conv.groups)


def _conv_backward(conv: nn.Conv2d, x: Tensor, weight: Tensor, gy: Tensor, need_x: bool, need_w: bool):
    """Gradients of :func:`_conv` with respect to ``x`` and ``weight`` (None where not needed)."""
    if isinstance(conv, WinogradConv2d) and x.shape[-2] * x.shape[-1] >= conv.min_pixels:
        return winograd_conv2d_backward(x, weight, gy, conv.out, need_x, need_w)
    gx, gw, _ = torch.ops.aten.convolution_backward(
        gy, x, weight, None, conv.stride, conv.padding, conv.dilation, False, (0, 0), conv.groups,
        (need_x, need_w, False),
    )
    return gx, gw


class _FoldedConvFn(torch.autograd.Function):
    """``conv(x, w * scale, b * scale + shift)`` saving ``x`` and the raw ``w`` only: the scaled
    weight is made again in the backward pass, one layer at a time. Saving it (what autograd does
    for ``conv(x, w * scale)``) would keep a second copy of every backbone weight for the whole
    step: +100 MiB for ResNet-50."""

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor | None, scale: Tensor, shift: Tensor, conv: nn.Conv2d):
        ctx.save_for_backward(x, weight, scale)
        ctx.conv, ctx.has_bias = conv, bias is not None
        return _conv(conv, x, *scaled_conv_params(weight, bias, scale, shift))

    @staticmethod
    def backward(ctx, gy: Tensor):
        x, weight, scale = ctx.saved_tensors
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        gx = gw = gb = None
        if need_x or need_w:
            gx, gw = _conv_backward(ctx.conv, x, weight * scale.view(-1, 1, 1, 1), gy, need_x, need_w)
            if gw is not None:
                gw = gw * scale.view(-1, 1, 1, 1)
        if ctx.has_bias and need_b:
            gb = gy.sum((0, 2, 3)) * scale
        return gx, gw, gb, None, None, None


class FoldedConv:
    """Mixed in front of a convolution class whose ``forward`` is ``nn.Conv2d.forward`` (plain
    ``nn.Conv2d`` and :class:`~retina_cli.speed.winograd.WinogradConv2d`): it convolves with
    ``w * scale`` and ``b * scale + shift`` of the frozen BatchNorm in ``self._folded_bn``
    (``(N, C, H, W)`` -> ``(N, K, H', W')``, what conv then BatchNorm gave). Training goes through
    :class:`_FoldedConvFn`; without gradients the folded pair is cached until the weight or the
    BatchNorm's buffers change (and a Winograd layer keeps its transformed weight)."""

    _folded_bn: tuple[nn.Module]  # a tuple, so that the BatchNorm is not registered a second time
    _folded_cache: tuple[tuple[int, ...], Tensor, Tensor] | None

    def folded_parameters(self) -> tuple[Tensor, Tensor]:
        """``(K, C/groups, kh, kw)`` weight and ``(K,)`` bias with the BatchNorm applied, cached."""
        bn = self._folded_bn[0]
        tracked = (self.weight, self.bias, bn.weight, bn.bias, bn.running_mean, bn.running_var)
        key = tuple(v for t in tracked if t is not None for v in (t._version, t.data_ptr()))
        if self._folded_cache is None or self._folded_cache[0] != key:
            with torch.no_grad():
                weight, bias = scaled_conv_params(self.weight, self.bias, *bn_affine(bn))
            self._folded_cache = (key, weight, bias)
        return self._folded_cache[1], self._folded_cache[2]

    def forward(self, x: Tensor) -> Tensor:
        if torch.is_grad_enabled() and (self.weight.requires_grad or x.requires_grad):
            scale, shift = bn_affine(self._folded_bn[0])
            if torch.is_autocast_enabled(x.device.type):
                # autocast casts inside the convolution; autograd of the scaled weight gets the
                # dtypes of the backward pass right (at the cost of keeping that weight)
                return self._conv_forward(x, *scaled_conv_params(self.weight, self.bias, scale, shift))
            return _FoldedConvFn.apply(x, self.weight, self.bias, scale, shift, self)
        weight, bias = self.folded_parameters()
        return self._conv_forward(x, weight, bias)


class FoldedAway:
    """Mixed in front of a frozen BatchNorm whose map its convolution applies: what is left is
    the activation of a ``FrozenBatchNormAct2d`` (after its dropout), or nothing."""

    def forward(self, x: Tensor) -> Tensor:
        if hasattr(self, "act"):
            return self.act(self.drop(x))
        return x


_CLASSES: dict[tuple[type, type], type] = {}


def _folded_class(mixin: type, base: type) -> type:
    """One subclass per (mixin, class), so that ``isinstance`` still answers for the original."""
    if (mixin, base) not in _CLASSES:
        _CLASSES[mixin, base] = type(f"Folded{base.__name__}", (mixin, base), {"__module__": __name__})
    return _CLASSES[mixin, base]


def _foldable_conv(m: nn.Module) -> bool:
    """A 2D convolution whose forward is ``nn.Conv2d``'s, with explicit zero padding (what
    :func:`_conv` and its backward compute); not folded already."""
    return (
        isinstance(m, nn.Conv2d) and type(m).forward is nn.Conv2d.forward and not isinstance(m, FoldedConv)
        and m.padding_mode == "zeros" and not isinstance(m.padding, str)
    )


def fold_frozen_batchnorm(model: nn.Module, example: Tensor, atol: float = 1e-4) -> int:
    """Fold, in place, every frozen BatchNorm of ``model`` whose only input is one convolution's
    output into that convolution (see the module's docstring); ``example`` ``(N, C, H, W)`` is an
    input of ``model``. Returns how many were folded.

    The pairs come from one traced forward pass (:func:`~retina_cli.speed.fold_bn.conv_bn_pairs`),
    run in eval mode so that no trainable BatchNorm updates its statistics. The outputs on
    ``example`` are compared before and after; should anything the hooks cannot see also read a
    folded convolution's output, they differ and the model is put back (0 returned).
    """
    was_training = model.training
    model.eval()
    try:
        pairs, out = conv_bn_pairs(model, example, is_norm=lambda m: type(m) in FROZEN_BN_TYPES)
        pairs = [(c, b) for c, b in pairs if _foldable_conv(model.get_submodule(c))]
        if not pairs:
            return 0
        changed = []
        for conv_name, bn_name in pairs:
            conv, bn = model.get_submodule(conv_name), model.get_submodule(bn_name)
            changed += [(conv, type(conv)), (bn, type(bn))]
            conv.__class__ = _folded_class(FoldedConv, type(conv))
            conv._folded_bn, conv._folded_cache = (bn,), None
            bn.__class__ = _folded_class(FoldedAway, type(bn))
        with torch.no_grad():
            after = _flat(model(example))
        before = _flat(out)
        scale = max((float(b.abs().max()) for b in before if b.numel()), default=1.0) or 1.0
        if len(before) == len(after) and all(torch.allclose(b, a, rtol=0, atol=atol * scale) for b, a in zip(before, after)):
            return len(pairs)
        unfold(changed)
        return 0
    finally:
        model.train(was_training)


def unfold(changed: list[tuple[nn.Module, type]]) -> None:
    """Give the modules their classes back (the attributes the fold added stay, unused)."""
    for module, cls in changed:
        module.__class__ = cls


def folded_count(model: nn.Module) -> int:
    """How many convolutions of ``model`` apply a folded frozen BatchNorm."""
    return sum(isinstance(m, FoldedConv) for m in model.modules())
