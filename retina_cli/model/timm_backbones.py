"""The built-in backbone provider: any timm model with ``features_only`` support.

Registered through the ``retina_cli.backbones`` entry point in pyproject.toml, like any plugin.
"""

from __future__ import annotations


import timm
from torch import Tensor, nn

from retina_cli.plugins import filter_names


class TimmFeatures(nn.Module):
    """A timm ``features_only`` model with ``channels`` and ``strides`` of the maps it returns."""

    def __init__(self, name: str, pretrained: bool = False) -> None:
        super().__init__()
        self.body = timm.create_model(name, pretrained=pretrained, features_only=True)
        self.channels: list[int] = list(self.body.feature_info.channels())
        self.strides: list[int] = list(self.body.feature_info.reduction())

    def forward(self, x: Tensor) -> list[Tensor]:
        return list(self.body(x))


class TimmProvider:
    name = "timm"

    def list_backbones(self, pattern: str | None = None) -> list[str]:
        return filter_names(timm.list_models(), pattern)

    def create(self, name: str, pretrained: bool = False) -> nn.Module:
        return TimmFeatures(name, pretrained=pretrained)

    def normalization(self, name: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
        cfg = timm.models.get_pretrained_cfg(name) if hasattr(timm.models, "get_pretrained_cfg") else None
        mean = getattr(cfg, "mean", None) or (0.485, 0.456, 0.406)
        std = getattr(cfg, "std", None) or (0.229, 0.224, 0.225)
        return tuple(float(m) for m in mean), tuple(float(s) for s in std)

    def weights_module(self, backbone: nn.Module) -> nn.Module:
        """The module whose state dict a classification checkpoint maps onto."""
        return backbone.body


provider = TimmProvider()
