"""Encode/decode: round trips and equality with torchvision's BoxCoder(weights=(1, 1, 1, 1))."""

import math

import torch
from torchvision.models.detection._utils import BoxCoder

from retina_cli.boxes import coder


def test_encode_hand_computed():
    anchor = torch.tensor([[0.0, 0.0, 10.0, 20.0]])  # centre (5, 10), 10 x 20
    box = torch.tensor([[2.0, 4.0, 22.0, 24.0]])  # centre (12, 14), 20 x 20
    expected = torch.tensor([[0.7, 0.2, math.log(2.0), 0.0]])
    torch.testing.assert_close(coder.encode(box, anchor), expected)


def test_encode_decode_round_trip(random_boxes):
    gen = torch.Generator().manual_seed(0)
    boxes = random_boxes(200, gen).reshape(2, 100, 4)
    anchors = random_boxes(100, gen)
    deltas = coder.encode(boxes, anchors)  # anchors broadcast over the batch
    torch.testing.assert_close(coder.decode(deltas, anchors), boxes, rtol=0, atol=1e-4)


def test_encode_decode_equal_torchvision(random_boxes):
    gen = torch.Generator().manual_seed(2)
    boxes = random_boxes(500, gen, size=600)
    anchors = random_boxes(500, gen, size=600)
    tv = BoxCoder(weights=(1.0, 1.0, 1.0, 1.0))
    torch.testing.assert_close(coder.encode(boxes, anchors), tv.encode_single(boxes, anchors), rtol=0, atol=1e-6)
    deltas = torch.randn(500, 4, generator=gen) * 2  # some dw/dh beyond the clamp
    deltas[:5, 2:] = 10.0
    torch.testing.assert_close(coder.decode(deltas, anchors), tv.decode_single(deltas, anchors), rtol=0, atol=0)


def test_decode_clamps_scale():
    anchor = torch.tensor([[0.0, 0.0, 16.0, 16.0]])
    huge = coder.decode(torch.tensor([[0.0, 0.0, 50.0, 50.0]]), anchor)
    torch.testing.assert_close(huge, torch.tensor([[-492.0, -492.0, 508.0, 508.0]]))  # 16 * 1000 / 16 wide
