"""int8 OpenVINO IR: NNCF post-training quantisation, with accuracy control on a labelled split.

:func:`quantize_openvino` takes an fp32 IR (:func:`~retina_cli.export.openvino.export_openvino`)
and writes ``<stem>.int8.xml``: FakeQuantize pairs in front of the convolutions (int8 weights per
channel, activations calibrated on letterboxed images), which OpenVINO's CPU plugin runs with
integer kernels. As in the onnxruntime int8 model, the two predictor convolutions (class logits,
box deltas) stay float: a few percent of the work, and int8 box deltas cost AP75.

Accuracy control (``validation`` records given): the fp32 and int8 models are scored on the
records with our COCO evaluation (mAP50-95). When int8 loses more than ``max_drop``:

1. the model is quantised again with only the backbone in int8 (:data:`BACKBONE_ONLY_PATTERNS`:
   the input normalisation, FPN and head float, their adds, upsampling and GroupNorms included).
   On the nano preset (BCCD val, mAP50-95 0.540 fp32) quantising everything lost 0.007, and no
   single part was the culprit: the stem, FPN or head kept float alone still lost 0.006-0.011;
   the backbone alone in int8 lost nothing (-0.002) and ran faster than the whole in int8 (28.8
   against 29.8 ms, fp32 35.8), the GroupNorm head's requantisation costing what its int8 saved.
2. if that still loses too much, the layer groups whose quantisation costs most go back to float
   in the better of the two models, until the drop is within ``max_drop``
   (:mod:`retina_cli.export.int8_restore`: one ranking and a greedy restore, minutes where NNCF's
   ``quantize_with_accuracy_control`` took over 20 on BCCD).

The layers kept in float are read back from the written model.

nncf is optional: ``pip install 'retina-cli[openvino]'`` installs it.
"""

from __future__ import annotations

import contextlib
import logging
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from retina_cli.export import METADATA_KEY, ExportError

# the predictor convolutions of the class and box subnets (names as in the exported graph)
FLOAT_PATTERNS = (".*cls_logits.*", ".*box_deltas.*")
# accuracy control's first fallback: every node outside the backbone stays float
BACKBONE_ONLY_PATTERNS = FLOAT_PATTERNS + ("^(?!/det/model/backbone/).*",)
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
    records (None without accuracy control); validation_images: how many. scope: ``"all"`` (every
    convolution but the predictors quantised) or ``"backbone"`` (accuracy control kept the rest of
    the model float). groups: the layer groups accuracy control put back in float, in the order it did.
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
    scope: str = "all"
    groups: tuple[str, ...] = ()

    @property
    def restored(self) -> tuple[str, ...]:
        """The convolutions that accuracy control's restore put back in float (besides the
        predictors, and the FPN and head of a backbone-only model)."""
        float_patterns = BACKBONE_ONLY_PATTERNS if self.scope == "backbone" else FLOAT_PATTERNS
        return tuple(n for n in self.kept_float if not any(re.fullmatch(p, n) for p in float_patterns))


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

    say = progress or (lambda _msg: None)
    say(f"int8: quantising, calibrated on {len(batches)} images")

    def quantize(patterns: Sequence[str]) -> Any:
        return _quantize(nncf, source.model, batches, patterns)

    quantized = quantize(FLOAT_PATTERNS)
    records = _spread(list(validation or ()), VALIDATION_IMAGES)
    fp32_map = int8_map = None
    scope, restored = "all", ()
    if records:
        compile = _f32_compiler(ov)

        def validate(model: Any) -> float:
            return _map_of(source.wrap(compile(model)), records)

        done = _control(source, quantized, quantize, validate, compile, records, max_drop, max_restored, say)
        quantized, fp32_map, int8_map, scope, restored = done
    from openvino._offline_transformations import compress_quantize_weights_transformation

    compress_quantize_weights_transformation(quantized)  # int8 weight constants (what nncf.quantize does by default)
    quantized.set_rt_info(meta, [METADATA_KEY])
    ov.save_model(quantized, str(out), compress_to_fp16=False)
    total, floating = conv_precisions(quantized)
    return Int8Report(out, len(batches), total, total - len(floating), tuple(floating), fp32_map, int8_map,
                      len(records), max_drop if records else None, scope, restored)


