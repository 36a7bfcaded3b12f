"""torchvision ResNet and MobileNet backbones for retina-cli.

Registered as the ``torchvision`` provider of the ``retina_cli.backbones`` entry-point group. The
feature extractor is torchvision's own model traced with ``create_feature_extractor``, so it keeps
torchvision's parameter names and a torchvision classification checkpoint loads into it by name.
"""

from __future__ import annotations


import torchvision
from torch import Tensor, nn
from torchvision.models.feature_extraction import create_feature_extractor

from retina_cli.plugins import filter_names

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

_RESNET_NODES = ("relu", "layer1", "layer2", "layer3", "layer4")
_STRIDES = (2, 4, 8, 16, 32)

# name -> (graph nodes returned, their channels); each node is the last one at its stride, and the
# stride-32 node ends the classification trunk (the MobileNets' last 1x1 conv included)
SPECS: dict[str, tuple[tuple[str, ...], tuple[int, ...]]] = {
    "resnet18": (_RESNET_NODES, (64, 64, 128, 256, 512)),
    "resnet34": (_RESNET_NODES, (64, 64, 128, 256, 512)),
    "resnet50": (_RESNET_NODES, (64, 256, 512, 1024, 2048)),
    "resnet101": (_RESNET_NODES, (64, 256, 512, 1024, 2048)),
    "mobilenet_v2": (("features.1", "features.3", "features.6", "features.13", "features.18"), (16, 24, 32, 96, 1280)),
    "mobilenet_v3_large": (
        ("features.1", "features.3", "features.6", "features.12", "features.16"),
        (16, 24, 40, 112, 960),
    ),
}


class TorchvisionFeatures(nn.Module):
    """A torchvision classifier's trunk returning the maps at strides 2, 4, 8, 16 and 32.

    ``forward``: images ``(N, 3, H, W)`` -> ``[(N, channels[i], H / strides[i], W / strides[i])]``.
    """

    def __init__(self, name: str, pretrained: bool = False) -> None:
        super().__init__()
        nodes, channels = SPECS[name]
        # pretrained goes through torchvision's weights enum (downloads on first use)
        model = torchvision.models.get_model(name, weights="DEFAULT" if pretrained else None)
        self.body = create_feature_extractor(model, return_nodes=list(nodes))
        self.nodes = nodes
        self.channels: list[int] = list(channels)
        self.strides: list[int] = list(_STRIDES)

    def forward(self, x: Tensor) -> list[Tensor]:
        out = self.body(x)
        return [out[n] for n in self.nodes]


class TorchvisionProvider:
    name = "torchvision"

    def list_backbones(self, pattern: str | None = None) -> list[str]:
        return filter_names(sorted(SPECS), pattern)

    def create(self, name: str, pretrained: bool = False) -> nn.Module:
        return TorchvisionFeatures(name, pretrained=pretrained)

    def normalization(self, name: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
        return IMAGENET_MEAN, IMAGENET_STD

    def weights_module(self, backbone: nn.Module) -> nn.Module:
        """The traced trunk: its state dict has torchvision's names (the classifier is dropped)."""
        return backbone.body


provider = TorchvisionProvider()
