"""onnxruntime backend for `retina predict model.onnx SOURCE`: same interface as the torch backend."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from retina_cli.config import ModelConfig, PostprocessConfig, from_dict
from retina_cli.errors import ConfigError
from retina_cli.export import METADATA_FORMAT, METADATA_KEY, ExportError, require
from retina_cli.postprocess import Candidates


def read_metadata(path: Path, session) -> tuple[ModelConfig, PostprocessConfig]:
    props = session.get_modelmeta().custom_metadata_map
    if METADATA_KEY not in props:
        raise ExportError(f"{path}: no '{METADATA_KEY}' metadata; export it with `retina export CHECKPOINT`")
    try:
        meta = json.loads(props[METADATA_KEY])
        if meta.get("format") != METADATA_FORMAT:
            raise ValueError(f"format {meta.get('format')!r}, expected {METADATA_FORMAT!r}")
        return from_dict(ModelConfig, meta["model_config"]), from_dict(PostprocessConfig, meta["postprocess_config"])
    except (ValueError, KeyError, TypeError, ConfigError) as exc:
        raise ExportError(f"{path}: unreadable retina metadata ({exc}); export the model again") from exc


class OnnxBackend:
    """Runs an exported model: letterboxed RGB ``(N, S, S, 3)`` uint8 -> Candidates (CPU tensors).

    device "auto" uses the CUDA provider when onnxruntime has it, "cpu" forces the CPU provider.
    """

    name = "onnxruntime"

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
        try:
            self.session = ort.InferenceSession(str(path), providers=providers)
        except Exception as exc:  # onnxruntime raises its own Fail / InvalidProtobuf types
            raise ExportError(f"{path}: onnxruntime cannot load this model ({type(exc).__name__}: {str(exc).splitlines()[0]})") from exc
        self.model_cfg, self.post_cfg = read_metadata(path, self.session)
        self.device = self.session.get_providers()[0]

    def candidates(self, batch: np.ndarray) -> Candidates:
        images = batch.transpose(0, 3, 1, 2).astype(np.float32)  # (N, 3, S, S) 0..255
        scores, labels, boxes = self.session.run(["scores", "labels", "boxes"], {"images": images})
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
