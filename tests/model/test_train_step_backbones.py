"""One training step on CPU with each backbone family the issue names: the step lowers the loss
on the same batch (the gradient really reaches every part of the network)."""

import pytest
import torch

from retina_cli.config import LossConfig, ModelConfig
from retina_cli.data.batch import pad_targets
from retina_cli.engine.detector import TrainingModel
from retina_cli.model.retinanet import RetinaNet


@pytest.mark.parametrize("backbone", ["resnet18", "tf_efficientnet_lite0", "mobilenetv2_100"])
def test_one_sgd_step_lowers_the_loss(backbone):
    torch.manual_seed(0)
    cfg = ModelConfig(num_classes=2, backbone=backbone, img_size=128, min_level=3, max_level=5,
                      fpn_channels=32, head_width=32, head_depth=2)
    model = RetinaNet(cfg).train()
    tm = TrainingModel(model, LossConfig())
    images = torch.rand(2, 3, 128, 128) * 255
    targets = pad_targets([torch.tensor([[10.0, 20, 60, 90], [70, 70, 120, 110]]), torch.tensor([[30.0, 30, 100, 100]])],
                          [torch.tensor([0, 1]), torch.tensor([1])])
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.0)
    first = tm(images, targets)
    assert first["num_fg"] > 0
    opt.zero_grad()
    first["loss"].backward()
    for name, p in (("backbone", next(model.backbone.parameters())), ("fpn", model.fpn.lateral[0].weight),
                    ("cls", model.head.cls_logits.weight), ("box", model.head.box_deltas.weight)):
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    opt.step()
    with torch.no_grad():  # still in train mode: BN normalises with the batch's statistics, as before
        after = tm(images, targets)["loss"]
    assert after < first["loss"].detach()
