"""Anchors: literal numbers for a tiny case, and torchvision's AnchorGenerator for the paper's settings."""

import torch
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.image_list import ImageList

from retina_cli.boxes.anchors import cell_anchors, feature_sizes_for, generate_anchors
from retina_cli.config import AnchorConfig

LEVELS = (3, 4, 5, 6, 7)


def test_literal_anchors_one_level():
    cfg = AnchorConfig(sizes=(8.0,), ratios=(1.0,), scales=(1.0,))
    (anchors,) = generate_anchors(cfg, [2], [(2, 3)])  # stride 4, rows first
    expected = torch.tensor(
        [
            [-4.0, -4.0, 4.0, 4.0], [0.0, -4.0, 8.0, 4.0], [4.0, -4.0, 12.0, 4.0],
            [-4.0, 0.0, 4.0, 8.0], [0.0, 0.0, 8.0, 8.0], [4.0, 0.0, 12.0, 8.0],
        ]
    )
    torch.testing.assert_close(anchors, expected)
    (centred,) = generate_anchors(AnchorConfig(sizes=(8.0,), ratios=(1.0,), scales=(1.0,), offset=0.5), [2], [(2, 3)])
    torch.testing.assert_close(centred, expected + 2.0)


def test_literal_cell_anchors_ratio_major():
    r = 2**0.5
    got = cell_anchors(8.0, (0.5, 1.0, 2.0), (1.0, 2.0), rounding=False)
    # ratio = height / width, area (8 * scale) ** 2; ratio-major, scale-minor
    expected = torch.tensor(
        [
            [-4 * r, -2 * r, 4 * r, 2 * r], [-8 * r, -4 * r, 8 * r, 4 * r],
            [-4, -4, 4, 4], [-8, -8, 8, 8],
            [-2 * r, -4 * r, 2 * r, 4 * r], [-4 * r, -8 * r, 4 * r, 8 * r],
        ]
    )
    torch.testing.assert_close(got, expected)
    torch.testing.assert_close(
        cell_anchors(8.0, (0.5, 1.0, 2.0), (1.0, 2.0), rounding=True),
        torch.tensor(
            [[-6, -3, 6, 3], [-11, -6, 11, 6], [-4, -4, 4, 4], [-8, -8, 8, 8], [-3, -6, 3, 6], [-6, -11, 6, 11]]
        ).float(),
    )


def _torchvision_anchors(img_h: int, img_w: int) -> torch.Tensor:
    # built exactly as torchvision.models.detection.retinanet._default_anchorgen
    sizes = tuple((x, int(x * 2 ** (1.0 / 3)), int(x * 2 ** (2.0 / 3))) for x in [32, 64, 128, 256, 512])
    gen = AnchorGenerator(sizes, ((0.5, 1.0, 2.0),) * len(sizes))
    feats = [torch.zeros(1, 1, h, w) for h, w in feature_sizes_for(img_h, img_w, LEVELS)]
    return gen(ImageList(torch.zeros(1, 3, img_h, img_w), [(img_h, img_w)]), feats)[0]


def test_rounding_reproduces_torchvision_exactly():
    # int(32 * 2 ** (k / 3)) per level is the same truncation torchvision does, so the default sizes
    # (4 * stride) with rounding=True give its anchors bit for bit, same order
    for h, w in [(384, 384), (256, 640)]:
        ours = torch.cat(generate_anchors(AnchorConfig(rounding=True), LEVELS, feature_sizes_for(h, w, LEVELS)))
        assert torch.equal(ours, _torchvision_anchors(h, w))


def test_paper_sizes_differ_from_torchvision_by_under_one_pixel():
    tv = _torchvision_anchors(384, 384)
    ours = torch.cat(generate_anchors(AnchorConfig(), LEVELS, feature_sizes_for(384, 384, LEVELS)))
    diff = (ours - tv).abs().max().item()
    assert 0.5 < diff < 1.0  # truncated sizes and whole-pixel corners; measured 0.92 px
