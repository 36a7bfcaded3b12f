"""RetinaNet: backbone -> FPN -> shared head. ``forward`` returns raw per-level outputs only.

Anchor labelling, the loss and post-processing live in their own modules and are wrapped around
this network for training and inference (see :mod:`retina_cli.engine.detector`).
"""

from __future__ import annotations

from torch import Tensor, nn

from retina_cli.config import ModelConfig
from retina_cli.errors import ConfigError
from retina_cli.model.fpn import FPN
from retina_cli.model.head import RetinaHead
from retina_cli.plugins import create_backbone


def select_levels(strides: list[int], cfg: ModelConfig) -> tuple[list[int], int]:
    """Indices of the backbone maps that feed the FPN (by stride), and the number of extra levels.

    Backbone maps are used for levels ``min_level`` up to the deepest stride the backbone has (or
    ``max_level``); the levels above come from extra stride-2 convs.
    """
    by_stride = {s: i for i, s in enumerate(strides)}  # a repeated stride keeps its deepest map
    deepest = max(strides).bit_length() - 1
    top = min(cfg.max_level, deepest)
    missing = [lvl for lvl in range(cfg.min_level, top + 1) if 2**lvl not in by_stride]
    if cfg.min_level > deepest or missing:
        raise ConfigError(
            f"backbone {cfg.backbone!r} has feature strides {sorted(set(strides))}; FPN levels "
            f"P{cfg.min_level}-P{cfg.max_level} need stride(s) {[2**lvl for lvl in missing or [cfg.min_level]]}"
        )
    return [by_stride[2**lvl] for lvl in range(cfg.min_level, top + 1)], cfg.max_level - top


class RetinaNet(nn.Module):
    def __init__(self, cfg: ModelConfig, pretrained: bool = False, backbone: nn.Module | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        self.backbone = backbone if backbone is not None else create_backbone(cfg.provider, cfg.backbone, pretrained)
        self.feature_indices, num_extra = select_levels(list(self.backbone.strides), cfg)
        in_channels = [self.backbone.channels[i] for i in self.feature_indices]
        self.fpn = FPN(in_channels, cfg.fpn_channels, num_extra, cfg.p6_from)
        self.head = RetinaHead(
            cfg.fpn_channels, cfg.anchors.num_anchors, cfg.num_classes, cfg.head_depth, cfg.head_width,
            cfg.prior, cfg.head_norm,
        )

    def forward(self, images: Tensor) -> tuple[list[Tensor], list[Tensor]]:
        """Normalised images ``(N, 3, H, W)`` -> per level logits ``(N, A*K, H_l, W_l)`` and deltas ``(N, A*4, H_l, W_l)``."""
        feats = self.backbone(images)
        pyramid = self.fpn([feats[i] for i in self.feature_indices])
        return self.head(pyramid)
