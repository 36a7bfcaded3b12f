"""int8 OpenVINO IR: NNCF post-training quantisation, with accuracy control on a labelled split.

:func:`quantize_openvino` takes an fp32 IR (:func:`~retina_cli.export.openvino.export_openvino`)
and writes ``<stem>.int8.xml``: FakeQuantize pairs in front of the convolutions (int8 weights per
channel, activations calibrated on letterboxed images), which OpenVINO's CPU plugin runs with
integer kernels. As in the onnxruntime int8 model, the two predictor convolutions (class logits,
box deltas) stay float: a few percent of the work, and int8 box deltas cost AP75.

Accuracy control (``validation`` records given): NNCF's ``quantize_with_accuracy_control``
scores the fp32 and int8 models on the records with our COCO evaluation (mAP50-95); when int8
loses more than ``max_drop`` it ranks the quantised layers by how much mAP each costs and puts
the worst back in float, one group at a time, until the drop is within ``max_drop``. The layers
kept in float are read back from the written model, not taken from NNCF's log.

nncf is optional: ``pip install 'retina-cli[openvino]'`` installs it.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from retina_cli.export import METADATA_KEY, ExportError

# the predictor convolutions of the class and box subnets (names as in the exported graph)
FLOAT_PATTERNS = (".*cls_logits.*", ".*box_deltas.*")
# accuracy control's cost is one validation per quantised layer to rank them (on this many
# images: those whose mAP int8 moves most), then one per group put back in float, and a new
# ranking each time a put-back made the drop worse; the groups restored are capped
RANKING_IMAGES = 32
MAX_RESTORED = 8


@dataclass(frozen=True)
class Int8Report:
    """What :func:`quantize_openvino` did.

    path: the int8 ``.xml``. calibration_images: how many images set the ranges.
    convolutions / quantized: the IR's convolutions, and those that run in int8.
    kept_float: names of the convolutions left in float (the predictor layers, plus any that
    accuracy control restored). fp32_map / int8_map: mAP50-95 of both models on the validation
    records (None without accuracy control); validation_images: how many.
    """

    path: Path
    calibration_images: int
    convolutions: int
    quantized: int
    kept_float: tuple[str, ...] = field(default_factory=tuple)
    fp32_map: float | None = None
    int8_map: float | None = None
    validation_images: int = 0
    max_drop: float | None = None


def require_nncf() -> Any:
    """``import nncf`` (quietly); ExportError with the install command when it is missing."""
    try:
        import nncf
    except ImportError:
        raise ExportError("nncf is not installed; int8 OpenVINO models need: pip install 'retina-cli[openvino]'") from None
    logging.getLogger("nncf").setLevel(logging.WARNING)
    return nncf


def conv_precisions(model: Any) -> tuple[int, list[str]]:
    """An OpenVINO model -> (number of convolutions, names of those whose weights are not
    quantised). A quantised convolution's weight input comes through FakeQuantize (or, once
    compressed, a Convert from int8)."""
    total, floating = 0, []
    for op in model.get_ordered_ops():
        if op.get_type_name() not in ("Convolution", "GroupConvolution"):
            continue
        total += 1
        if not _quantized_input(op.input_value(1).get_node()):
            floating.append(op.get_friendly_name())
    return total, floating


def _quantized_input(node: Any, depth: int = 0) -> bool:
    kind = node.get_type_name()
    if kind == "FakeQuantize":
        return True
    if kind == "Convert" and node.input_value(0).get_element_type().get_type_name() in ("i8", "u8"):
        return True
    if depth < 4 and kind in ("Convert", "Multiply", "Subtract", "Reshape"):
        return _quantized_input(node.input_value(0).get_node(), depth + 1)
    return False


def quantize_openvino(
    path: Path, batches: Sequence[np.ndarray], out: Path | None = None, validation: Sequence[Any] | None = None,
    max_drop: float = 0.005, progress: Any = None, max_restored: int = MAX_RESTORED,
) -> Int8Report:
    """``path`` (an fp32 retina IR) -> ``out`` (default ``<stem>.int8.xml``), quantised.

    batches: letterboxed RGB ``(1, H, W, 3)`` uint8 arrays that calibrate the activation ranges.
    validation: dataset records (with boxes) to keep mAP50-95 within ``max_drop`` of fp32 on;
    None quantises every convolution but the predictors without checking.
    progress: a callable taking a one-line message, or None. max_restored: at most this many
    groups of layers go back to float (each costs a validation, some a new ranking).
    The retina metadata of the source model is kept, so `retina predict` / `retina eval` run it.
    """
    from retina_cli.export.openvino import OpenVinoBackend, require_openvino

    ov = require_openvino()
    nncf = require_nncf()
    if not batches:
        raise ExportError("int8 quantisation needs calibration images")
    path = Path(path)
    out = Path(out) if out else path.with_name(path.stem + ".int8.xml")
    source = OpenVinoBackend(path, "cpu")
    model = source.model.clone()
    meta = model.get_rt_info([METADATA_KEY]).astype(str)
    calibration = nncf.Dataset(list(batches), lambda b: b.transpose(0, 3, 1, 2).astype(np.float32))
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, OverflowFix

    common = dict(
        subset_size=len(batches), target_device=nncf.TargetDevice.CPU,
        ignored_scope=nncf.IgnoredScope(patterns=list(FLOAT_PATTERNS), validate=False),
        # 7-bit weights in every layer (NNCF's default: the first only): without VNNI the CPU
        # multiplies u8 x i8 with VPMADDUBSW, whose 16-bit pair sums saturate on 8-bit weights
        advanced_quantization_parameters=AdvancedQuantizationParameters(overflow_fix=OverflowFix.ENABLE),
    )
    say = progress or (lambda _msg: None)
    records = list(validation or ())
    # NNCF draws its progress bars on stdout: they go to stderr, stdout stays the command's result
    with contextlib.redirect_stdout(sys.stderr):
        quantized, fp32_map, int8_map = _quantize(nncf, ov, source, model, calibration, common, records, max_drop, say,
                                                  len(batches), max_restored)
    quantized.set_rt_info(meta, [METADATA_KEY])
    ov.save_model(quantized, str(out), compress_to_fp16=False)
    total, floating = conv_precisions(quantized)
    return Int8Report(out, len(batches), total, total - len(floating), tuple(floating), fp32_map, int8_map,
                      len(records), max_drop if records else None)


def _quantize(nncf: Any, ov: Any, source: Any, model: Any, calibration: Any, common: dict, records: list[Any],
              max_drop: float, say: Any, n_calibration: int, max_restored: int) -> tuple[Any, float | None, float | None]:
    fp32_map = int8_map = None
    if records:
        from nncf.quantization.advanced_parameters import AdvancedAccuracyRestorerParameters

        def validate(compiled: Any, items: Any) -> tuple[float, None]:
            return _map_of(source.wrap(compiled), list(items)), None

        say(f"int8: quantising, mAP50-95 kept within {max_drop} of fp32 on {len(records)} validation images")
        quantized = nncf.quantize_with_accuracy_control(
            model, calibration, nncf.Dataset(records), validate, max_drop=max_drop, drop_type=nncf.DropType.ABSOLUTE,
            advanced_accuracy_restorer_parameters=AdvancedAccuracyRestorerParameters(
                ranking_subset_size=min(len(records), RANKING_IMAGES), num_ranking_workers=1,
                max_num_iterations=max_restored),
            **common,
        )
        core = ov.Core()
        fp32_map = validate(core.compile_model(source.model, "CPU"), records)[0]
        int8_map = validate(core.compile_model(quantized, "CPU"), records)[0]
    else:
        say(f"int8: quantising, calibrated on {n_calibration} images")
        plain = dict(common, advanced_parameters=common["advanced_quantization_parameters"])
        del plain["advanced_quantization_parameters"]
        quantized = nncf.quantize(model, calibration, **plain)
    return quantized, fp32_map, int8_map


def _map_of(backend: Any, records: list[Any]) -> float:
    """COCO mAP50-95 of ``backend`` on ``records`` (the evaluation `retina eval` runs)."""
    from retina_cli.engine.evaluation_run import evaluate_letterboxed

    res = evaluate_letterboxed(backend, records, backend.post_cfg, batch_size=1, workers=0)
    value = float(res.metrics["AP"])
    return max(value, 0.0)  # COCOeval gives -1 where no box of any class is labelled
