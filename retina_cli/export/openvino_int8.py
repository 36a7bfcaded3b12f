"""int8 OpenVINO IR: NNCF post-training quantisation, with accuracy control on a labelled split.

:func:`quantize_openvino` takes an fp32 IR (:func:`~retina_cli.export.openvino.export_openvino`)
and writes ``<stem>.int8.xml``: FakeQuantize pairs in front of the convolutions (int8 weights per
channel, activations calibrated on letterboxed images), which OpenVINO's CPU plugin runs with
integer kernels. As in the onnxruntime int8 model, the two predictor convolutions (class logits,
box deltas) stay float: a few percent of the work, and int8 box deltas cost AP75.

Accuracy control (``validation`` records given): the fp32 and int8 models are scored on the
records with our COCO evaluation (mAP50-95); when int8 loses more than ``max_drop``, the layer
groups whose quantisation costs most go back to float, one at a time, until the drop is within
``max_drop`` (:mod:`retina_cli.export.int8_restore`: one ranking and a greedy restore, minutes
where NNCF's ``quantize_with_accuracy_control`` took over 20 on BCCD). The layers kept in float
are read back from the written model.

nncf is optional: ``pip install 'retina-cli[openvino]'`` installs it.
"""

from __future__ import annotations

import contextlib
import logging
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from retina_cli.export import METADATA_KEY, ExportError

# the predictor convolutions of the class and box subnets (names as in the exported graph)
FLOAT_PATTERNS = (".*cls_logits.*", ".*box_deltas.*")
# accuracy control costs a compile and RANKING_IMAGES inferences per layer group to rank them,
# then a validation (at most VALIDATION_IMAGES images) per group tried in float, at most MAX_RESTORED
RANKING_IMAGES = 8
VALIDATION_IMAGES = 200
MAX_RESTORED = 16


@dataclass(frozen=True)
class Int8Report:
    """What :func:`quantize_openvino` did.

    path: the int8 ``.xml``. calibration_images: how many images set the ranges.
    convolutions / quantized: the IR's convolutions, and those that run in int8.
    kept_float: names of the convolutions left in float (the predictor layers, plus any that
    accuracy control restored). fp32_map / int8_map: mAP50-95 of both models on the validation
    records (None without accuracy control); validation_images: how many. groups: the layer
    groups accuracy control put back in float, in the order it did.
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
    groups: tuple[str, ...] = ()

    @property
    def restored(self) -> tuple[str, ...]:
        """The convolutions in float besides the predictors (those accuracy control put back)."""
        return tuple(n for n in self.kept_float if not any(re.fullmatch(p, n) for p in FLOAT_PATTERNS))


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
    layer groups go back to float.
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
    meta = source.model.get_rt_info([METADATA_KEY]).astype(str)
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, OverflowFix

    say = progress or (lambda _msg: None)
    say(f"int8: quantising, calibrated on {len(batches)} images")
    # NNCF draws its progress bars on stdout: they go to stderr, stdout stays the command's result
    with contextlib.redirect_stdout(sys.stderr):
        quantized = nncf.quantize(
            source.model.clone(), nncf.Dataset(list(batches), lambda b: b.transpose(0, 3, 1, 2).astype(np.float32)),
            subset_size=len(batches), target_device=nncf.TargetDevice.CPU,
            # asymmetric activations: the linear bottlenecks' outputs are signed, and a symmetric
            # range spends a bit on them (BCCD val, three calibration samples: drop 0.013 -> 0.008)
            preset=nncf.QuantizationPreset.MIXED,
            ignored_scope=nncf.IgnoredScope(patterns=list(FLOAT_PATTERNS), validate=False),
            advanced_parameters=AdvancedQuantizationParameters(
                # 7-bit weights in every layer (NNCF's default: the first only): without VNNI the
                # CPU multiplies u8 x i8 with VPMADDUBSW, whose 16-bit pair sums saturate on 8-bit weights
                overflow_fix=OverflowFix.ENABLE,
                # weights stay FakeQuantize on float constants until accuracy control is done
                # with them (layers go back to float by bypassing it); compressed to int8 below
                backend_params={"compress_weights": False}),
        )
    records = _spread(list(validation or ()), VALIDATION_IMAGES)
    fp32_map = int8_map = None
    restored: tuple[str, ...] = ()
    if records:
        quantized, fp32_map, int8_map, restored = _control(ov, source, quantized, records, max_drop, max_restored, say)
    from openvino._offline_transformations import compress_quantize_weights_transformation

    compress_quantize_weights_transformation(quantized)  # int8 weight constants (what nncf.quantize does by default)
    quantized.set_rt_info(meta, [METADATA_KEY])
    ov.save_model(quantized, str(out), compress_to_fp16=False)
    total, floating = conv_precisions(quantized)
    return Int8Report(out, len(batches), total, total - len(floating), tuple(floating), fp32_map, int8_map,
                      len(records), max_drop if records else None, restored)


def _spread(items: list[Any], limit: int) -> list[Any]:
    """At most ``limit`` of ``items``, evenly spaced (all of them when there are fewer)."""
    if len(items) <= limit:
        return items
    return [items[i] for i in np.linspace(0, len(items) - 1, limit).round().astype(int)]


def _control(ov: Any, source: Any, quantized: Any, records: list[Any], max_drop: float, max_restored: int,
             say: Any) -> tuple[Any, float, float, tuple[str, ...]]:
    """Validate fp32 and int8 on ``records``; over ``max_drop``, put layer groups back in float
    (:func:`~retina_cli.export.int8_restore.restore_accuracy`). -> (model, fp32 mAP, int8 mAP, groups restored)."""
    import time

    from retina_cli.data.images import read_image
    from retina_cli.data.transforms import letterbox
    from retina_cli.export.int8_restore import restore_accuracy

    core = ov.Core()

    def compile(model: Any) -> Any:
        return core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY"})

    def validate(model: Any) -> float:
        return _map_of(source.wrap(compile(model)), records)

    say(f"int8: checking against fp32 on {len(records)} validation images (mAP50-95 kept within {max_drop})")
    fp32_map, int8_map = validate(source.model), validate(quantized)
    if fp32_map - int8_map <= max_drop:
        return quantized, fp32_map, int8_map, ()
    size = source.model_cfg.img_size
    images = [letterbox(read_image(r.path), size)[0][None].transpose(0, 3, 1, 2).astype(np.float32)
              for r in _spread(records, RANKING_IMAGES)]
    started, ranked = time.monotonic(), [0]

    def advance() -> None:
        ranked[0] += 1
        if ranked[0] % 10 == 0:
            say(f"int8: ranked {ranked[0]} layer groups ({time.monotonic() - started:.0f} s)")

    done = restore_accuracy(quantized, source.model, images, validate, fp32_map, int8_map, max_drop, max_restored,
                            compile, FLOAT_PATTERNS, say, advance)
    if fp32_map - done.int8_map > max_drop:
        say(f"int8: the drop is still {fp32_map - done.int8_map:.4f} with up to {max_restored} layer groups in float "
            f"(--max-drop {max_drop}); the best of those is written, {len(done.groups)} groups in float")
    return done.model, fp32_map, done.int8_map, done.groups


def _map_of(backend: Any, records: list[Any]) -> float:
    """COCO mAP50-95 of ``backend`` on ``records`` (the evaluation `retina eval` runs)."""
    from retina_cli.engine.evaluation_run import evaluate_letterboxed

    res = evaluate_letterboxed(backend, records, backend.post_cfg, batch_size=1, workers=0)
    value = float(res.metrics["AP"])
    return max(value, 0.0)  # COCOeval gives -1 where no box of any class is labelled
