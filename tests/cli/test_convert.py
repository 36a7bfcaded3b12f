"""`retina convert`: containers, key layouts, config written, eps folding, v2, user errors.

End-to-end detection parity lives in tests/model/test_parity_torchvision.py.
"""

import re

import pytest
import torch
import torch.nn.functional as F
from torchvision.models.detection import retinanet_resnet50_fpn, retinanet_resnet50_fpn_v2

from retina_cli.cli.app import main
from retina_cli.config import IMAGENET_MEAN, IMAGENET_STD, AnchorConfig
from retina_cli.engine.checkpoint import configs_from_checkpoint, load_checkpoint, model_from_checkpoint
from retina_cli.engine.convert import coco_class_names, convert_torchvision, torchvision_to_retina
from retina_cli.errors import CheckpointError
from retina_cli.model.head import concat_levels


@pytest.fixture(scope="module")
def coco_state():
    torch.manual_seed(0)
    return retinanet_resnet50_fpn(weights=None, weights_backbone=None).state_dict()  # 91 classes


@pytest.fixture(scope="module")
def coco_file(tmp_path_factory, coco_state):
    path = tmp_path_factory.mktemp("tv") / "tv.pth"
    torch.save(coco_state, path)
    return path


def test_convert_checkpoint_container(tmp_path, coco_state, capsys):
    src, dst = tmp_path / "tv.pth", tmp_path / "out.pt"
    torch.save({"model": coco_state, "epoch": 26}, src)  # a torchvision training-script checkpoint
    main(["convert", str(src), str(dst), "--img-size", "512", "--num-classes", "91"])
    assert "wrote" in capsys.readouterr().out
    model_cfg, loss_cfg, post_cfg = configs_from_checkpoint(load_checkpoint(dst))
    assert model_cfg.class_names == coco_class_names() and len(model_cfg.class_names) == 91
    assert model_cfg.class_names[1] == "person"
    wiring = (model_cfg.backbone, model_cfg.provider, model_cfg.p6_from, model_cfg.head_norm)
    assert wiring == ("resnet50", "timm", "p5", "none")
    assert (model_cfg.min_level, model_cfg.max_level, model_cfg.img_size) == (3, 7, 512)
    assert model_cfg.anchors == AnchorConfig(rounding=True)
    assert (model_cfg.mean, model_cfg.std) == (IMAGENET_MEAN, IMAGENET_STD)
    assert loss_cfg.box_loss == "l1"
    assert (post_cfg.score_thresh, post_cfg.nms_thresh, post_cfg.topk, post_cfg.max_det) == (0.05, 0.5, 1000, 300)
    model, _ = model_from_checkpoint(dst)
    ours = model.state_dict()
    pairs = {
        "backbone.body.layer4.2.conv3.weight": "backbone.body.layer4.2.conv3.weight",
        "fpn.lateral.2.weight": "backbone.fpn.inner_blocks.2.0.weight",
        "fpn.output.0.bias": "backbone.fpn.layer_blocks.0.0.bias",
        "fpn.extra.1.weight": "backbone.fpn.extra_blocks.p7.weight",
        "head.cls_tower.6.weight": "head.classification_head.conv.3.0.weight",
        "head.box_tower.2.bias": "head.regression_head.conv.1.0.bias",
        "head.cls_logits.bias": "head.classification_head.cls_logits.bias",
        "head.box_deltas.weight": "head.regression_head.bbox_reg.weight",
    }
    for mine, theirs in pairs.items():
        assert torch.equal(ours[mine], coco_state[theirs]), mine


def test_old_key_layout_converts_the_same(coco_state):
    # checkpoints from torchvision < 0.13 name head convs conv.{2i} and FPN convs inner_blocks.{i}
    old = {}
    for k, v in coco_state.items():
        k = re.sub(r"(inner|layer)_blocks\.(\d)\.0\.", r"\1_blocks.\2.", k)
        k = re.sub(r"_head\.conv\.(\d)\.0\.", lambda m: f"_head.conv.{2 * int(m[1])}.", k)
        old[k] = v
    assert "head.classification_head.conv.6.weight" in old and "backbone.fpn.inner_blocks.1.weight" in old
    a, _ = torchvision_to_retina(old)
    b, _ = torchvision_to_retina(coco_state)
    assert a.cfg == b.cfg
    sa, sb = a.state_dict(), b.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sb)


def test_bn_eps_is_folded_into_running_var(coco_state):
    # the published COCO_V1 weights run their frozen batch norms with eps 0; timm's use 1e-5
    state = dict(coco_state)
    state["backbone.body.bn1.running_var"] = torch.linspace(1e-5, 1e-3, 64)
    state["backbone.body.bn1.weight"] = torch.rand(64) + 0.5
    model, _ = torchvision_to_retina(state, bn_eps=0.0)
    bn = model.backbone.body.bn1
    x = torch.randn(2, 64, 4, 4)
    expected = F.batch_norm(
        x, state["backbone.body.bn1.running_mean"], state["backbone.body.bn1.running_var"],
        state["backbone.body.bn1.weight"], state["backbone.body.bn1.bias"], eps=0.0,
    )
    torch.testing.assert_close(bn(x), expected, rtol=1e-5, atol=1e-5)
    unfolded = F.batch_norm(x, bn.running_mean, state["backbone.body.bn1.running_var"], bn.weight, bn.bias, eps=1e-5)
    assert not torch.allclose(unfolded, expected, rtol=1e-3)  # without folding the stem would differ


def test_v2_gives_torchvisions_head_outputs():
    torch.manual_seed(0)
    tv = retinanet_resnet50_fpn_v2(weights=None, weights_backbone=None, num_classes=2).eval()
    model, loss_cfg = torchvision_to_retina(tv.state_dict(), ("a", "b"))
    assert (model.cfg.p6_from, model.cfg.head_norm, loss_cfg.box_loss) == ("c5", "gn", "giou")
    x = torch.rand(1, 3, 128, 128)
    with torch.no_grad():
        ref = tv.head(list(tv.backbone(x).values()))
        cls_logits, box_deltas = concat_levels(*model(x), 2)
    torch.testing.assert_close(cls_logits, ref["cls_logits"], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(box_deltas, ref["bbox_regression"], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "args,message",
    [
        (["--num-classes", "3"], "--num-classes 3, but the classification head has 91 classes"),
        (["--classes", "a,b"], "--classes has 2 names"),
        (["--img-size", "600"], "multiple of 128"),
    ],
)
def test_user_errors_are_one_line(tmp_path, coco_file, capsys, args, message):
    with pytest.raises(SystemExit) as exc:
        main(["convert", str(coco_file), str(tmp_path / "out.pt"), *args])
    assert exc.value.code == 1
    err = " ".join(capsys.readouterr().err.split())
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "out.pt").exists()


def test_other_state_dicts_are_refused(tmp_path):
    src = tmp_path / "classifier.pth"
    torch.save({"conv1.weight": torch.zeros(64, 3, 7, 7), "fc.weight": torch.zeros(10, 64)}, src)
    with pytest.raises(CheckpointError, match="classifier.pth.*unexpected key 'conv1.weight'"):
        convert_torchvision(src, tmp_path / "out.pt")
