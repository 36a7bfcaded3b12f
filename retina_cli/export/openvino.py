"""Checkpoint -> OpenVINO IR (``.xml`` + ``.bin``), and the OpenVINO backend of predict / eval / bench.

The IR is converted from the ONNX graph of :func:`~retina_cli.export.onnx.export_onnx` (the same
normalisation, network, top-k and decoding; dynamic batch, height and width) with
``openvino.convert_model``, weights kept in fp32 (``compress_to_fp16=False``: the default fp16
compression would move boxes). The same ``retina`` metadata JSON as the ONNX model's is stored in
the IR's ``rt_info``, so ``retina predict model.xml`` needs nothing else. NMS stays outside, in
:func:`retina_cli.postprocess.select_detections`, as for onnxruntime.

openvino is optional: ``pip install 'retina-cli[openvino]'``.
"""

from __future__ import annotations

import copy
import tempfile
import threading
from pathlib import Path
from typing import Any

import numpy as np
import torch

from retina_cli.errors import ConfigError
from retina_cli.export import METADATA_KEY, ExportError
from retina_cli.export.shapes import ShapeCache
from retina_cli.postprocess import Candidates

OUTPUTS = ("scores", "labels", "boxes")
PRECISION_HINTS = {"fp32": "f32", "bf16": "bf16"}


def require_openvino() -> Any:
    """``import openvino``; ExportError with the install command when it is missing."""
    try:
        import openvino
    except ImportError:
        raise ExportError("openvino is not installed; OpenVINO export and inference need: pip install 'retina-cli[openvino]'") from None
    return openvino


def export_openvino(checkpoint: str | Path, out: str | Path | None = None, dynamic_size: bool = True) -> Path:
    """Write the checkpoint's detector as OpenVINO IR: ``out`` (default ``<checkpoint>.xml``) and
    the ``.bin`` beside it; returns the ``.xml`` path. dynamic_size: as for ONNX (the backend then
    compiles one static model per input shape)."""
    import onnx

    from retina_cli.engine.runs import output_file
    from retina_cli.export.onnx import export_onnx

    ov = require_openvino()
    checkpoint = Path(checkpoint)
    out = Path(out) if out else checkpoint.with_suffix(".xml")
    if out.suffix.lower() != ".xml":
        raise ExportError(f"{out}: an OpenVINO model is an .xml file (its weights go to the .bin beside it)")
    output_file(out)
    # written in a temporary folder beside ``out`` and moved at the end (the .bin first, then the
    # .xml that names it by stem): a failed export leaves no partial model, an older one stays
    with tempfile.TemporaryDirectory(prefix=f".{out.stem}.", dir=out.parent) as tmp:
        onnx_path = export_onnx(checkpoint, Path(tmp) / "model.onnx", dynamic_size)
        meta = next(p.value for p in onnx.load(str(onnx_path)).metadata_props if p.key == METADATA_KEY)
        model = ov.convert_model(str(onnx_path))
        model.set_rt_info(meta, [METADATA_KEY])
        staged = Path(tmp) / out.name
        ov.save_model(model, str(staged), compress_to_fp16=False)
        move_ir(staged, out)
    return out


def move_ir(src: Path, dst: Path) -> Path:
    """Move an IR (``src`` .xml and the .bin beside it) to ``dst``: the .bin first, then the .xml
    that names it by stem, so a reader never finds an .xml without its weights. -> ``dst``."""
    Path(src).with_suffix(".bin").replace(Path(dst).with_suffix(".bin"))
    Path(src).replace(dst)
    return Path(dst)


