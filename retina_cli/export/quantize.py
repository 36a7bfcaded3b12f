"""int8 ONNX models: static quantisation of an exported graph, calibrated on real images.

The convolutions become QDQ pairs (int8 per-channel weights, uint8 activations with ranges taken
from the calibration images), which onnxruntime runs with integer kernels; normalisation, top-k and
box decoding stay float. What goes in must look like what the model will see: a few dozen
letterboxed training images.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from retina_cli.export import ExportError, require


def quantize_int8(path: Path, batches: Sequence[np.ndarray], out: Path | None = None) -> Path:
    """``path`` (an exported fp32 model) -> ``out`` (default ``<stem>.int8.onnx``), quantised.

    batches: letterboxed RGB ``(1, S, S, 3)`` uint8 arrays that calibrate the activation ranges.
    The retina metadata of the source model is kept, so `retina predict` / `retina eval` run it.
    """
    require("onnxruntime")
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if not batches:
        raise ExportError("int8 quantisation needs calibration images")

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter([{"images": b.transpose(0, 3, 1, 2).astype(np.float32)} for b in batches])

        def get_next(self) -> dict[str, Any] | None:
            return next(self.items, None)

    out = out or path.with_name(path.stem + ".int8.onnx")
    prepped = out.with_name(out.stem + ".prep.onnx")
    onnx = require("onnx")
    # the two predictor convs stay float: they are a few percent of the FLOPs, and int8 box
    # deltas cost AP75 (BCCD test: 0.706 fp32, 0.664 with them quantised)
    keep_float = [n.name for n in onnx.load(str(path)).graph.node
                  if n.op_type == "Conv" and ("/box_deltas" in n.name or "/cls_logits" in n.name)]
    try:
        quant_pre_process(str(path), str(prepped), skip_symbolic_shape=True)
        quantize_static(
            str(prepped), str(out), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, op_types_to_quantize=["Conv"],
            nodes_to_exclude=keep_float,
            # 7-bit weights: x86 CPUs without VNNI multiply uint8 x int8 with VPMADDUBSW, whose
            # 16-bit pair sums saturate with 8-bit weights (onnxruntime's advice); BCCD val mAP on
            # the AVX2 VM 0.5640 -> 0.5656 against fp32's 0.5693
            reduce_range=True,
        )
    finally:
        prepped.unlink(missing_ok=True)
    return out


def calibration_batches(data: str, img_size: int, count: int = 32, split: str = "train", data_format: str = "auto",
                        seed: int = 0, dataset: Any = None) -> list[np.ndarray]:
    """``count`` images of a dataset split (a seeded sample), letterboxed: ``(1, S, S, 3)`` uint8 RGB.
    dataset: ``data`` already loaded (:func:`retina_cli.data.load_dataset`), or None to load it."""
    from retina_cli.data import load_dataset
    from retina_cli.data.images import read_image
    from retina_cli.data.transforms import letterbox
    from retina_cli.errors import DataError

    records = (dataset or load_dataset(data, data_format)).splits.get(split) or []
    if not records:
        raise DataError(f"{data}: no images in split {split!r} to calibrate int8 with")
    rng = np.random.default_rng(seed)
    picked = rng.choice(len(records), size=min(count, len(records)), replace=False)
    return [letterbox(read_image(records[i].path), img_size)[0][None] for i in sorted(picked)]
