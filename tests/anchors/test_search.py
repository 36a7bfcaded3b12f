"""Best-anchor IoU on the nearest cells (exact against all anchors), k-means seeds, and the search."""

from __future__ import annotations

import pytest
import torch

from retina_cli.anchors.search import best_anchor_iou, coverage_score, kmeans_ratios, search_anchors
from retina_cli.boxes.ops import pairwise_iou
from retina_cli.config import AnchorConfig
from retina_cli.anchors.fit import all_anchors


def random_boxes(n: int, img: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    centre = torch.rand(n, 2, generator=g) * img
    wh = torch.rand(n, 2, generator=g) * img / 2 + 2
    return torch.cat((centre - wh / 2, centre + wh / 2), dim=1).clamp(0, img)


def tall_boxes(n: int, seed: int) -> torch.Tensor:
    """``n`` boxes 20 x 60 (height / width 3) at random positions inside a 256 px input."""
    g = torch.Generator().manual_seed(seed)
    centre = torch.rand(n, 2, generator=g) * 180 + 38
    half = torch.tensor([10.0, 30.0])
    return torch.cat((centre - half, centre + half), dim=1)


@pytest.mark.parametrize(
    "cfg, levels, img",
    [
        (AnchorConfig(), (3, 4, 5, 6, 7), 640),
        (AnchorConfig(sizes=(24, 48, 96, 192), offset=0.5), (3, 4, 5, 6), 448),
        (AnchorConfig(rounding=True, ratios=(0.3, 3.0), scales=(1.0,)), (3, 4, 5), 256),
    ],
)
def test_best_iou_on_nearest_cells_equals_the_best_over_all_anchors(cfg, levels, img):
    boxes = random_boxes(400, img, seed=img)
    full = pairwise_iou(boxes, all_anchors(cfg, levels, img)).amax(dim=1)  # (B, R) -> (B,)
    torch.testing.assert_close(best_anchor_iou(boxes, cfg, levels, img), full, atol=2e-6, rtol=0)


def test_best_iou_and_coverage_by_hand():
    # one 16 x 16 anchor per cell of P3 (stride 8, centres at 0, 8, 16, ...) on a 64 px input
    cfg = AnchorConfig(sizes=(16,), ratios=(1.0,), scales=(1.0,))
    boxes = torch.tensor([
        [8.0, 8.0, 24.0, 24.0],  # exactly the anchor at (16, 16): IoU 1
        [0.0, 0.0, 32.0, 32.0],  # centre (16, 16), 4x the anchor's area: 256 / 1024
        [4.0, 0.0, 20.0, 16.0],  # centre (12, 8) halfway between cells: 12 x 16 overlap, 192 / 320
    ])
    best = best_anchor_iou(boxes, cfg, (3,), 64)
    torch.testing.assert_close(best, torch.tensor([1.0, 0.25, 0.6]))
    # two boxes reach 0.5, plus the mean best IoU as the tie-break
    assert float(coverage_score(best, 0.5)) == pytest.approx(2 + (1.0 + 0.25 + 0.6) / 3)


def test_kmeans_ratios_find_the_two_shapes():
    wide = torch.tensor([[40.0, 20.0]]).repeat(30, 1) * torch.linspace(0.8, 1.2, 30)[:, None]
    tall = torch.tensor([[10.0, 20.0]]).repeat(20, 1) * torch.linspace(0.8, 1.2, 20)[:, None]
    assert kmeans_ratios(torch.cat((wide, tall)), 2) == pytest.approx([0.5, 2.0])


def test_search_covers_tall_boxes_the_current_anchors_miss():
    boxes = tall_boxes(600, seed=0)
    current = AnchorConfig(sizes=(64, 128, 256))  # smallest anchor 64 px: a 20 x 60 box reaches IoU 0.29 at best
    levels = (3, 4, 5)
    assert float((best_anchor_iou(boxes, current, levels, 256) >= 0.5).float().mean()) == 0.0
    found = search_anchors(boxes, current, levels, 256, generations=60)
    assert float((best_anchor_iou(boxes, found, levels, 256) >= 0.5).float().mean()) >= 0.99
    assert min(abs(r - 3.0) for r in found.ratios) < 0.5
    assert found.num_anchors == current.num_anchors and len(found.sizes) == 3
    assert search_anchors(boxes, current, levels, 256, generations=60) == found  # seeded: the same answer again


def test_search_can_change_the_anchors_per_location_when_asked():
    found = search_anchors(tall_boxes(200, seed=1), AnchorConfig(sizes=(64, 128, 256)), (3, 4, 5), 256,
                           num_ratios=1, num_scales=2, generations=20)
    assert len(found.ratios) == 1 and len(found.scales) == 2
    assert found.ratios[0] == pytest.approx(3.0, abs=0.3)


def test_search_keeps_anchors_that_already_fit_every_box_exactly():
    current = AnchorConfig()
    boxes = all_anchors(current, (3, 4, 5), 128)[::37]  # boxes that are anchors: best IoU 1 each
    assert search_anchors(boxes, current, (3, 4, 5), 128, generations=20) is current
