"""Winograd F(4x4, 3x3) convolution for CPU (Lavin & Gray, "Fast Algorithms for Convolutional
Neural Networks", 2016).

A 3x3 stride-1 convolution computed on 6x6 input tiles (stride 4) in the Winograd domain: 36
independent ``(tiles, C) @ (C, K)`` matrix products give each tile's 4x4 outputs with 36
multiply-adds per channel pair instead of the direct convolution's 144 (4x fewer). On CPUs
without a Winograd kernel (oneDNN has none for AVX2) this pays for the 256-channel head and FPN
convs that dominate RetinaNet's FLOPs; cuDNN picks its own algorithms, so it is for CPU only.
The transforms are exact in real arithmetic; in fp32 the output differs from the direct
convolution by ~1e-5 of its largest value, and so do the gradients (tested).

F(6x6, 3x3) (8x8 tiles, 64 products per 36 outputs: 5.1x fewer) is there too (``out=6``); its
error is ~2e-5 and on this project's 2-core CPU it was not faster, so F(4x4, 3x3) is the default.

:func:`winograd_convs` swaps eligible ``nn.Conv2d`` layers for :class:`WinogradConv2d`, which
keeps their parameters: for inference (``engine.detector.prepare_inference``) and for training.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# F(m x m, 3x3): Y = A^T [(G g G^T) * (B^T d B)] A for an (m+2) x (m+2) input tile d and a 3x3
# kernel g. m = 4 (points 0, +-1, +-2) and m = 6 (0, +-1, +-2, +-1/2), as in Lavin & Gray / NNPACK.
_MATRICES = {
    4: (  # B^T, G, A^T
        ((4, 0, -5, 0, 1, 0), (0, -4, -4, 1, 1, 0), (0, 4, -4, -1, 1, 0),
         (0, -2, -1, 2, 1, 0), (0, 2, -1, -2, 1, 0), (0, 4, 0, -5, 0, 1)),
        ((1 / 4, 0, 0), (-1 / 6, -1 / 6, -1 / 6), (-1 / 6, 1 / 6, -1 / 6),
         (1 / 24, 1 / 12, 1 / 6), (1 / 24, -1 / 12, 1 / 6), (0, 0, 1)),
        ((1, 1, 1, 1, 1, 0), (0, 1, -1, 2, -2, 0), (0, 1, 1, 4, 4, 0), (0, 1, -1, 8, -8, 1)),
    ),
    6: (
        ((1, 0, -21 / 4, 0, 21 / 4, 0, -1, 0), (0, 1, 1, -17 / 4, -17 / 4, 1, 1, 0),
         (0, -1, 1, 17 / 4, -17 / 4, -1, 1, 0), (0, 1 / 2, 1 / 4, -5 / 2, -5 / 4, 2, 1, 0),
         (0, -1 / 2, 1 / 4, 5 / 2, -5 / 4, -2, 1, 0), (0, 2, 4, -5 / 2, -5, 1 / 2, 1, 0),
         (0, -2, 4, 5 / 2, -5, -1 / 2, 1, 0), (0, -1, 0, 21 / 4, 0, -21 / 4, 0, 1)),
        ((1, 0, 0), (-2 / 9, -2 / 9, -2 / 9), (-2 / 9, 2 / 9, -2 / 9), (1 / 90, 1 / 45, 2 / 45),
         (1 / 90, -1 / 45, 2 / 45), (32 / 45, 16 / 45, 8 / 45), (32 / 45, -16 / 45, 8 / 45), (0, 0, 1)),
        ((1, 1, 1, 1, 1, 1, 1, 0), (0, 1, -1, 2, -2, 1 / 2, -1 / 2, 0), (0, 1, 1, 4, 4, 1 / 4, 1 / 4, 0),
         (0, 1, -1, 8, -8, 1 / 8, -1 / 8, 0), (0, 1, 1, 16, 16, 1 / 16, 1 / 16, 0),
         (0, 1, -1, 32, -32, 1 / 32, -1 / 32, 1)),
    ),
}
OUT = 4  # output tile side used by default: F(4x4, 3x3), 36 products per 16 outputs


def _kron(m: tuple[tuple[float, ...], ...]) -> Tensor:
    t = torch.tensor(m, dtype=torch.float64)
    return torch.kron(t, t)  # 2D transform of a tile as one matrix on its flattened values


# out -> ((T, T) B^T and (out, T) A^T, applied along each side of a tile by _apply2d; (T*T, 9) weight
# transform G (x) G, exact in float64)
_TRANSFORMS = {m: (torch.tensor(bt, dtype=torch.float32), torch.tensor(at, dtype=torch.float32), _kron(g))
               for m, (bt, g, at) in _MATRICES.items()}


def _apply2d(mat: Tensor, x: Tensor, overwrite: bool = False) -> Tensor:
    """``kron(mat, mat) @ x`` as two 1-D passes: ``mat`` ``(p, q)``, ``x`` ``(q*q, cols)`` (tile
    values in row-major order) -> ``(p*p, cols)``. 2 q multiply-adds per output instead of q*q:
    on a band's tiles the input transform took 1.65 ms against 1.82 for the 36 x 36 matrix, the
    output transform 1.01 against 1.25 (2-core Zen 3). overwrite (p == q, ``x`` contiguous and
    the caller's own): the result goes into ``x``, so the pass between costs no third buffer."""
    p, q = mat.shape
    cols = x.shape[-1]
    rows = (mat @ x.reshape(q, q * cols)).view(p, q, cols)  # the first side transformed
    if overwrite:  # the second: one (p, q) @ (q, cols) per row
        return torch.matmul(mat.expand(p, p, q), rows, out=x.view(p, p, cols)).view(p * p, cols)
    return torch.matmul(mat, rows).view(p * p, cols)


def transform_weight(weight: Tensor, out: int = OUT, exact: bool = False) -> Tensor:
    """Conv weight ``(K, C, 3, 3)`` -> Winograd-domain weight ``(T*T, C, K)``, T = out + 2.

    exact: computed in float64 and rounded once (inference, where it is done once and cached).
    Otherwise in the weight's dtype with one intermediate of the result's size: training
    transforms every layer's weight at every step (twice), and a 512-channel layer's result is
    38 MB, so a float64 intermediate doubled the transient memory of a step's backward pass.
    """
    k, c = weight.shape[:2]
    gg = _TRANSFORMS[out][2].to(weight.device, torch.float64 if exact else weight.dtype)
    u = gg @ weight.detach().to(gg.dtype).reshape(k * c, 9).T  # (T*T, K*C): G w G^T per channel pair
    return u.view(-1, k, c).transpose(1, 2).to(weight.dtype).contiguous()


def _out_of(u: Tensor) -> int:
    """The output tile side of a transformed weight ``(T*T, C, K)``."""
    return round(u.shape[0] ** 0.5) - 2


BAND_BYTES = 4 << 20  # Winograd-domain working set per band of tile rows (8 MiB: +10 MiB training peak, no faster)


def _tiles_of(x: Tensor, out: int) -> tuple[int, int]:
    """(th, tw): the output tiles down and across an ``(N, C, H, W)`` map."""
    h, w = x.shape[-2:]
    return -(-h // out), -(-w // out)


def _padded_band(x: Tensor, r0: int, r1: int, out: int, tw: int) -> Tensor:
    """The input rows of tile rows ``[r0, r1)`` of ``x`` ``(N, C, H, W)``: NHWC
    ``(N, (r1 - r0) out + 2, tw out + 2, C)``, zero-padded as the whole map would be (1 on the
    top/left, to whole tiles on the bottom/right). Padding a band at a time, not the map, keeps a
    layer's transient memory at the band's size (a padded copy of a 256 x 80 x 80 map is 13 MB)."""
    h, w = x.shape[-2:]
    top, bottom = r0 * out - 1, r1 * out + 1  # the band's rows in x, halo included
    rows = x.permute(0, 2, 3, 1)[:, max(top, 0): min(bottom, h)]
    return F.pad(rows, (0, 0, 1, tw * out + 1 - w, max(-top, 0), max(bottom - h, 0)))


def _bands(th: int, n: int, tw: int, channels: int, itemsize: int, tile: int = OUT + 2) -> list[tuple[int, int]]:
    """Tile-row ranges ``[r0, r1)`` whose (T*T, tiles, channels) buffers stay near BAND_BYTES: the
    transient memory of a layer stays small and bounded (and cache-friendly) at any image size."""
    rows = max(1, BAND_BYTES // (tile * tile * n * tw * channels * itemsize))
    return [(r0, min(th, r0 + rows)) for r0 in range(0, th, rows)]


def _band_tiles(x: Tensor, r0: int, r1: int, bt: Tensor, out: int, tw: int) -> Tensor:
    """``(N, C, H, W)`` input -> Winograd-domain tiles of tile rows ``[r0, r1)``:
    ``(T*T, P, C)``, P = N * (r1 - r0) * tw, tiles in (N, row, column) order."""
    c, tile = x.shape[1], out + 2
    band = _padded_band(x, r0, r1, out, tw)
    tiles = band.unfold(1, tile, out).unfold(2, tile, out)  # (N, rb, tw, C, T, T)
    d = tiles.permute(4, 5, 0, 1, 2, 3).reshape(tile * tile, -1)  # (T*T, P*C)
    # d is ours to overwrite: reshape gathers the tiles into a copy (or views the freshly padded band)
    return _apply2d(bt, d, overwrite=True).view(tile * tile, -1, c)


def winograd_conv2d(x: Tensor, u: Tensor, bias: Tensor | None = None) -> Tensor:
    """``conv2d(x, w, bias, padding=1)`` for a 3x3 ``w`` given as ``u = transform_weight(w, out)``
    ``(T*T, C, K)``: ``(N, C, H, W)`` -> ``(N, K, H, W)`` with channels-last strides."""
    n, c, h, w = x.shape
    k, out = u.shape[-1], _out_of(u)
    bt, at, _ = (t.to(x.device, x.dtype) for t in _TRANSFORMS[out])
    th, tw = _tiles_of(x, out)
    # a fresh NCHW tensor, not a view (ReLU(inplace) may follow), written band by band through NHWC views
    result = torch.empty((n, k, h, w), device=x.device, dtype=x.dtype, memory_format=torch.channels_last)
    res_h = result.permute(0, 2, 3, 1)  # (N, H, W, K)
    for r0, r1 in _bands(th, n, tw, max(c, k), x.element_size(), out + 2):
        rb = r1 - r0
        m = torch.bmm(_band_tiles(x, r0, r1, bt, out, tw), u)  # (T*T, P, K)
        y = _apply2d(at, m.view(m.shape[0], -1)).view(out, out, n, rb, tw, k).permute(2, 3, 0, 4, 1, 5)  # (N, rb, o, tw, o, K)
        if r1 * out <= h and tw * out == w:  # whole tiles: write straight into the result
            dst = res_h[:, r0 * out: r1 * out].view(n, rb, out, tw, out, k)
        else:  # a band or column of tiles that sticks out of the map: crop
            y = y.reshape(n, rb * out, tw * out, k)[:, : min(h, r1 * out) - r0 * out, :w]
            dst = res_h[:, r0 * out: min(h, r1 * out)]
        if bias is not None:
            torch.add(y, bias, out=dst)
        else:
            dst.copy_(y)
    return result


class _WinogradFn(torch.autograd.Function):
    """Winograd convolution with its own backward (:func:`winograd_conv2d_backward`), so that
    training saves only the input (as the direct convolution does) instead of the larger
    transformed tiles."""

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor | None, out: int) -> Tensor:
        ctx.save_for_backward(x, weight)
        ctx.has_bias, ctx.out = bias is not None, out
        return winograd_conv2d(x, transform_weight(weight, out), bias)

    @staticmethod
    def backward(ctx, gy: Tensor):
        x, weight = ctx.saved_tensors
        gx, gw = winograd_conv2d_backward(x, weight, gy, ctx.out, ctx.needs_input_grad[0], ctx.needs_input_grad[1])
        gb = gy.sum((0, 2, 3)) if ctx.has_bias and ctx.needs_input_grad[2] else None
        return gx, gw, gb, None


def winograd_conv2d_backward(
    x: Tensor, weight: Tensor, gy: Tensor, out: int = OUT, need_x: bool = True, need_w: bool = True,
) -> tuple[Tensor | None, Tensor | None]:
    """Gradients of the Winograd convolution ``(N, C, H, W) -> (N, K, H, W)`` for the gradient
    ``gy`` ``(N, K, H, W)`` of its output: ``(grad_x, grad_weight)`` (``(K, C, 3, 3)``), each None
    where not needed. grad_x is the same Winograd convolution of gy with the flipped, transposed
    kernel; grad_w = G^T [sum over tiles of (B^T x B) * (A gy A^T)] G, with the input tiles recomputed."""
    gx = gw = None
    if need_x:
        gx = winograd_conv2d(gy, transform_weight(weight.flip(2, 3).transpose(0, 1), out))
    if need_w:
        n, c, h, w = x.shape
        k, tile = gy.shape[1], out + 2
        bt, at, gg = (t.to(x.device, x.dtype) for t in _TRANSFORMS[out])
        th, tw = _tiles_of(x, out)
        g_h = gy.permute(0, 2, 3, 1)  # (N, H, W, K)
        gu = x.new_zeros(tile * tile, c, k)
        for r0, r1 in _bands(th, n, tw, max(c, k), x.element_size(), tile):
            rb = r1 - r0
            g = g_h[:, r0 * out: min(h, r1 * out)]
            if g.shape[1] < rb * out or tw * out > w:  # tiles that stick out of the map: zeros there
                g = F.pad(g, (0, 0, 0, tw * out - w, 0, rb * out - g.shape[1]))  # (N, rb*o, tw*o, K)
            g = g.reshape(n, rb, out, tw, out, k).permute(2, 4, 0, 1, 3, 5).reshape(out * out, -1)  # (o*o, P*K)
            gm = _apply2d(at.T, g).view(tile * tile, -1, k)  # (T*T, P, K)
            gu.baddbmm_(_band_tiles(x, r0, r1, bt, out, tw).transpose(1, 2), gm)  # (T*T, C, K)
        # G^T gu G per channel pair, read through a transposed view (no copy of gu)
        gw = (gu.view(tile * tile, c * k).T @ gg).view(c, k, 3, 3).transpose(0, 1).contiguous()
    return gx, gw


class WinogradConv2d(nn.Conv2d):
    """A 3x3, stride 1, padding 1, dilation 1, ungrouped ``nn.Conv2d`` computed as Winograd
    F(4x4, 3x3): ``(N, C, H, W)`` -> ``(N, K, H, W)`` with channels-last strides.

    It holds the original layer's ``weight`` and ``bias`` parameters (same state_dict, so
    checkpoints do not change). Training goes through :class:`_WinogradFn`; without gradients the
    transformed weight is cached until the weight changes. Maps smaller than ``min_pixels``
    (H * W) use the direct convolution: on a few tiles the transforms cost more than the
    multiply-adds they save (P6/P7 at usual sizes).
    """

    def __init__(self, conv: nn.Conv2d, min_pixels: int = 256, out: int = OUT) -> None:
        if not eligible(conv):
            raise ValueError(f"not a 3x3 stride-1 padding-1 convolution: {conv}")
        if out not in _MATRICES:
            raise ValueError(f"Winograd output tile {out}: expected one of {sorted(_MATRICES)}")
        super().__init__(conv.in_channels, conv.out_channels, 3, padding=1, bias=False, device="meta")
        self.weight, self.bias = conv.weight, conv.bias  # the same Parameters
        self.min_pixels, self.out = min_pixels, out
        self._cache: tuple[Tensor, tuple[int, int, torch.device], Tensor] | None = None

    def extra_repr(self) -> str:
        return super().extra_repr() + f", Winograd F({self.out}x{self.out}, 3x3)"

    def transformed_weight(self, weight: Tensor | None = None) -> Tensor:
        """``(T*T, C, K)`` of ``weight`` (this layer's by default), recomputed only when another
        tensor is given or the tensor was changed or moved (the cache holds the tensor itself:
        a freed one's address may come back with another's values)."""
        w = self.weight if weight is None else weight
        key = (w._version, w.data_ptr(), w.device)
        if self._cache is None or self._cache[0] is not w or self._cache[1] != key:
            self._cache = (w, key, transform_weight(w, self.out, exact=True))
        return self._cache[2]

    def _conv_forward(self, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        # nn.Conv2d.forward calls this with the layer's own parameters; a folded frozen BatchNorm
        # (speed.fold_frozen_bn) with its scaled ones
        if x.shape[-2] * x.shape[-1] < self.min_pixels:
            return F.conv2d(x, weight, bias, padding=1)
        if torch.is_grad_enabled() and (weight.requires_grad or x.requires_grad):
            return _WinogradFn.apply(x, weight, bias, self.out)
        return winograd_conv2d(x, self.transformed_weight(weight), bias)


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
