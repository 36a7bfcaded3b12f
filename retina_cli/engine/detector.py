"""Wrappers that put anchors, loss and post-processing around the pure :class:`RetinaNet`."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from retina_cli.boxes.anchors import AnchorCache
from retina_cli.config import LossConfig, PostprocessConfig
from retina_cli.data.batch import BatchTargets
from retina_cli.losses import retinanet_loss
from retina_cli.model.head import concat_levels, flatten_level
from retina_cli.model.retinanet import RetinaNet
from retina_cli.model.fold_bn import fold_batchnorm
from retina_cli.model.winograd import winograd_convs
from retina_cli.postprocess import Detections, postprocess


class Normalize(nn.Module):
    """0..255 pixels ``(N, 3, H, W)`` -> ``(x / 255 - mean) / std`` with the model config's mean/std."""

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    def forward(self, images: Tensor) -> Tensor:
        # torchvision's order of operations on 0..1 input, so converted models match it to the bit
        return (images / 255.0 - self.mean) / self.std


def _feature_sizes(outputs: list[Tensor]) -> list[tuple[int, int]]:
    return [(int(o.shape[-2]), int(o.shape[-1])) for o in outputs]


class TrainingModel(nn.Module):
    """Images 0..255 ``(N, 3, H, W)`` + :class:`BatchTargets` -> loss dict (see ``retinanet_loss``)."""

    def __init__(self, model: RetinaNet, loss_cfg: LossConfig) -> None:
        super().__init__()
        self.model = model
        self.loss_cfg = loss_cfg
        self.normalize = Normalize(model.cfg.mean, model.cfg.std)
        self.anchors = AnchorCache(model.cfg.anchors, model.cfg.levels)

    def forward(self, images: Tensor, targets: BatchTargets, normalizer: Tensor | None = None) -> dict[str, Tensor]:
        cls_out, box_out = self.model(self.normalize(images))
        return self.loss(cls_out, box_out, targets, normalizer)

    def loss(
        self, cls_out: list[Tensor], box_out: list[Tensor], targets: BatchTargets, normalizer: Tensor | None = None
    ) -> dict[str, Tensor]:
        """Raw per-level head outputs (see :meth:`RetinaNet.forward`) + targets -> loss dict."""
        anchors = torch.cat(self.anchors(_feature_sizes(cls_out), cls_out[0].device))
        cls_logits, box_deltas = concat_levels(cls_out, box_out, self.model.cfg.num_classes)
        return retinanet_loss(
            cls_logits.float(), box_deltas.float(), anchors, targets.boxes, targets.labels, targets.valid,
            self.loss_cfg, targets.ignore, normalizer,
        )


class InferenceModel(nn.Module):
    """Images 0..255 ``(N, 3, H, W)`` -> one :class:`Detections` per image, in network-input pixels."""

    def __init__(self, model: RetinaNet, post_cfg: PostprocessConfig | None = None) -> None:
        super().__init__()
        self.model = model
        self.post_cfg = post_cfg or PostprocessConfig()
        self.normalize = Normalize(model.cfg.mean, model.cfg.std)
        self.anchors = AnchorCache(model.cfg.anchors, model.cfg.levels)

    @torch.inference_mode()
    def forward(self, images: Tensor) -> list[Detections]:
        cls_out, box_out = self.model(self.normalize(images))
        return self.detections(cls_out, box_out, (int(images.shape[-2]), int(images.shape[-1])))

    def detections(self, cls_out: list[Tensor], box_out: list[Tensor], image_size: tuple[int, int]) -> list[Detections]:
        """Raw per-level head outputs (see :meth:`RetinaNet.forward`) -> Detections per image,
        clipped to ``image_size`` = (H, W) of the network input."""
        k = self.model.cfg.num_classes
        anchors = self.anchors(_feature_sizes(cls_out), cls_out[0].device)
        return postprocess(
            [flatten_level(c, k) for c in cls_out], [flatten_level(b, 4) for b in box_out], anchors,
            image_size, self.post_cfg, self.model.cfg.bbox_clip,
        )


def prepare_inference(
    model: RetinaNet, device: torch.device, precision: str = "fp32", winograd: bool = True, channels_last: bool = True,
) -> RetinaNet:
    """A trained model, in place, -> its fastest inference layout on ``device``: eval mode,
    BatchNorm folded into the convolutions (:mod:`retina_cli.model.fold_bn`), channels-last weights
    (oneDNN/cuDNN convolve NHWC without reorders) and, on CPU in fp32, the wide 3x3 convolutions
    as Winograd F(4x4, 3x3) (:mod:`retina_cli.model.winograd`; outputs within ~1e-5 relative of
    the direct convolution). Not for a model that will train again."""
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model.to(device).eval().to(memory_format=fmt)
    # the smallest input whose top level is 2x2: at 1x1 a GroupNorm with one channel per group has a
    # single value to normalise and refuses it
    side = 2 ** (model.cfg.max_level + 1)
    fold_batchnorm(model, torch.randn(1, 3, side, side, device=device).contiguous(memory_format=fmt))
    if winograd and device.type == "cpu" and precision == "fp32":
        winograd_convs(model)
    return model
