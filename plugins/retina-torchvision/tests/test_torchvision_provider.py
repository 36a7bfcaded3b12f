"""The torchvision provider against torchvision's own models, numerically."""

from __future__ import annotations

import pytest
import torch
import torchvision

from retina_cli import plugins
from retina_cli.config import ModelConfig
from retina_cli.model.retinanet import RetinaNet
from retina_torchvision import SPECS, TorchvisionFeatures, provider


def _twin(name: str) -> tuple[TorchvisionFeatures, torch.nn.Module]:
    """A backbone and a torchvision classifier with the same (random) weights, both in eval mode."""
    torch.manual_seed(0)
    ref = torchvision.models.get_model(name).eval()
    backbone = provider.create(name).eval()
    # names are torchvision's, so the classifier's state dict loads by name (minus the classifier)
    missing, unexpected = backbone.body.load_state_dict(ref.state_dict(), strict=False)
    assert missing == []
    assert set(k.split(".")[0] for k in unexpected) <= {"fc", "classifier"}
    return backbone, ref


def _resnet_maps(m: torch.nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    c1 = m.relu(m.bn1(m.conv1(x)))
    c2 = m.layer1(m.maxpool(c1))
    c3 = m.layer2(c2)
    c4 = m.layer3(c3)
    return [c1, c2, c3, c4, m.layer4(c4)]


def _mobilenet_maps(m: torch.nn.Module, x: torch.Tensor, nodes: tuple[str, ...]) -> list[torch.Tensor]:
    wanted = {int(n.split(".")[1]) for n in nodes}
    maps = []
    for i, block in enumerate(m.features):
        x = block(x)
        if i in wanted:
            maps.append(x)
    return maps


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v2", "mobilenet_v3_large"])
def test_maps_equal_torchvision_trunk(name: str) -> None:
    backbone, ref = _twin(name)
    x = torch.randn(2, 3, 96, 128)
    with torch.no_grad():
        got = backbone(x)
        want = _resnet_maps(ref, x) if name.startswith("resnet") else _mobilenet_maps(ref, x, SPECS[name][0])
        trunk = ref.features(x) if hasattr(ref, "features") else _resnet_maps(ref, x)[-1]
    assert len(got) == len(want) == 5
    for g, w, c, s in zip(got, want, backbone.channels, backbone.strides):
        assert g.shape == (2, c, 96 // s, 128 // s)
        torch.testing.assert_close(g, w, rtol=0, atol=1e-6)
    # C5 is the whole classification trunk: the classifier's pooled logits follow from it
    torch.testing.assert_close(got[-1], trunk, rtol=0, atol=1e-6)


@pytest.mark.parametrize("name", sorted(SPECS))
def test_declared_channels_and_strides(name: str) -> None:
    backbone = provider.create(name).eval()
    with torch.no_grad():
        maps = backbone(torch.zeros(1, 3, 64, 64))
    assert [m.shape[1] for m in maps] == backbone.channels == list(SPECS[name][1])
    assert [64 // m.shape[-1] for m in maps] == backbone.strides == [2, 4, 8, 16, 32]


def test_discovered_through_entry_point() -> None:
    entry = plugins.discover()["torchvision"]
    assert entry.distribution == "retina-torchvision"
    assert entry.value == "retina_torchvision:provider"
    assert plugins.load_provider("torchvision") is provider
    assert provider.list_backbones("mobilenet*") == ["mobilenet_v2", "mobilenet_v3_large"]
    assert provider.list_backbones("resnet1") == ["resnet101", "resnet18"]
    assert provider.normalization("resnet50") == ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


def test_retinanet_builds_on_torchvision_backbone() -> None:
    cfg = ModelConfig(num_classes=3, provider="torchvision", backbone="resnet18", img_size=128,
                      fpn_channels=32, head_width=32, head_depth=1)
    model = RetinaNet(cfg).eval()
    assert isinstance(model.backbone, TorchvisionFeatures)
    assert model.feature_indices == [2, 3, 4]  # strides 8, 16, 32 feed P3-P5
    with torch.no_grad():
        logits, deltas = model(torch.randn(1, 3, 128, 128))
    assert [tuple(t.shape) for t in logits] == [(1, 27, 128 // 2**lvl, 128 // 2**lvl) for lvl in range(3, 8)]
    assert [t.shape[1] for t in deltas] == [36] * 5


def test_torchvision_checkpoint_loads_by_name(tmp_path) -> None:
    from retina_cli.model.weights import load_retinanet_backbone_weights

    torch.manual_seed(1)
    ref = torchvision.models.mobilenet_v2().eval()
    path = tmp_path / "mobilenet_v2.pth"
    torch.save(ref.state_dict(), path)
    cfg = ModelConfig(num_classes=2, provider="torchvision", backbone="mobilenet_v2", img_size=128,
                      fpn_channels=32, head_width=32, head_depth=1)
    model = RetinaNet(cfg).eval()
    report = load_retinanet_backbone_weights(model, path)
    assert (report.by_name, report.by_order) == (260, 0)
    assert report.unused == ("classifier.1.weight", "classifier.1.bias")
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model.backbone(x)[-1], ref.features(x), rtol=0, atol=0)
