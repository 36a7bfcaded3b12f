"""prepare_inference: BatchNorm folded, wide 3x3 convs as Winograd on CPU, same detections."""

import copy

import torch
from helpers import POST, make_model
from torch import nn

from retina_cli.config import ModelConfig
from retina_cli.engine.detector import InferenceModel, prepare_inference
from retina_cli.model.retinanet import RetinaNet
from retina_cli.speed.winograd import WinogradConv2d


def _count(model: nn.Module, kind: type) -> int:
    return sum(isinstance(m, kind) for m in model.modules())


def test_prepared_model_gives_the_same_detections():
    torch.manual_seed(0)
    cfg = ModelConfig(num_classes=3, class_names=("a", "b", "c"), backbone="resnet18", img_size=128,
                      fpn_channels=128, head_width=128, head_depth=2, min_level=3, max_level=5)
    model = RetinaNet(cfg).eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.1), m.running_var.uniform_(0.5, 1.5)
        model.head.cls_logits.weight.normal_(0, 0.05)
        model.head.cls_logits.bias.fill_(0.0)
    ref = InferenceModel(copy.deepcopy(model), POST).eval()
    fast = InferenceModel(prepare_inference(model, torch.device("cpu")), POST)
    assert _count(fast, nn.BatchNorm2d) == 0
    # 128-channel 3x3 convs: 2 + 2 head tower convs, 3 FPN outputs, resnet18's layer2-4 stride-1 convs
    assert _count(fast, WinogradConv2d) >= 7
    images = torch.rand(2, 3, 128, 128) * 255
    a, b = ref(images), fast(images.contiguous(memory_format=torch.channels_last))
    for da, db in zip(a, b):
        assert len(da.scores) > 10 and len(da.scores) == len(db.scores)
        torch.testing.assert_close(db.boxes, da.boxes, atol=1e-3, rtol=0)
        torch.testing.assert_close(db.scores, da.scores, atol=1e-5, rtol=0)
        assert torch.equal(db.labels, da.labels)


def test_no_winograd_off_cpu_fp32_or_when_asked():
    for kwargs in (dict(winograd=False), dict(precision="bf16")):
        model = prepare_inference(make_model(), torch.device("cpu"), **kwargs)
        assert _count(model, WinogradConv2d) == 0


def test_group_norm_with_one_channel_per_group_is_prepared():
    """32 GroupNorm groups over a 32-wide head: the probe input that finds conv-BN pairs must not
    shrink the top level to 1x1 (a single value per group, which GroupNorm refuses)."""
    torch.manual_seed(0)
    cfg = ModelConfig(num_classes=2, class_names=("a", "b"), backbone="resnet18", img_size=64, fpn_channels=32,
                      head_width=32, head_depth=1, head_norm="gn", min_level=3, max_level=6)
    model = RetinaNet(cfg).eval()
    images = torch.rand(1, 3, 128, 128) * 255
    ref = InferenceModel(copy.deepcopy(model), POST).eval().model(images)
    fast = prepare_inference(model, torch.device("cpu"))
    assert _count(fast, nn.BatchNorm2d) == 0  # the backbone's BatchNorms were folded
    out = fast(images.contiguous(memory_format=torch.channels_last))
    for a, b in zip(ref[0] + ref[1], out[0] + out[1]):
        torch.testing.assert_close(b, a, atol=1e-4, rtol=1e-4)
