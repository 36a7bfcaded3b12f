"""Checkpoint -> ONNX file (see the package docstring for what the graph holds).

Uses the TorchScript-based exporter (``torch.onnx.export(..., dynamo=False)``): with torch 2.14
the dynamo exporter needs the separate ``onnxscript`` package, which ``[export]`` does not pull in.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import torch

from retina_cli.config import to_dict
from retina_cli.engine.checkpoint import configs_from_checkpoint, model_from_checkpoint
from retina_cli.engine.detector import DecodingDetector
from retina_cli.export import METADATA_FORMAT, METADATA_KEY, ExportError, require
from retina_cli.export.graph import export_module

OUTPUTS = ("scores", "labels", "boxes")
DEFAULT_OPSET = 17


def export_onnx(checkpoint: str | Path, out: str | Path | None = None, dynamic_size: bool = True, opset: int = DEFAULT_OPSET) -> Path:
    """Write the checkpoint's detector as ONNX (checked with ``onnx.checker``); returns its path.

    out: default ``<checkpoint without suffix>.onnx``. dynamic_size: height and width are
    dynamic axes too (any multiple of the top stride works; the runtime fixes them per input
    shape, see :class:`~retina_cli.export.runtime.OnnxBackend`); False: the square ``img_size`` only.
    """
    from retina_cli.engine.runs import output_file, written_atomically

    onnx = require("onnx")
    checkpoint = Path(checkpoint)
    out = Path(out) if out else checkpoint.with_suffix(".onnx")
    if opset < 17:
        raise ExportError(f"--opset {opset}: use 17 or newer")
    output_file(out)  # before the model loads: a path that cannot be written is a one-line error
    model, ckpt = model_from_checkpoint(checkpoint)
    model_cfg, _, post_cfg = configs_from_checkpoint(ckpt)
    module = export_module(DecodingDetector(model, post_cfg.topk, dynamic_anchors=dynamic_size))
    size = model_cfg.img_size
    example = torch.full((1, 3, size, size), 114.0)
    axes: dict[str, dict[int, str]] = {"images": {0: "batch"}, **{name: {0: "batch", 1: "candidates"} for name in OUTPUTS}}
    if dynamic_size:
        axes["images"].update({2: "height", 3: "width"})
    # written under a temporary name beside ``out`` and renamed at the end: a failed export leaves
    # no partial file, and an older ``out`` stays as it was
    with written_atomically(out) as tmp:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer warnings about shape-dependent Python ints (topk's k)
            torch.onnx.export(
                module, (example,), str(tmp), input_names=["images"], output_names=list(OUTPUTS),
                dynamic_axes=axes, opset_version=opset, dynamo=False,
            )
        proto = onnx.load(str(tmp))
        meta = {
            "format": METADATA_FORMAT,
            "model_config": to_dict(model_cfg),
            "postprocess_config": to_dict(post_cfg),
            "dynamic_size": dynamic_size,
            "outputs": list(OUTPUTS),
            "source": checkpoint.name,
        }
        entry = proto.metadata_props.add()
        entry.key, entry.value = METADATA_KEY, json.dumps(meta)
        hw = f"H, W (multiples of {model_cfg.top_stride}, long side {size})" if dynamic_size else f"{size}, {size}"
        proto.doc_string = f"retina RetinaNet {model_cfg.backbone}, {model_cfg.num_classes} classes, input (N, 3, {hw}) 0..255 RGB"
        try:
            onnx.checker.check_model(proto)
        except onnx.checker.ValidationError as exc:
            raise ExportError(f"{out}: the exported graph fails onnx.checker: {exc}") from exc
        onnx.save(proto, str(tmp))
    return out
