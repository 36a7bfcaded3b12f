"""The inference graph shared by the PyTorch backend and the ONNX export.

``DecodingDetector``: 0..255 images ``(N, 3, S, S)`` -> :class:`~retina_cli.postprocess.Candidates`
(normalisation, network, per-level top-k and box decoding). What is left - clip, score threshold,
class-aware NMS, the per-image cap - is :func:`retina_cli.postprocess.select_detections`, run in
Python by both backends, so PyTorch and onnxruntime detections come from the same code.
"""

from __future__ import annotations

from torch import Tensor, nn

from retina_cli.boxes.anchors import AnchorCache, generate_anchors
from retina_cli.engine.detector import Normalize
from retina_cli.model.head import flatten_level
from retina_cli.model.retinanet import RetinaNet
from retina_cli.postprocess import Candidates, topk_candidates


class DecodingDetector(nn.Module):
    """Images 0..255 float ``(N, 3, H, W)`` -> Candidates: scores ``(N, C)``, labels ``(N, C)``,
    boxes ``(N, C, 4)`` xyxy network-input pixels (unclipped), ``C = sum_l min(topk, R_l * K)``.

    dynamic_anchors: build the anchors inside the graph from the feature-map shapes (needed for an
    ONNX graph whose image size is dynamic); otherwise they come from a cache (constants in ONNX).
    """

    def __init__(self, model: RetinaNet, topk: int, dynamic_anchors: bool = False) -> None:
        super().__init__()
        self.model = model
        self.topk = topk
        self.dynamic_anchors = dynamic_anchors
        self.normalize = Normalize(model.cfg.mean, model.cfg.std)
        self.anchors = AnchorCache(model.cfg.anchors, model.cfg.levels)

    def forward(self, images: Tensor) -> Candidates:
        cls_out, box_out = self.model(self.normalize(images))
        k = self.model.cfg.num_classes
        if self.dynamic_anchors:
            sizes = [(o.shape[-2], o.shape[-1]) for o in cls_out]
            anchors = [a.to(images.device) for a in generate_anchors(self.model.cfg.anchors, self.model.cfg.levels, sizes)]
        else:
            anchors = self.anchors([(int(o.shape[-2]), int(o.shape[-1])) for o in cls_out], images.device)
        return topk_candidates(
            [flatten_level(c, k) for c in cls_out], [flatten_level(b, 4) for b in box_out], anchors,
            self.topk, self.model.cfg.bbox_clip,
        )


class _ExportWrapper(nn.Module):
    """The detector with a plain tuple ``(scores, labels, boxes)`` as output, for the ONNX exporter."""

    def __init__(self, det: DecodingDetector) -> None:
        super().__init__()
        self.det = det

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        cand = self.det(images)
        return cand.scores, cand.labels, cand.boxes


def export_module(det: DecodingDetector) -> nn.Module:
    return _ExportWrapper(det).eval()
