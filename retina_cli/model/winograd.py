"""Winograd F(4x4, 3x3) convolution for inference on CPU (Lavin & Gray, "Fast Algorithms for
Convolutional Neural Networks", 2016).

A 3x3 stride-1 convolution computed on 6x6 input tiles (stride 4) in the Winograd domain: 36
independent ``(tiles, C) @ (C, K)`` matrix products give each tile's 4x4 outputs with 36
multiply-adds per channel pair instead of the direct convolution's 144 (4x fewer). On CPUs without a Winograd kernel
(oneDNN has none for AVX2) this pays for the 256-channel head and FPN convs that dominate
RetinaNet's FLOPs; cuDNN picks its own algorithms, so it is for CPU only. The transforms are
exact in real arithmetic; in fp32 the output differs from the direct convolution by ~1e-5 of
its largest value (tested).

The layers are built from trained ``nn.Conv2d`` weights (:func:`winograd_convs`): the transformed
weights are a frozen copy, so this is an inference-time rewrite, like folding BatchNorm.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# F(4x4, 3x3): Y = A^T [(G g G^T) * (B^T d B)] A for a 6x6 input tile d and a 3x3 kernel g
_BT = ((4, 0, -5, 0, 1, 0), (0, -4, -4, 1, 1, 0), (0, 4, -4, -1, 1, 0),
       (0, -2, -1, 2, 1, 0), (0, 2, -1, -2, 1, 0), (0, 4, 0, -5, 0, 1))
_G = ((1 / 4, 0, 0), (-1 / 6, -1 / 6, -1 / 6), (-1 / 6, 1 / 6, -1 / 6),
      (1 / 24, 1 / 12, 1 / 6), (1 / 24, -1 / 12, 1 / 6), (0, 0, 1))
_AT = ((1, 1, 1, 1, 1, 0), (0, 1, -1, 2, -2, 0), (0, 1, 1, 4, 4, 0), (0, 1, -1, 8, -8, 1))
TILE, OUT = 6, 4


def transform_weight(weight: Tensor) -> Tensor:
    """Conv weight ``(K, C, 3, 3)`` -> Winograd-domain weight ``(36, C, K)`` (computed in float64)."""
    k, c = weight.shape[:2]
    g = torch.tensor(_G, dtype=torch.float64, device=weight.device)
    u = weight.detach().double().reshape(k * c, 9) @ torch.kron(g, g).T  # (K*C, 36): G w G^T per pair
    return u.T.reshape(TILE * TILE, k, c).transpose(1, 2).to(weight.dtype).contiguous()


def _kron(m: tuple[tuple[float, ...], ...]) -> Tensor:
    t = torch.tensor(m, dtype=torch.float64)
    return torch.kron(t, t).float()


class WinogradConv2d(nn.Module):
    """Drop-in for a 3x3, stride 1, padding 1, dilation 1, ungrouped ``nn.Conv2d`` at inference:
    ``(N, C, H, W)`` -> ``(N, K, H, W)`` with channels-last strides.

    Maps smaller than ``min_pixels`` (H * W) go through the direct convolution: on a few tiles
    the transforms cost more than the multiply-adds they save (P6/P7 at usual sizes).
    """

    def __init__(self, conv: nn.Conv2d, min_pixels: int = 256) -> None:
        super().__init__()
        if not eligible(conv):
            raise ValueError(f"not a 3x3 stride-1 padding-1 convolution: {conv}")
        self.in_channels, self.out_channels = conv.in_channels, conv.out_channels
        self.min_pixels = min_pixels
        self.register_buffer("weight", conv.weight.detach(), persistent=False)  # (K, C, 3, 3), shared
        self.register_buffer("u", transform_weight(conv.weight), persistent=False)  # (36, C, K)
        bias = conv.bias.detach().clone() if conv.bias is not None else None
        self.register_buffer("bias", bias, persistent=False)  # (K,) or None
        self.register_buffer("mb", _kron(_BT), persistent=False)  # (36, 36): input tile transform
        self.register_buffer("ma", _kron(_AT), persistent=False)  # (16, 36): output tile transform

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, F(4x4, 3x3)"

    def forward(self, x: Tensor) -> Tensor:
        n, c, h, w = x.shape
        if h * w < self.min_pixels:
            return F.conv2d(x, self.weight, self.bias, padding=1)
        k = self.out_channels
        th, tw = -(-h // OUT), -(-w // OUT)  # tiles down and across
        p = n * th * tw
        # NHWC, zero-padded by 1 on the top/left and enough on the bottom/right for whole tiles
        xh = F.pad(x.permute(0, 2, 3, 1), (0, 0, 1, tw * OUT + 1 - w, 1, th * OUT + 1 - h))
        tiles = xh.unfold(1, TILE, OUT).unfold(2, TILE, OUT)  # (N, th, tw, C, 6, 6), a view
        d = tiles.permute(4, 5, 0, 1, 2, 3).reshape(TILE * TILE, p * c)  # (36, P*C)
        v = (self.mb @ d).view(TILE * TILE, p, c)  # (36, P, C)
        m = torch.bmm(v, self.u)  # (36, P, K)
        y = (self.ma @ m.view(TILE * TILE, p * k)).view(OUT, OUT, n, th, tw, k)
        y = y.permute(2, 3, 0, 4, 1, 5).reshape(n, th * OUT, tw * OUT, k)[:, :h, :w]  # (N, H, W, K)
        y = y + self.bias if self.bias is not None else y.contiguous()
        return y.permute(0, 3, 1, 2)


def eligible(conv: nn.Module) -> bool:
    """A plain 3x3 convolution that F(4x4, 3x3) computes exactly: stride 1, 'same' zero padding."""
    return (
        type(conv) is nn.Conv2d and conv.kernel_size == (3, 3) and conv.stride == (1, 1)
        and conv.padding in ((1, 1), "same") and conv.dilation == (1, 1) and conv.groups == 1
        and conv.padding_mode == "zeros"
    )


def winograd_convs(module: nn.Module, min_channels: int = 96) -> int:
    """Replace, in place, every eligible ``nn.Conv2d`` of ``module`` with at least ``min_channels``
    input and output channels by a :class:`WinogradConv2d`; returns how many were replaced.

    Narrower convolutions stay direct: their tile transforms cost more than the multiply-adds saved.
    """
    count = 0
    for name, child in module.named_children():
        if eligible(child) and min(child.in_channels, child.out_channels) >= min_channels:
            setattr(module, name, WinogradConv2d(child))
            count += 1
        else:
            count += winograd_convs(child, min_channels)
    return count
