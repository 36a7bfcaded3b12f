"""onnxruntime backend for `retina predict model.onnx SOURCE`: same interface as the torch backend."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from retina_cli.config import ModelConfig, PostprocessConfig, from_dict
from retina_cli.errors import ConfigError
from retina_cli.export import METADATA_FORMAT, METADATA_KEY, ExportError, require
from retina_cli.export.shapes import ShapeCache
from retina_cli.postprocess import Candidates


def parse_metadata(path: Path, text: str | None) -> tuple[ModelConfig, PostprocessConfig, int | None]:
    """The ``retina`` metadata JSON of an exported model -> its configs and the input stride
    (``2 ** max_level`` for a graph exported with dynamic height and width, None for a fixed square)."""
    if text is None:
        raise ExportError(f"{path}: no '{METADATA_KEY}' metadata; export it with `retina export CHECKPOINT`")
    try:
        meta = json.loads(text)
        if meta.get("format") != METADATA_FORMAT:
            raise ValueError(f"format {meta.get('format')!r}, expected {METADATA_FORMAT!r}")
        model_cfg = from_dict(ModelConfig, meta["model_config"])
        post_cfg = from_dict(PostprocessConfig, meta["postprocess_config"])
    except (ValueError, KeyError, TypeError, ConfigError) as exc:
        raise ExportError(f"{path}: unreadable retina metadata ({exc}); export the model again") from exc
    return model_cfg, post_cfg, (model_cfg.top_stride if meta.get("dynamic_size") else None)


def read_metadata(path: Path, session) -> tuple[ModelConfig, PostprocessConfig, int | None]:
    """An onnxruntime session's model -> :func:`parse_metadata` of its ``metadata_props``."""
    return parse_metadata(path, session.get_modelmeta().custom_metadata_map.get(METADATA_KEY))


class OnnxBackend:
    """Runs an exported model: letterboxed RGB ``(N, H, W, 3)`` uint8 -> Candidates (CPU tensors).

    device "auto" uses the CUDA provider when onnxruntime has it, "cpu" forces the CPU provider.
    ``stride``: set for a graph exported with dynamic height and width (rectangular inputs), else
    None (the square ``img_size`` only).
    """

    name = "onnxruntime"
    picked = None  # set by engine.predict.load_backend when it ran this in place of a checkpoint
    max_shapes = 4  # sessions kept, one per input shape (a video has one; mixed image sizes a few)

    def __init__(self, path: str | Path, device: str = "auto") -> None:
        ort = require("onnxruntime")
        path = Path(path)
        if not path.is_file():
            raise ExportError(f"{path}: no such ONNX model file")
        available = ort.get_available_providers()
        if device.startswith("cuda") and "CUDAExecutionProvider" not in available:
            raise ConfigError(f"--device {device}: this onnxruntime has no CUDA provider (install onnxruntime-gpu or use --device cpu)")
        providers = ["CPUExecutionProvider"]
        if device != "cpu" and "CUDAExecutionProvider" in available:
            providers.insert(0, "CUDAExecutionProvider")
        self._ort, self.path, self._providers = ort, path, providers
        self.streams = 1
        session = self._open(None)
        self.model_cfg, self.post_cfg, self.stride = read_metadata(path, session)
        self.device = session.get_providers()[0]
        # the session for inputs of (N, H, W), opened on first use
        self.session: ShapeCache[Any] = ShapeCache(self._open, self.max_shapes)

    def _open(self, shape: tuple[int, int, int] | None) -> Any:
        """A session; with ``shape`` = (N, H, W) the graph's free dimensions are fixed to it, so
        onnxruntime plans it as a static graph (shape arithmetic and in-graph anchors folded away)."""
        opts = self._ort.SessionOptions()
        if self.streams > 1:  # each of the concurrent runs gets its share of the cores
            opts.intra_op_num_threads = max(1, (os.cpu_count() or 1) // self.streams)
        for name, value in zip(("batch", "height", "width"), shape or ()):
            opts.add_free_dimension_override_by_name(name, int(value))
        try:
            return self._ort.InferenceSession(str(self.path), opts, providers=self._providers)
        except Exception as exc:  # onnxruntime raises its own Fail / InvalidProtobuf types
            raise ExportError(f"{self.path}: onnxruntime cannot load this model ({type(exc).__name__}: {str(exc).splitlines()[0]})") from exc

    def use_streams(self, streams: int) -> int:
        """Set up for ``streams`` runs at once from as many threads (a session runs concurrent
        calls; each gets ``cores // streams`` threads instead of all of them) -> the streams set
        up: 1 on CUDA, where the GPU serialises them anyway."""
        streams = max(1, int(streams)) if self.device == "CPUExecutionProvider" else 1
        if streams != self.streams:
            self.streams = streams
            self.session = ShapeCache(self._open, self.max_shapes)
        return streams

    def candidates(self, batch: np.ndarray) -> Candidates:
        images = batch.transpose(0, 3, 1, 2).astype(np.float32)  # (N, 3, H, W) 0..255
        session = self.session((images.shape[0], images.shape[2], images.shape[3]))
        scores, labels, boxes = session.run(["scores", "labels", "boxes"], {"images": images})
        return Candidates(torch.from_numpy(scores), torch.from_numpy(labels), torch.from_numpy(boxes))


class OnnxDetector:
    """An exported model used like :class:`~retina_cli.engine.detector.InferenceModel`: images
    0..255 ``(N, 3, S, S)`` (any dtype) -> one Detections per image in network-input pixels."""

    def __init__(self, backend: OnnxBackend, post_cfg: PostprocessConfig) -> None:
        self.backend = backend
        self.post_cfg = post_cfg

    def __call__(self, images: torch.Tensor) -> list:
        from retina_cli.postprocess import select_detections

        batch = images.detach().round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()  # (N, S, S, 3)
        size = (int(images.shape[-2]), int(images.shape[-1]))
        return select_detections(self.backend.candidates(np.ascontiguousarray(batch)), size, self.post_cfg)
