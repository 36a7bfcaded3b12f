"""The detector layer: input normalisation, anchors and level flattening around the pure
:class:`RetinaNet`, and the training, inference and export wrappers built on it.

:class:`DenseDetector` is the one place that turns 0..255 images into dense outputs with their
anchors; :class:`TrainingModel` (loss), :class:`InferenceModel` (detections) and
:class:`DecodingDetector` (candidates, the graph ``retina export`` writes) add only what each
job needs. Train, eval, predict, export, bench and analyze-loss all use these.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from retina_cli.boxes.anchors import AnchorCache, generate_anchors
from retina_cli.config import LossConfig, PostprocessConfig
from retina_cli.data.batch import BatchTargets
from retina_cli.losses import ddp_normalizer, retinanet_loss
from retina_cli.model.head import concat_levels, flatten_level
from retina_cli.model.retinanet import RetinaNet
from retina_cli.speed.fold_bn import fold_batchnorm
from retina_cli.speed.winograd import winograd_convs
from retina_cli.postprocess import Candidates, Detections, postprocess, topk_candidates


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


class DenseDetector(nn.Module):
    """The pure model with its input normalisation and the anchors of its feature maps.

    dynamic_anchors: build the anchors from the feature-map shapes on every call (traced into an
    ONNX graph whose image size is dynamic); otherwise they come from a cache per layout and device
    (constants in ONNX).
    """

    def __init__(self, model: RetinaNet, dynamic_anchors: bool = False) -> None:
        super().__init__()
        self.model = model
        self.dynamic_anchors = dynamic_anchors
        self.normalize = Normalize(model.cfg.mean, model.cfg.std)
        self.anchors = AnchorCache(model.cfg.anchors, model.cfg.levels)

    def raw_outputs(self, images: Tensor) -> tuple[list[Tensor], list[Tensor]]:
        """Images 0..255 ``(N, 3, H, W)`` -> the network's per-level outputs, class ``(N, A * K, H_l, W_l)``
        and box ``(N, A * 4, H_l, W_l)`` (see :meth:`RetinaNet.forward`)."""
        return self.model(self.normalize(images))

    def level_anchors(self, cls_out: list[Tensor]) -> list[Tensor]:
        """Per-level outputs -> their anchors, ``(H_l * W_l * A, 4)`` xyxy per level, on their device."""
        if self.dynamic_anchors:
            sizes = [(o.shape[-2], o.shape[-1]) for o in cls_out]  # not int(): stays symbolic when traced
            cfg = self.model.cfg
            return [a.to(cls_out[0].device) for a in generate_anchors(cfg.anchors, cfg.levels, sizes)]
        return self.anchors(_feature_sizes(cls_out), cls_out[0].device)

    def dense_levels(
        self, cls_out: list[Tensor], box_out: list[Tensor]
    ) -> tuple[list[Tensor], list[Tensor], list[Tensor]]:
        """Per-level outputs -> per level: class logits ``(N, R_l, K)``, box deltas ``(N, R_l, 4)`` and
        anchors ``(R_l, 4)``, with ``R_l = H_l * W_l * A`` in the same (y, x, anchor) order."""
        k = self.model.cfg.num_classes
        return [flatten_level(c, k) for c in cls_out], [flatten_level(b, 4) for b in box_out], self.level_anchors(cls_out)

    def dense(self, cls_out: list[Tensor], box_out: list[Tensor]) -> tuple[Tensor, Tensor, Tensor]:
        """Per-level outputs -> levels concatenated: class logits ``(N, R, K)``, box deltas ``(N, R, 4)``
        and anchors ``(R, 4)``, ``R = sum_l H_l * W_l * A``."""
        cls_logits, box_deltas = concat_levels(cls_out, box_out, self.model.cfg.num_classes)
        return cls_logits, box_deltas, torch.cat(self.level_anchors(cls_out))


class TrainingModel(DenseDetector):
    """Images 0..255 ``(N, 3, H, W)`` + :class:`BatchTargets` -> loss dict (see ``retinanet_loss``)."""

    def __init__(self, model: RetinaNet, loss_cfg: LossConfig) -> None:
        super().__init__(model)
        self.loss_cfg = loss_cfg

    def forward(self, images: Tensor, targets: BatchTargets, normalizer: Tensor | None = None) -> dict[str, Tensor]:
        cls_out, box_out = self.raw_outputs(images)
        return self.loss(cls_out, box_out, targets, normalizer)

    def loss(
        self, cls_out: list[Tensor], box_out: list[Tensor], targets: BatchTargets, normalizer: Tensor | None = None
    ) -> dict[str, Tensor]:
        """Raw per-level head outputs (see :meth:`RetinaNet.forward`) + targets -> loss dict."""
        cls_logits, box_deltas, anchors = self.dense(cls_out, box_out)
        return retinanet_loss(
            cls_logits.float(), box_deltas.float(), anchors, targets.boxes, targets.labels, targets.valid,
            self.loss_cfg, targets.ignore, ddp_normalizer if normalizer is None else normalizer,
        )


class InferenceModel(DenseDetector):
    """Images 0..255 ``(N, 3, H, W)`` -> one :class:`Detections` per image, in network-input pixels."""

    def __init__(self, model: RetinaNet, post_cfg: PostprocessConfig | None = None) -> None:
        super().__init__(model)
        self.post_cfg = post_cfg or PostprocessConfig()

    @torch.inference_mode()
    def forward(self, images: Tensor) -> list[Detections]:
        cls_out, box_out = self.raw_outputs(images)
        return self.detections(cls_out, box_out, (int(images.shape[-2]), int(images.shape[-1])))

    def detections(self, cls_out: list[Tensor], box_out: list[Tensor], image_size: tuple[int, int]) -> list[Detections]:
        """Raw per-level head outputs (see :meth:`RetinaNet.forward`) -> Detections per image,
        clipped to ``image_size`` = (H, W) of the network input."""
        cls_logits, box_deltas, anchors = self.dense_levels(cls_out, box_out)
        return postprocess(cls_logits, box_deltas, anchors, image_size, self.post_cfg, self.model.cfg.bbox_clip)


class DecodingDetector(DenseDetector):
    """Images 0..255 float ``(N, 3, H, W)`` -> :class:`Candidates`: scores ``(N, C)``, labels ``(N, C)``,
    boxes ``(N, C, 4)`` xyxy network-input pixels (unclipped), ``C = sum_l min(topk, R_l * K)``.

    The inference graph shared by the PyTorch backend of ``retina predict`` and the ONNX export
    (normalisation, network, per-level top-k and box decoding); the rest (clip, threshold, NMS,
    cap) is :func:`retina_cli.postprocess.select_detections`, run in Python by both backends.
    """

    def __init__(self, model: RetinaNet, topk: int, dynamic_anchors: bool = False) -> None:
        super().__init__(model, dynamic_anchors)
        self.topk = topk

    def forward(self, images: Tensor) -> Candidates:
        cls_logits, box_deltas, anchors = self.dense_levels(*self.raw_outputs(images))
        return topk_candidates(cls_logits, box_deltas, anchors, self.topk, self.model.cfg.bbox_clip)


def probe_input(model: RetinaNet, device: torch.device, memory_format: torch.memory_format) -> Tensor:
    """A random ``(1, 3, S, S)`` input in the model's dtype for tracing passes (BatchNorm folding),
    S the smallest side whose top level is 2x2: at 1x1 a GroupNorm with one channel per group
    has a single value to normalise and refuses it."""
    side = 2 ** (model.cfg.max_level + 1)
    dtype = next(model.parameters()).dtype
    return torch.randn(1, 3, side, side, device=device, dtype=dtype).contiguous(memory_format=memory_format)


def prepare_inference(
    model: RetinaNet, device: torch.device, precision: str = "fp32", winograd: bool = True, channels_last: bool = True,
) -> RetinaNet:
    """A trained model, in place, -> its fastest inference layout on ``device``: eval mode,
    BatchNorm folded into the convolutions (:mod:`retina_cli.speed.fold_bn`), channels-last weights
    (oneDNN/cuDNN convolve NHWC without reorders) and, on CPU in fp32, the wide 3x3 convolutions
    as Winograd F(4x4, 3x3) (:mod:`retina_cli.speed.winograd`; outputs within ~1e-5 relative of
    the direct convolution). Not for a model that will train again."""
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model.to(device).eval().to(memory_format=fmt)
    fold_batchnorm(model, probe_input(model, device, fmt))
    if winograd and device.type == "cpu" and precision == "fp32":
        winograd_convs(model)
    return model
