"""Config dict round trips, checkpoint round trip, and refusal of pickled code."""

import pytest
import torch

from retina_cli.config import AnchorConfig, LossConfig, ModelConfig, PostprocessConfig, from_dict, to_dict
from retina_cli.engine.checkpoint import load_checkpoint, model_from_checkpoint, save_checkpoint
from retina_cli.errors import CheckpointError, ConfigError
from retina_cli.model.retinanet import RetinaNet

TINY = dict(
    num_classes=2, class_names=("cell", "platelet"), backbone="resnet18", min_level=3, max_level=5,
    fpn_channels=32, head_depth=1, head_width=32, img_size=64,
)


@pytest.mark.parametrize(
    "cfg",
    [
        ModelConfig(
            **TINY, anchors=AnchorConfig(sizes=(24.0, 48.0, 96.0), ratios=(1.0, 2.0), offset=0.5, rounding=True)
        ),
        ModelConfig(num_classes=91),
        LossConfig(gamma=1.5, alpha=-1.0, box_loss="giou", low_quality_matches=False),
        PostprocessConfig(score_thresh=0.3, topk=10, max_det=7),
    ],
)
def test_dict_round_trip(cfg):
    data = to_dict(cfg)
    assert from_dict(type(cfg), data) == cfg
    assert all(not isinstance(v, tuple) for v in data.values())  # plain lists, fit for YAML/JSON
    if isinstance(cfg, ModelConfig):
        assert isinstance(data["anchors"], dict)


def test_from_dict_rejects_unknown_fields():
    with pytest.raises(ConfigError, match="bogus"):
        from_dict(LossConfig, {"bogus": 1})


def test_checkpoint_round_trip(tmp_path):
    torch.manual_seed(0)
    model = RetinaNet(ModelConfig(**TINY)).eval()
    path = tmp_path / "tiny.pt"
    save_checkpoint(path, model, LossConfig(gamma=1.0), PostprocessConfig(max_det=5), epoch=3)
    rebuilt, ckpt = model_from_checkpoint(path)
    assert rebuilt.cfg == model.cfg and ckpt["epoch"] == 3
    assert from_dict(PostprocessConfig, ckpt["postprocess_config"]).max_det == 5
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        for a, b in zip(sum(model(x), []), sum(rebuilt(x), [])):
            assert torch.equal(a, b)


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))  # unpickling would create the marker file


def test_malicious_pickle_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"format": "retina-cli/1", "model": _Evil(marker)}, path)
    with pytest.raises(CheckpointError, match="evil.pt"):
        load_checkpoint(path)
    assert not marker.exists()


def test_not_a_checkpoint(tmp_path):
    path = tmp_path / "plain.pth"
    torch.save({"conv.weight": torch.zeros(1)}, path)
    with pytest.raises(CheckpointError, match="retina convert"):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match="no such"):
        load_checkpoint(tmp_path / "missing.pt")