class OpenVinoBackend:
    """Runs an OpenVINO IR: letterboxed RGB ``(N, H, W, 3)`` uint8 -> Candidates (CPU tensors).

    The IR's free dimensions are fixed per input shape and compiled once (``reshape`` +
    ``compile_model``): OpenVINO's CPU plugin runs static shapes fastest. ``precision`` "fp32"
    pins the plugin's inference precision to f32 (on CPUs with AVX-512 BF16 or AMX it would pick
    bf16 by itself); "bf16" asks for bf16.
    """

    name = "openvino"
    picked = None  # set by engine.predict.load_backend when it ran this in place of a checkpoint
    max_shapes = 4

    def __init__(self, path: str | Path, device: str = "auto", precision: str = "fp32") -> None:
        from retina_cli.export.runtime import parse_metadata

        ov = require_openvino()
        path = Path(path)
        if not path.is_file():
            raise ExportError(f"{path}: no such OpenVINO model file")
        if device.startswith("cuda"):
            raise ConfigError(f"--device {device}: the OpenVINO backend runs on the CPU (use --device cpu, or the .pt / .onnx model on CUDA)")
        if precision not in PRECISION_HINTS:
            raise ConfigError(f"precision {precision!r}: expected fp32 or bf16")
        self.core = ov.Core()
        try:
            self.model = self.core.read_model(str(path))
        except Exception as exc:  # openvino raises RuntimeError subclasses of its own
            raise ExportError(f"{path}: OpenVINO cannot read this model ({type(exc).__name__}: {str(exc).splitlines()[0]})") from exc
        text = self.model.get_rt_info([METADATA_KEY]).astype(str) if self.model.has_rt_info([METADATA_KEY]) else None
        self.model_cfg, self.post_cfg, self.stride = parse_metadata(path, text)
        self.path, self.precision, self.device = path, precision, "CPU"
        self.streams = 1
        self._local = threading.local()  # each thread's infer requests (one compiled model serves several)
        # the model compiled for inputs (N, 3, H, W), keyed by (N, H, W), on first use
        self.compiled: ShapeCache[Any] = ShapeCache(self._compile, self.max_shapes)

    def use_streams(self, streams: int) -> int:
        """Compile for ``streams`` calls at once from as many threads (OpenVINO's THROUGHPUT mode,
        the CPU's cores split between them); 1: one call at a time on every core (LATENCY). -> the
        streams set up. On 2
        cores, nano at 384x320: 27-30 -> 21-24 ms per frame over two threads; a video end to end 18.7 -> 19.9 frames/s."""
        streams = max(1, int(streams))
        if streams != self.streams:
            self.streams = streams
            self.compiled = ShapeCache(self._compile, self.max_shapes)
        return streams

    def wrap(self, compiled: Any) -> "OpenVinoBackend":
        """This backend's model and configs around a model already compiled (with dynamic shapes it
        takes any input), as int8 accuracy control validates one."""
        other = copy.copy(self)
        other.compiled = lambda _shape: compiled
        return other

    def _compile(self, shape: tuple[int, int, int]) -> Any:
        model = self.model.clone()
        model.reshape({"images": [shape[0], 3, shape[1], shape[2]]})
        config = {"INFERENCE_PRECISION_HINT": PRECISION_HINTS[self.precision], "PERFORMANCE_HINT": "LATENCY"}
        if self.streams > 1:
            config.update(PERFORMANCE_HINT="THROUGHPUT", NUM_STREAMS=str(self.streams))
        return self.core.compile_model(model, self.device, config)

    def _request(self, compiled: Any) -> Any:
        """This thread's infer request of ``compiled`` (a request runs one call at a time)."""
        requests = self._local.__dict__.setdefault("requests", {})
        entry = requests.get(id(compiled))
        if entry is None or entry[0] is not compiled:  # the id of a model since freed may come back
            entry = requests[id(compiled)] = (compiled, compiled.create_infer_request())
        return entry[1]

    def candidates(self, batch: np.ndarray) -> Candidates:
        images = batch.transpose(0, 3, 1, 2).astype(np.float32)  # (N, 3, H, W) 0..255
        compiled = self.compiled((images.shape[0], images.shape[2], images.shape[3]))
        out = self._request(compiled).infer({0: images})
        scores, labels, boxes = (out[compiled.output(name)] for name in OUTPUTS)
        return Candidates(torch.from_numpy(scores), torch.from_numpy(labels.astype(np.int64)), torch.from_numpy(boxes))
