"""Winograd F(4x4, 3x3) convolution for CPU (Lavin & Gray, "Fast Algorithms for Convolutional
Neural Networks", 2016).

A 3x3 stride-1 convolution computed on 6x6 input tiles (stride 4) in the Winograd domain: 36
independent ``(tiles, C) @ (C, K)`` matrix products give each tile's 4x4 outputs with 36
multiply-adds per channel pair instead of the direct convolution's 144 (4x fewer). On CPUs
without a Winograd kernel (oneDNN has none for AVX2) this pays for the 256-channel head and FPN
convs that dominate RetinaNet's FLOPs; cuDNN picks its own algorithms, so it is for CPU only.
The transforms are exact in real arithmetic; in fp32 the output differs from the direct
convolution by ~1e-5 of its largest value, and so do the gradients (tested).

:func:`winograd_convs` swaps eligible ``nn.Conv2d`` layers for :class:`WinogradConv2d`, which
keeps their parameters: for inference (``engine.detector.prepare_inference``) and for training.
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


def _kron(m: tuple[tuple[float, ...], ...]) -> Tensor:
    t = torch.tensor(m, dtype=torch.float64)
    return torch.kron(t, t)  # 2D transform of a tile as one matrix on its flattened values


_MB, _MA = _kron(_BT).float(), _kron(_AT).float()  # (36, 36) input and (16, 36) output tile transforms
_GG = _kron(_G)  # (36, 9) weight transform, float64


def transform_weight(weight: Tensor) -> Tensor:
    """Conv weight ``(K, C, 3, 3)`` -> Winograd-domain weight ``(36, C, K)`` (computed in float64)."""
    k, c = weight.shape[:2]
    u = weight.detach().double().reshape(k * c, 9) @ _GG.to(weight.device).T  # (K*C, 36): G w G^T per pair
    return u.T.reshape(TILE * TILE, k, c).transpose(1, 2).to(weight.dtype).contiguous()


BAND_BYTES = 8 << 20  # Winograd-domain working set per band of tile rows


def _padded(x: Tensor) -> tuple[Tensor, int, int]:
    """``(N, C, H, W)`` -> NHWC ``(N, 4 th + 2, 4 tw + 2, C)`` zero-padded by 1 on the top/left and
    enough on the bottom/right for whole tiles; and (th, tw), the tiles down and across."""
    h, w = x.shape[-2:]
    th, tw = -(-h // OUT), -(-w // OUT)
    return F.pad(x.permute(0, 2, 3, 1), (0, 0, 1, tw * OUT + 1 - w, 1, th * OUT + 1 - h)), th, tw


def _bands(th: int, n: int, tw: int, channels: int, itemsize: int) -> list[tuple[int, int]]:
    """Tile-row ranges ``[r0, r1)`` whose (36, tiles, channels) buffers stay near BAND_BYTES: the
    transient memory of a layer stays small and bounded (and cache-friendly) at any image size."""
    rows = max(1, BAND_BYTES // (TILE * TILE * n * tw * channels * itemsize))
    return [(r0, min(th, r0 + rows)) for r0 in range(0, th, rows)]


def _band_tiles(xh: Tensor, r0: int, r1: int, mb: Tensor) -> Tensor:
    """Padded NHWC input (see :func:`_padded`) -> Winograd-domain tiles of tile rows ``[r0, r1)``:
    ``(36, P, C)``, P = N * (r1 - r0) * tw, tiles in (N, row, column) order."""
    c = xh.shape[-1]
    tiles = xh[:, r0 * OUT: r1 * OUT + TILE - OUT].unfold(1, TILE, OUT).unfold(2, TILE, OUT)  # (N, rb, tw, C, 6, 6)
    d = tiles.permute(4, 5, 0, 1, 2, 3).reshape(TILE * TILE, -1)  # (36, P*C)
    return (mb @ d).view(TILE * TILE, -1, c)


def winograd_conv2d(x: Tensor, u: Tensor, bias: Tensor | None = None) -> Tensor:
    """``conv2d(x, w, bias, padding=1)`` for a 3x3 ``w`` given as ``u = transform_weight(w)``
    ``(36, C, K)``: ``(N, C, H, W)`` -> ``(N, K, H, W)`` with channels-last strides."""
    n, c, h, w = x.shape
    k = u.shape[-1]
    mb, ma = _MB.to(x.device, x.dtype), _MA.to(x.device, x.dtype)
    xh, th, tw = _padded(x)
    # a fresh NCHW tensor, not a view (ReLU(inplace) may follow), written band by band through NHWC views
    out = torch.empty((n, k, h, w), device=x.device, dtype=x.dtype, memory_format=torch.channels_last)
    out_h = out.permute(0, 2, 3, 1)  # (N, H, W, K)
    for r0, r1 in _bands(th, n, tw, max(c, k), x.element_size()):
        rb = r1 - r0
        m = torch.bmm(_band_tiles(xh, r0, r1, mb), u)  # (36, P, K)
        y = (ma @ m.view(TILE * TILE, -1)).view(OUT, OUT, n, rb, tw, k).permute(2, 3, 0, 4, 1, 5)  # (N, rb, 4, tw, 4, K)
        if r1 * OUT <= h and tw * OUT == w:  # whole tiles: write straight into the output
            dst = out_h[:, r0 * OUT: r1 * OUT].view(n, rb, OUT, tw, OUT, k)
        else:  # the last band of a size that is not a multiple of 4: crop
            y = y.reshape(n, rb * OUT, tw * OUT, k)[:, : min(h, r1 * OUT) - r0 * OUT, :w]
            dst = out_h[:, r0 * OUT: min(h, r1 * OUT)]
        if bias is not None:
            torch.add(y, bias, out=dst)
        else:
            dst.copy_(y)
    return out


class _WinogradFn(torch.autograd.Function):
    """Winograd convolution with its own backward, so that training saves only the input (as the
    direct convolution does) instead of the 2.25x larger transformed tiles:
    grad_x = the same Winograd convolution of grad_y with the flipped, transposed kernel;
    grad_w = G^T [sum over tiles of (B^T x B) * (A grad_y A^T)] G, with the input tiles recomputed."""

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        return winograd_conv2d(x, transform_weight(weight), bias)

    @staticmethod
    def backward(ctx, gy: Tensor):
        x, weight = ctx.saved_tensors
        gx = gw = gb = None
        if ctx.needs_input_grad[0]:
            gx = winograd_conv2d(gy, transform_weight(weight.flip(2, 3).transpose(0, 1)))
        if ctx.needs_input_grad[1]:
            n, c, h, w = x.shape
            k = gy.shape[1]
            mb, mat = _MB.to(x.device, x.dtype), _MA.to(x.device, x.dtype).T  # (36, 36), (36, 16)
            xh, th, tw = _padded(x)
            g_h = gy.permute(0, 2, 3, 1)  # (N, H, W, K)
            gu = x.new_zeros(TILE * TILE, c, k)
            for r0, r1 in _bands(th, n, tw, max(c, k), x.element_size()):
                rb = r1 - r0
                g = g_h[:, r0 * OUT: min(h, r1 * OUT)]
                g = F.pad(g, (0, 0, 0, tw * OUT - w, 0, rb * OUT - g.shape[1]))  # (N, rb*4, tw*4, K)
                g = g.reshape(n, rb, OUT, tw, OUT, k).permute(2, 4, 0, 1, 3, 5).reshape(OUT * OUT, -1)  # (16, P*K)
                gm = (mat @ g).view(TILE * TILE, -1, k)  # (36, P, K)
                gu.baddbmm_(_band_tiles(xh, r0, r1, mb).transpose(1, 2), gm)  # (36, C, K)
            gw = (gu.transpose(1, 2).reshape(TILE * TILE, k * c).T @ _GG.to(gu.device, gu.dtype)).view(k, c, 3, 3)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            gb = gy.sum((0, 2, 3))
        return gx, gw, gb


class WinogradConv2d(nn.Conv2d):
    """A 3x3, stride 1, padding 1, dilation 1, ungrouped ``nn.Conv2d`` computed as Winograd
    F(4x4, 3x3): ``(N, C, H, W)`` -> ``(N, K, H, W)`` with channels-last strides.

    It holds the original layer's ``weight`` and ``bias`` parameters (same state_dict, so
    checkpoints do not change). Training goes through :class:`_WinogradFn`; without gradients the
    transformed weight is cached until the weight changes. Maps smaller than ``min_pixels``
    (H * W) use the direct convolution: on a few tiles the transforms cost more than the
    multiply-adds they save (P6/P7 at usual sizes).
    """

    def __init__(self, conv: nn.Conv2d, min_pixels: int = 256) -> None:
        if not eligible(conv):
            raise ValueError(f"not a 3x3 stride-1 padding-1 convolution: {conv}")
        super().__init__(conv.in_channels, conv.out_channels, 3, padding=1, bias=False, device="meta")
        self.weight, self.bias = conv.weight, conv.bias  # the same Parameters
        self.min_pixels = min_pixels
        self._cache: tuple[tuple[int, int, torch.device], Tensor] | None = None

    def extra_repr(self) -> str:
        return super().extra_repr() + ", Winograd F(4x4, 3x3)"

    def transformed_weight(self) -> Tensor:
        """``(36, C, K)``, recomputed only when the weight was changed or moved."""
        w = self.weight
        key = (w._version, w.data_ptr(), w.device)
        if self._cache is None or self._cache[0] != key:
            self._cache = (key, transform_weight(w))
        return self._cache[1]

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[-2] * x.shape[-1] < self.min_pixels:
            return F.conv2d(x, self.weight, self.bias, padding=1)
        if torch.is_grad_enabled() and (self.weight.requires_grad or x.requires_grad):
            return _WinogradFn.apply(x, self.weight, self.bias)
        return winograd_conv2d(x, self.transformed_weight(), self.bias)


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
