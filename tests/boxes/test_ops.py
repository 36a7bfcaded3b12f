"""IoU, clip and format conversions against hand-computed numbers and torchvision.ops."""

import torch
from torchvision.ops import box_iou

from retina_cli.boxes.ops import box_area, clip_boxes, cxcywh_to_xyxy, pairwise_iou, xyxy_to_cxcywh


def test_pairwise_iou_hand_computed():
    a = torch.tensor([[0.0, 0.0, 10.0, 10.0], [5.0, 5.0, 15.0, 15.0]])
    b = torch.tensor([[0.0, 0.0, 10.0, 10.0], [5.0, 0.0, 15.0, 10.0], [20.0, 20.0, 30.0, 30.0], [0.0, 0.0, 5.0, 5.0]])
    expected = torch.tensor(
        [
            [1.0, 50 / 150, 0.0, 25 / 100],
            [25 / 175, 50 / 150, 0.0, 0.0],  # corner-touching boxes overlap with zero area
        ]
    )
    torch.testing.assert_close(pairwise_iou(a, b), expected)


def test_pairwise_iou_empty_union_is_zero():
    point = torch.tensor([[3.0, 3.0, 3.0, 3.0]])
    assert pairwise_iou(point, point).item() == 0.0
    assert box_area(torch.tensor([[5.0, 5.0, 2.0, 9.0]])).item() == 0.0  # degenerate, not negative


def test_pairwise_iou_equals_torchvision_and_broadcasts(random_boxes):
    gen = torch.Generator().manual_seed(0)
    batch = torch.stack([random_boxes(7, gen) for _ in range(3)])  # (3, 7, 4)
    anchors = random_boxes(50, gen)  # (50, 4)
    ours = pairwise_iou(batch, anchors)
    assert ours.shape == (3, 7, 50)
    for i in range(3):
        torch.testing.assert_close(ours[i], box_iou(batch[i], anchors), rtol=0, atol=1e-6)
    assert (ours > 0).float().mean() > 0.05  # the comparison is not all zeros


def test_clip_boxes():
    boxes = torch.tensor([[-5.0, -1.0, 50.0, 20.0], [10.0, 30.0, 12.0, 45.0]])
    expected = torch.tensor([[0.0, 0.0, 40.0, 20.0], [10.0, 30.0, 12.0, 30.0]])
    torch.testing.assert_close(clip_boxes(boxes, 30, 40), expected)
    torch.testing.assert_close(clip_boxes(boxes[None], 30, 40), expected[None])  # batched


def test_cxcywh_round_trip(random_boxes):
    boxes = torch.tensor([[1.0, 2.0, 5.0, 10.0]])
    torch.testing.assert_close(xyxy_to_cxcywh(boxes), torch.tensor([[3.0, 6.0, 4.0, 8.0]]))
    gen = torch.Generator().manual_seed(1)
    many = random_boxes(100, gen).reshape(4, 25, 4)
    torch.testing.assert_close(cxcywh_to_xyxy(xyxy_to_cxcywh(many)), many)


def test_pairwise_iou_in_place_steps_keep_gradients(random_boxes):
    """The intersection and union are formed in place on fresh tensors (memory): autograd still
    differentiates them, and the inputs are left as they were."""
    gen = torch.Generator().manual_seed(11)
    a = random_boxes(4, gen, size=10.0).double().requires_grad_()  # small: most pairs overlap
    b = random_boxes(5, gen, size=10.0).double().requires_grad_()
    before = (a.detach().clone(), b.detach().clone())
    assert torch.autograd.gradcheck(pairwise_iou, (a, b))
    assert torch.equal(a.detach(), before[0]) and torch.equal(b.detach(), before[1])
