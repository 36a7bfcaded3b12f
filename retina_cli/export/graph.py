"""The inference graph shared by the PyTorch backend and the ONNX export.

``DecodingDetector`` (defined with the other detector wrappers in :mod:`retina_cli.engine.detector`,
importable from here too): 0..255 images ``(N, 3, S, S)`` -> :class:`~retina_cli.postprocess.Candidates`
(normalisation, network, per-level top-k and box decoding). What is left - clip, score threshold,
class-aware NMS, the per-image cap - is :func:`retina_cli.postprocess.select_detections`, run in
Python by both backends, so PyTorch and onnxruntime detections come from the same code.
"""

from __future__ import annotations

from torch import Tensor, nn

from retina_cli.engine.detector import DecodingDetector

__all__ = ["DecodingDetector", "export_module"]


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
