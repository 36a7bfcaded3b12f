"""Focal loss and the RetinaNet loss: hand-checked values and torchvision parity."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.detection.retinanet import RetinaNet as TVRetinaNet
from torchvision.models.detection.retinanet import RetinaNetHead
from torchvision.ops import sigmoid_focal_loss as tv_focal

from retina_cli.boxes.anchors import feature_sizes_for, generate_anchors
from retina_cli.config import AnchorConfig, LossConfig
from retina_cli.data.batch import pad_targets
from retina_cli.losses import retinanet_loss, sigmoid_focal_loss


@pytest.mark.parametrize("gamma,alpha", [(2.0, 0.25), (0.0, 0.25), (1.5, 0.5), (2.0, -1.0), (0.0, -1.0)])
def test_focal_equals_torchvision(gamma, alpha):
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(64, 5, generator=gen) * 3
    targets = (torch.rand(64, 5, generator=gen) < 0.2).float()
    expected = tv_focal(logits, targets, alpha=alpha, gamma=gamma, reduction="none")
    torch.testing.assert_close(sigmoid_focal_loss(logits, targets, gamma, alpha), expected, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("gamma", [0.5, 1.0, 2.0, 5.0])
def test_focal_gradients_stay_finite_on_saturated_logits(gamma):
    # |x| > ~17 makes 1 - sigmoid round to 0: torchvision's (1 - p_t) ** gamma then has an
    # infinite gradient for gamma < 1 (NaN training at gamma 0.5); ours must not
    logits = torch.tensor([-100.0, -30.0, -17.0, -1.0, 0.0, 1.0, 17.0, 30.0, 100.0]).repeat(2).requires_grad_()
    targets = torch.cat([torch.zeros(9), torch.ones(9)])
    loss = sigmoid_focal_loss(logits, targets, gamma=gamma, alpha=0.25)
    loss.sum().backward()
    assert torch.isfinite(loss).all() and torch.isfinite(logits.grad).all()
    # confident and right: no loss and no gradient to speak of; confident and wrong: a big loss
    assert loss[0] < 1e-6 and loss[-1] < 1e-6 and loss[8] > 50 and loss[9] > 20  # alpha: 0.75 x 100, 0.25 x 100
    expected = tv_focal(logits.detach()[3:6], targets[3:6], alpha=0.25, gamma=gamma, reduction="none")
    torch.testing.assert_close(loss.detach()[3:6], expected)


def test_focal_is_bce_at_gamma_0_without_alpha():
    gen = torch.Generator().manual_seed(1)
    logits = torch.randn(100, generator=gen) * 4
    targets = (torch.rand(100, generator=gen) < 0.5).float()
    bce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    torch.testing.assert_close(sigmoid_focal_loss(logits, targets, gamma=0.0, alpha=-1.0), bce)


ANCHORS = torch.tensor([[0.0, 0.0, 10.0, 10.0], [50.0, 50.0, 60.0, 60.0]])


def test_tiny_case_by_hand():
    # one foreground and one background anchor, K=1, logits 0 so p = 0.5 everywhere
    targets = pad_targets([torch.tensor([[0.0, 0.0, 10.0, 10.0]])], [torch.tensor([0])])
    deltas = torch.tensor([[[0.1, -0.2, 0.3, 0.0], [5.0, 5.0, 5.0, 5.0]]])  # background deltas do not count
    out = retinanet_loss(torch.zeros(1, 2, 1), deltas, ANCHORS, *targets[:3], LossConfig(), targets.ignore)
    fg = 0.25 * 0.5**2 * math.log(2)
    bg = 0.75 * 0.5**2 * math.log(2)
    assert out["num_fg"].item() == 1
    assert out["cls"].item() == pytest.approx(fg + bg, rel=1e-6)
    assert out["box"].item() == pytest.approx(0.6, rel=1e-6)  # L1 against zero deltas (anchor == box)
    assert out["loss"].item() == pytest.approx(fg + bg + 0.6, rel=1e-6)


def test_images_without_boxes_have_zero_box_loss():
    targets = pad_targets([torch.zeros(0, 4), torch.zeros(0, 4)], [torch.zeros(0, dtype=torch.int64)] * 2)
    logits = torch.randn(2, 2, 3)
    out = retinanet_loss(logits, torch.randn(2, 2, 4), ANCHORS, *targets[:3], LossConfig(), targets.ignore)
    assert out["box"].item() == 0.0
    assert out["num_fg"].item() == 0
    # every anchor is background; the normaliser is clamped to 1
    expected = sigmoid_focal_loss(logits, torch.zeros_like(logits)).sum()
    torch.testing.assert_close(out["cls"], expected)


def _torchvision_case(num_images: int, seed: int):
    """Head outputs of a tiny torchvision RetinaNetHead on random features, anchors and targets."""
    torch.manual_seed(seed)
    levels, num_classes, size = (3, 4, 5), 4, 128
    feats = [torch.randn(num_images, 8, h, w) for h, w in feature_sizes_for(size, size, levels)]
    head = RetinaNetHead(8, 9, num_classes)
    with torch.no_grad():
        head.classification_head.cls_logits.weight.normal_(std=0.3)
        head.regression_head.bbox_reg.weight.normal_(std=0.3)
        outputs = head(feats)  # {"cls_logits": (N, R, K), "bbox_regression": (N, R, 4)}
    anchors = torch.cat(generate_anchors(AnchorConfig(rounding=True), levels, feature_sizes_for(size, size, levels)))
    targets = []
    for i in range(num_images):
        n = 2 + 3 * i
        xy = torch.rand(n, 2) * 90
        boxes = torch.cat((xy, (xy + torch.rand(n, 2) * 50 + 12).clamp(max=size)), dim=1)
        targets.append({"boxes": boxes, "labels": torch.randint(0, num_classes, (n,))})
    backbone = nn.Identity()
    backbone.out_channels = 8
    tv_model = TVRetinaNet(backbone, num_classes, head=head)
    return tv_model, outputs, anchors, targets


def _ours(outputs, anchors, targets):
    batch = pad_targets([t["boxes"] for t in targets], [t["labels"] for t in targets])
    return retinanet_loss(
        outputs["cls_logits"], outputs["bbox_regression"], anchors, batch.boxes, batch.labels, batch.valid,
        LossConfig(),
    )


def test_loss_equals_torchvision_compute_loss_batch_of_one():
    tv_model, outputs, anchors, targets = _torchvision_case(1, seed=0)
    tv = tv_model.compute_loss(targets, outputs, [anchors])
    ours = _ours(outputs, anchors, targets)
    assert ours["num_fg"].item() > 10
    assert ours["cls"].item() > 0.1 and ours["box"].item() > 0.1
    torch.testing.assert_close(ours["cls"], tv["classification"], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(ours["box"], tv["bbox_regression"], rtol=1e-5, atol=1e-6)


def test_loss_normalisation_differs_from_torchvision_on_batches():
    # torchvision: mean over images of (image sum / image fg); ours: batch sum / batch fg, so every
    # foreground anchor weighs the same whatever image it is in (as in detectron2 and the paper)
    tv_model, outputs, anchors, targets = _torchvision_case(2, seed=1)
    ours = _ours(outputs, anchors, targets)
    per_image, fg_counts = [], []
    for i in range(2):
        one = {k: v[i : i + 1] for k, v in outputs.items()}
        tv = tv_model.compute_loss(targets[i : i + 1], one, [anchors])
        fg_counts.append(_ours(one, anchors, targets[i : i + 1])["num_fg"].item())
        per_image.append((tv["classification"], tv["bbox_regression"]))
    assert fg_counts[0] != fg_counts[1]
    total = sum(fg_counts)
    for j, name in enumerate(("cls", "box")):
        expected = sum(p[j] * c for p, c in zip(per_image, fg_counts)) / total
        torch.testing.assert_close(ours[name], expected, rtol=1e-5, atol=1e-6)