def _quantize(nncf: Any, model: Any, batches: Sequence[np.ndarray], patterns: Sequence[str]) -> Any:
    """A quantised copy of the fp32 ``model`` (weights still FakeQuantize, uncompressed), the nodes
    matching ``patterns`` left float. batches: ``(1, H, W, 3)`` uint8 calibration images."""
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, OverflowFix

    # NNCF draws its progress bars on stdout: they go to stderr, stdout stays the command's result
    with contextlib.redirect_stdout(sys.stderr):
        return nncf.quantize(
            model.clone(), nncf.Dataset(list(batches), lambda b: b.transpose(0, 3, 1, 2).astype(np.float32)),
            subset_size=len(batches), target_device=nncf.TargetDevice.CPU,
            # asymmetric activations: the linear bottlenecks' outputs are signed, and a symmetric
            # range spends a bit on them (BCCD val, three calibration samples: drop 0.013 -> 0.008)
            preset=nncf.QuantizationPreset.MIXED,
            ignored_scope=nncf.IgnoredScope(patterns=list(patterns), validate=False),
            advanced_parameters=AdvancedQuantizationParameters(
                # 7-bit weights in every layer (NNCF's default: the first only): without VNNI the
                # CPU multiplies u8 x i8 with VPMADDUBSW, whose 16-bit pair sums saturate on 8-bit weights
                overflow_fix=OverflowFix.ENABLE,
                # weights stay FakeQuantize on float constants until accuracy control is done
                # with them (layers go back to float by bypassing it); compressed to int8 afterwards
                backend_params={"compress_weights": False}),
        )


def _spread(items: list[Any], limit: int) -> list[Any]:
    """At most ``limit`` of ``items``, evenly spaced (all of them when there are fewer)."""
    if len(items) <= limit:
        return items
    return [items[i] for i in np.linspace(0, len(items) - 1, limit).round().astype(int)]


def _f32_compiler(ov: Any) -> Callable[[Any], Any]:
    """-> model -> compiled for this CPU in fp32 arithmetic (no bf16 where the CPU has it)."""
    core = ov.Core()

    def compile(model: Any) -> Any:
        return core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY"})

    return compile


def _control(source: Any, quantized: Any, quantize: Callable[[Sequence[str]], Any], validate: Callable[[Any], float],
             compile: Callable[[Any], Any], records: list[Any], max_drop: float, max_restored: int,
             say: Any) -> tuple[Any, float, float, str, tuple[str, ...]]:
    """Validate fp32 and int8 on ``records``; over ``max_drop``, quantise the backbone only
    (``quantize(patterns)`` -> model), then put layer groups back in float
    (:func:`~retina_cli.export.int8_restore.restore_accuracy`) in the better of the two.
    validate: model -> mAP50-95 on ``records``; compile: model -> compiled model.
    -> (model, fp32 mAP, int8 mAP, scope, groups restored)."""
    import time

    from retina_cli.data.images import read_image
    from retina_cli.data.transforms import letterbox
    from retina_cli.export.int8_restore import restore_accuracy

    say(f"int8: checking against fp32 on {len(records)} validation images (mAP50-95 kept within {max_drop})")
    fp32_map, int8_map = validate(source.model), validate(quantized)
    if fp32_map - int8_map <= max_drop:
        return quantized, fp32_map, int8_map, "all", ()
    say(f"int8: val mAP50-95 {fp32_map:.4f} fp32 -> {int8_map:.4f} int8, over the allowed drop {max_drop}; "
        "quantising the backbone only (FPN and head float)")
    backbone = quantize(BACKBONE_ONLY_PATTERNS)
    backbone_map = validate(backbone)
    say(f"int8: the backbone only in int8: val mAP50-95 {backbone_map:.4f}")
    if fp32_map - backbone_map <= max_drop:
        return backbone, fp32_map, backbone_map, "backbone", ()
    scope, quantized, int8_map = ("backbone", backbone, backbone_map) if backbone_map > int8_map else ("all", quantized, int8_map)
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
    return done.model, fp32_map, done.int8_map, scope, done.groups


def _map_of(backend: Any, records: list[Any]) -> float:
    """COCO mAP50-95 of ``backend`` on ``records`` (the evaluation `retina eval` runs)."""
    from retina_cli.engine.evaluation_run import evaluate_letterboxed

    res = evaluate_letterboxed(backend, records, backend.post_cfg, batch_size=1, workers=0)
    value = float(res.metrics["AP"])
    return max(value, 0.0)  # COCOeval gives -1 where no box of any class is labelled
