"""Winograd F(4x4, 3x3): the transforms, equality with the direct convolution, which convs convert."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from retina_cli.speed.winograd import WinogradConv2d, eligible, transform_weight, winograd_convs


def test_weight_transform_is_G_g_Gt_per_channel_pair():
    # the 1D rows of G for F(4, 3) (Lavin & Gray, eq. 11): a 3-tap kernel sampled at 0, +-1, +-2, inf
    g = torch.tensor([[0.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 0.0]])  # the identity kernel
    u = transform_weight(g.view(1, 1, 3, 3), out=4).view(6, 6)
    g1 = torch.tensor([0.0, -1 / 6, 1 / 6, 1 / 12, -1 / 12, 0.0])  # G @ (0, 1, 0)
    torch.testing.assert_close(u, torch.outer(g1, g1))
    w = torch.randn(5, 7, 3, 3)
    G = torch.tensor([[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6],
                      [1 / 24, 1 / 12, 1 / 6], [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]], dtype=torch.float64)
    ref = torch.einsum("ai,kcij,bj->abck", G, w.double(), G).reshape(36, 7, 5).float()
    torch.testing.assert_close(transform_weight(w, out=4), ref)
    # F(6x6, 3x3): the centre tap's row of G is (0, -2/9, 2/9, 1/45, -1/45, 16/45, -16/45, 0)
    g6 = torch.tensor([0.0, -2 / 9, 2 / 9, 1 / 45, -1 / 45, 16 / 45, -16 / 45, 0.0])
    torch.testing.assert_close(transform_weight(g.view(1, 1, 3, 3), out=6).view(8, 8), torch.outer(g6, g6))


@pytest.mark.parametrize("out", [4, 6])
@pytest.mark.parametrize(
    "n,c,k,h,w",
    [(1, 16, 24, 16, 16), (2, 8, 8, 17, 23), (1, 32, 5, 20, 13), (3, 4, 4, 18, 18), (1, 8, 8, 4, 4)],
)
def test_equals_the_direct_convolution(n, c, k, h, w, out):
    torch.manual_seed(0)
    conv = nn.Conv2d(c, k, 3, padding=1)
    x = torch.randn(n, c, h, w)
    wc = WinogradConv2d(conv, min_pixels=0, out=out)
    with torch.no_grad():
        ref = conv(x)
        for inp in (x, x.contiguous(memory_format=torch.channels_last)):  # either layout in
            out = wc(inp)
            assert out.shape == ref.shape
            assert out.is_contiguous(memory_format=torch.channels_last)
            assert (out - ref).abs().max() <= 2e-5 * ref.abs().max()


def test_no_bias_and_small_maps_fall_back_to_direct():
    torch.manual_seed(1)
    conv = nn.Conv2d(8, 8, 3, padding=1, bias=False)
    x = torch.randn(1, 8, 12, 12)
    with torch.no_grad():
        ref = conv(x)
        torch.testing.assert_close(WinogradConv2d(conv, min_pixels=0)(x), ref, atol=2e-5, rtol=0)
        # 144 pixels < 256: the direct convolution, bit for bit
        assert torch.equal(WinogradConv2d(conv)(x), F.conv2d(x, conv.weight, None, padding=1))


def test_eligible_convolutions():
    assert eligible(nn.Conv2d(8, 8, 3, padding=1))
    assert eligible(nn.Conv2d(8, 8, 3, padding="same"))
    for bad in (nn.Conv2d(8, 8, 3, padding=1, stride=2), nn.Conv2d(8, 8, 3, padding=2, dilation=2),
                nn.Conv2d(8, 8, 3, padding=1, groups=8), nn.Conv2d(8, 8, 1), nn.Conv2d(8, 8, 5, padding=2),
                nn.Conv2d(8, 8, 3, padding=0), nn.Conv2d(8, 8, 3, padding=1, padding_mode="reflect")):
        assert not eligible(bad)
    with pytest.raises(ValueError, match="3x3 stride-1"):
        WinogradConv2d(nn.Conv2d(8, 8, 3, stride=2, padding=1))


def test_winograd_convs_replaces_only_wide_eligible_convs():
    model = nn.Sequential(
        nn.Conv2d(3, 128, 3, padding=1),  # 3 input channels: stays direct
        nn.Sequential(nn.Conv2d(128, 128, 3, padding=1), nn.ReLU()),
        nn.Conv2d(128, 128, 3, padding=1, stride=2),  # strided: stays
        nn.Conv2d(128, 64, 3, padding=1),  # 64 < 96 outputs: stays
    )
    assert winograd_convs(model) == 1
    assert isinstance(model[1][0], WinogradConv2d)
    assert [type(m) for m in (model[0], model[2], model[3])] == [nn.Conv2d] * 3
    assert winograd_convs(model, min_channels=64) == 1  # now the 128 -> 64 one too


@pytest.mark.parametrize("out", [4, 6])
def test_training_gradients_equal_the_direct_convolution(out):
    torch.manual_seed(2)
    conv = nn.Conv2d(16, 12, 3, padding=1)
    wc = WinogradConv2d(conv, min_pixels=0, out=out)
    assert wc.weight is conv.weight and wc.bias is conv.bias  # the same parameters
    assert list(wc.state_dict()) == ["weight", "bias"]
    x = torch.randn(2, 16, 19, 22, requires_grad=True)
    gy = torch.randn(2, 12, 19, 22)
    grads = []
    for layer in (conv, wc):
        y = layer(x)
        y.backward(gy)
        grads.append((y.detach(), x.grad.clone(), conv.weight.grad.clone(), conv.bias.grad.clone()))
        x.grad = conv.weight.grad = conv.bias.grad = None
    for ref, got in zip(*grads):
        assert (got - ref).abs().max() <= 2e-5 * ref.abs().max()
    # ReLU(inplace) after it, as in the head towers: the output is not a view
    nn.ReLU(inplace=True)(wc(x)).sum().backward()


def test_cached_weight_follows_optimizer_updates():
    torch.manual_seed(3)
    wc = WinogradConv2d(nn.Conv2d(8, 8, 3, padding=1), min_pixels=0)
    x = torch.randn(1, 8, 12, 12)
    with torch.no_grad():
        first = wc(x)
        wc.weight.mul_(2.0)  # what an optimizer step does: an in-place update
        wc.bias.zero_()
        torch.testing.assert_close(wc(x), F.conv2d(x, wc.weight, None, padding=1), atol=1e-4, rtol=1e-4)
    assert not torch.allclose(first, wc(x).detach())


def test_bands_cover_every_tile_row_and_give_the_same_result(monkeypatch):
    import retina_cli.speed.winograd as wg

    assert wg._bands(10, 1, 5, 8, 4, tile=6) == [(0, 10)]
    monkeypatch.setattr(wg, "BAND_BYTES", 36 * 2 * 5 * 8 * 4 * 3)  # three rows of 6x6 tiles per band
    assert wg._bands(10, 2, 5, 8, 4, tile=6) == [(0, 3), (3, 6), (6, 9), (9, 10)]
    torch.manual_seed(4)
    conv = nn.Conv2d(8, 8, 3, padding=1)
    for h, w, out in ((40, 20, 4), (38, 19, 4), (48, 24, 6), (45, 19, 6)):  # whole tiles, cropped bands
        assert len(wg._bands(-(-h // out), 2, -(-w // out), 8, 4, out + 2)) > 2
        x = torch.randn(2, 8, h, w, requires_grad=True)
        y = wg.WinogradConv2d(conv, min_pixels=0, out=out)(x)
        gy = torch.randn_like(y)  # each band pads its own rows: halos and borders must line up
        gx, gw = torch.autograd.grad(y, (x, conv.weight), gy)
        y2 = conv(x)
        gx2, gw2 = torch.autograd.grad(y2, (x, conv.weight), gy)
        for a, b in ((y, y2), (gx, gx2), (gw, gw2)):
            assert (a - b).abs().max() <= 2e-5 * b.abs().max()
