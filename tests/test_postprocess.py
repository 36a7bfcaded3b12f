"""Batched post-processing equals torchvision's RetinaNet.postprocess_detections."""

import torch
from torch import nn
from torchvision.models.detection.retinanet import RetinaNet as TVRetinaNet

from retina_cli.boxes.anchors import feature_sizes_for, generate_anchors
from retina_cli.config import AnchorConfig, PostprocessConfig
from retina_cli.postprocess import postprocess

LEVELS = (3, 4, 5, 6, 7)


def _random_outputs(num_images: int, size: int, num_classes: int, seed: int):
    gen = torch.Generator().manual_seed(seed)
    sizes = feature_sizes_for(size, size, LEVELS)
    anchors = generate_anchors(AnchorConfig(rounding=True), LEVELS, sizes)
    # logits around -3: a few percent of the (anchor, class) pairs score above 0.05
    logits = [torch.randn(num_images, a.shape[0], num_classes, generator=gen) * 1.5 - 5.0 for a in anchors]
    deltas = [torch.randn(num_images, a.shape[0], 4, generator=gen) * 0.3 for a in anchors]
    return logits, deltas, anchors


def _torchvision_postprocess(logits, deltas, anchors, size, cfg: PostprocessConfig):
    backbone = nn.Identity()
    backbone.out_channels = 8
    tv = TVRetinaNet(
        backbone, logits[0].shape[-1], score_thresh=cfg.score_thresh, nms_thresh=cfg.nms_thresh,
        detections_per_img=cfg.max_det, topk_candidates=cfg.topk,
    )
    n = logits[0].shape[0]
    head_outputs = {"cls_logits": logits, "bbox_regression": deltas}
    return tv.postprocess_detections(head_outputs, [anchors] * n, [(size, size)] * n)


def test_postprocess_equals_torchvision():
    size, cfg = 256, PostprocessConfig()
    logits, deltas, anchors = _random_outputs(2, size, 3, seed=0)
    ours = postprocess(logits, deltas, anchors, (size, size), cfg)
    tv = _torchvision_postprocess(logits, deltas, anchors, size, cfg)
    for det, ref in zip(ours, tv):
        assert 100 < det.scores.numel() <= cfg.max_det
        assert torch.equal(det.labels, ref["labels"])
        torch.testing.assert_close(det.scores, ref["scores"], rtol=0, atol=1e-7)
        torch.testing.assert_close(det.boxes, ref["boxes"], rtol=0, atol=1e-4)
    assert ours[0].scores.numel() != 0 and not torch.equal(ours[0].boxes[:5], ours[1].boxes[:5])


def test_postprocess_topk_and_cap_equal_torchvision():
    # a small top-k per level and a small cap both bind: the kept set must still be torchvision's
    size, cfg = 256, PostprocessConfig(topk=50, max_det=40, score_thresh=0.02, nms_thresh=0.4)
    logits, deltas, anchors = _random_outputs(2, size, 2, seed=1)
    ours = postprocess(logits, deltas, anchors, (size, size), cfg)
    tv = _torchvision_postprocess(logits, deltas, anchors, size, cfg)
    for det, ref in zip(ours, tv):
        assert det.scores.numel() == cfg.max_det
        assert torch.equal(det.labels, ref["labels"])
        torch.testing.assert_close(det.scores, ref["scores"], rtol=0, atol=1e-7)
        torch.testing.assert_close(det.boxes, ref["boxes"], rtol=0, atol=1e-4)
