"""Freezing the high-resolution start of a backbone for fine-tuning.

Detection fine-tuning usually keeps the first layers of an ImageNet backbone fixed (detectron2's
``FREEZE_AT``, torchvision's ``trainable_backbone_layers``): they hold generic edge and colour
filters, and they are the most expensive to train, because they run at strides 2 and 4 where the
maps are largest. Frozen, and with nothing below them needing a gradient, autograd skips their
backward pass altogether.

Which layers those are is found by running the backbone once, not from a provider's layer names,
so it works for any backbone plugin: every layer that runs before the first layer whose output
is coarser than the given stride.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def layers_up_to_stride(backbone: nn.Module, stride: int, side: int = 64) -> list[nn.Module]:
    """The modules of ``backbone`` whose forward ends, in order, before that of the first one
    whose output has a coarser stride than ``stride`` (a layer holding parameters of its own and
    children, such as timm's BatchNormAct2d, counts as one), found by a forward pass of a
    ``(1, 3, side, side)`` input (``side`` a multiple of the backbone's largest stride)."""
    order: list[nn.Module] = []
    deeper: list[bool] = []

    def hook(module: nn.Module, _inputs, output) -> None:
        if deeper:
            return
        out = output[0] if isinstance(output, (list, tuple)) else output
        if isinstance(out, Tensor) and out.dim() == 4 and side // out.shape[-1] > stride:
            deeper.append(True)
            return
        if module not in order:
            order.append(module)

    handles = [m.register_forward_hook(hook) for m in backbone.modules() if m is not backbone]
    was_training = backbone.training
    try:
        backbone.eval()
        with torch.no_grad():
            p = next(backbone.parameters(), None)
            backbone(torch.zeros(1, 3, side, side, device=p.device if p is not None else None))
    finally:
        for h in handles:
            h.remove()
        backbone.train(was_training)
    return order


def freeze_early_layers(backbone: nn.Module, stride: int) -> int:
    """Stop training (``requires_grad=False``) the parameters of every layer that
    :func:`layers_up_to_stride` finds for ``stride``; 0 freezes nothing. Returns the number of
    parameter tensors frozen. Buffers (BatchNorm statistics) are not touched."""
    if stride <= 0:
        return 0
    frozen = 0
    for module in layers_up_to_stride(backbone, stride):
        for p in module.parameters(recurse=False):
            if p.requires_grad:
                p.requires_grad_(False)
                frozen += 1
    return frozen
