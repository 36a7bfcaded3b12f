"""pairwise_ios (intersection over the smaller box) by hand-computed numbers; pairwise_iou still torchvision's."""

import torch
from torchvision.ops import box_iou

from retina_cli.boxes.ops import pairwise_intersection, pairwise_ios, pairwise_iou


def test_ios_by_hand():
    a = torch.tensor([[0.0, 0, 10, 10], [0, 0, 2, 2]])
    b = torch.tensor([[5.0, 5, 15, 15], [0, 0, 4, 4], [5, 0, 25, 10], [20, 20, 20, 30]])
    # a0-b0: 5x5 = 25 over min(100, 100); a0-b1: 16 over min(100, 16) (b1 inside a0); a0-b2: 50 over
    # min(100, 200); b3 has no area; a1-b1: a1 (4) inside b1 (16)
    expected = torch.tensor([[0.25, 1.0, 0.5, 0.0], [0.0, 1.0, 0.0, 0.0]])
    assert torch.equal(pairwise_ios(a, b), expected)
    assert torch.equal(pairwise_ios(b, a), expected.T)
    assert torch.equal(pairwise_intersection(a, b), torch.tensor([[25.0, 16, 50, 0], [0, 4, 0, 0]]))


def test_ios_broadcasts_leading_dimensions_and_iou_is_unchanged():
    g = torch.Generator().manual_seed(0)
    xy = torch.rand(2, 7, 2, generator=g) * 50
    boxes = torch.cat([xy, xy + 1 + torch.rand(2, 7, 2, generator=g) * 30], dim=-1)  # (2, 7, 4)
    batched = pairwise_ios(boxes, boxes[0])  # (2, 7, 7)
    assert batched.shape == (2, 7, 7) and torch.equal(batched[1], pairwise_ios(boxes[1], boxes[0]))
    assert torch.allclose(torch.diagonal(batched[0]), torch.ones(7))
    assert torch.allclose(pairwise_iou(boxes[0], boxes[1]), box_iou(boxes[0], boxes[1]), atol=1e-6)
    assert (pairwise_ios(boxes[0], boxes[1]) >= pairwise_iou(boxes[0], boxes[1])).all()
