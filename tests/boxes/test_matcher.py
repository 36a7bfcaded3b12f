"""Anchor labelling: hand-made thresholds cases and torchvision's Matcher on random boxes."""

import torch
from torchvision.models.detection._utils import Matcher
from torchvision.ops import box_iou

from retina_cli.boxes.anchors import feature_sizes_for, generate_anchors
from retina_cli.boxes.matcher import BACKGROUND, FOREGROUND, IGNORE, match_anchors
from retina_cli.config import AnchorConfig

ANCHORS = torch.tensor(
    [
        [0.0, 0.0, 10.0, 10.0],  # IoU 1.0 with G0
        [0.0, 0.0, 10.0, 8.0],  # 0.8 with G0
        [0.0, 0.0, 10.0, 4.5],  # 0.45 with G0: between thresholds
        [0.0, 0.0, 10.0, 3.0],  # 0.3 with G0: background
        [50.0, 50.0, 60.0, 60.0],  # 100 / 484 = 0.21 with G1, its best anchor
        [80.0, 80.0, 90.0, 90.0],  # overlaps nothing
    ]
)


def test_thresholds_low_quality_and_padding():
    gt = torch.tensor(
        [
            [[0.0, 0.0, 10.0, 10.0], [48.0, 48.0, 70.0, 70.0], [80.0, 80.0, 90.0, 90.0]],
            [[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]],
        ]
    )
    valid = torch.tensor([[True, True, False], [True, False, False]])  # [0, 2] is padding on anchor 5
    m = match_anchors(ANCHORS, gt, valid)
    fg, bg, ig = FOREGROUND, BACKGROUND, IGNORE
    assert m.state.tolist() == [[fg, fg, ig, bg, fg, bg], [fg, fg, ig, bg, bg, bg]]
    assert m.gt_index[0, [0, 1, 4]].tolist() == [0, 0, 1]
    assert m.gt_index[1, [0, 1]].tolist() == [0, 0]

    no_low = match_anchors(ANCHORS, gt, valid, low_quality=False)
    assert no_low.state[0].tolist() == [fg, fg, ig, bg, bg, bg]


def test_images_without_boxes_are_all_background():
    m = match_anchors(ANCHORS, torch.zeros(2, 0, 4), torch.zeros(2, 0, dtype=torch.bool))
    assert (m.state == BACKGROUND).all()
    padded_only = match_anchors(ANCHORS, torch.zeros(1, 2, 4), torch.zeros(1, 2, dtype=torch.bool))
    assert (padded_only.state == BACKGROUND).all()


def test_ignored_gt_makes_its_anchors_ignore():
    gt = torch.tensor([[[0.0, 0.0, 10.0, 10.0], [48.0, 48.0, 70.0, 70.0]]])
    valid = torch.ones(1, 2, dtype=torch.bool)
    m = match_anchors(ANCHORS, gt, valid, gt_ignore=torch.tensor([[True, False]]))
    # anchors 0-2 overlap the ignored box >= 0.4; anchor 3 (0.3) is plain background
    assert m.state[0].tolist() == [IGNORE, IGNORE, IGNORE, BACKGROUND, FOREGROUND, BACKGROUND]
    # a low-quality match (IoU 0.21) to an ignored box is not trained as foreground either
    m = match_anchors(ANCHORS, gt, valid, gt_ignore=torch.tensor([[False, True]]))
    assert m.state[0].tolist() == [FOREGROUND, FOREGROUND, IGNORE, BACKGROUND, IGNORE, BACKGROUND]


def test_batched_equals_torchvision_matcher_per_image():
    gen = torch.Generator().manual_seed(0)
    levels = (3, 4, 5)
    anchors = torch.cat(generate_anchors(AnchorConfig(), levels, feature_sizes_for(128, 128, levels)))
    counts = [5, 1, 12, 8]
    g = max(counts)
    gt = torch.zeros(len(counts), g, 4)
    valid = torch.zeros(len(counts), g, dtype=torch.bool)
    for i, c in enumerate(counts):
        xy = torch.rand(c, 2, generator=gen) * 100
        wh = torch.rand(c, 2, generator=gen) * 60 + 4
        gt[i, :c] = torch.cat((xy, (xy + wh).clamp(max=128)), dim=1)
        valid[i, :c] = True
    m = match_anchors(anchors, gt, valid)
    tv_matcher = Matcher(0.5, 0.4, allow_low_quality_matches=True)
    total_fg = 0
    for i, c in enumerate(counts):
        tv = tv_matcher(box_iou(gt[i, :c], anchors))
        state = m.state[i]
        assert torch.equal(state == FOREGROUND, tv >= 0)
        assert torch.equal(state == BACKGROUND, tv == Matcher.BELOW_LOW_THRESHOLD)
        assert torch.equal(state == IGNORE, tv == Matcher.BETWEEN_THRESHOLDS)
        fg = tv >= 0
        assert torch.equal(m.gt_index[i][fg], tv[fg])
        total_fg += int(fg.sum())
    assert total_fg > 20


def test_gt_that_overlaps_no_anchor_gets_no_low_quality_match():
    # intended difference: torchvision's Matcher treats every zero-IoU anchor as the "best" one of
    # such a GT and turns them all into foreground; we keep them background
    gt = torch.tensor([[[200.0, 200.0, 210.0, 210.0]]])
    m = match_anchors(ANCHORS, gt, torch.ones(1, 1, dtype=torch.bool))
    assert (m.state == BACKGROUND).all()
    tv = Matcher(0.5, 0.4, allow_low_quality_matches=True)(box_iou(gt[0], ANCHORS))
    assert (tv >= 0).all()
