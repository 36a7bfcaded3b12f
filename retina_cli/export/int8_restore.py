"""Accuracy control for int8 OpenVINO models: which quantised layers go back to float.

NNCF's ``quantize_with_accuracy_control`` ranks every quantised layer by validating a model with
that layer restored, and ranks them all again each time a restore makes the drop worse: on the
BCCD small model (98 convolutions) it was still ranking after 20 minutes. This is one ranking and
a greedy restore, on an int8 model whose weight quantizers are still FakeQuantize (uncompressed):

1. :func:`layer_groups`: the quantised convolutions, grouped by the module they come from (the
   shared head's copies, one per pyramid level, are one group: they share weights).
2. :func:`rank_groups`: for each group, the int8 model with that group in float, run on a few
   validation images; its error against fp32 on the dense predictor outputs
   (:func:`output_error`). The lower the error with a group in float, the more that group's
   quantisation costs; one compile and a few inferences per group.
3. :func:`restore_accuracy`: the shortest prefix of that ranking which, in float, brings the
   validation mAP50-95 within ``max_drop`` of fp32: prefixes of 1, 2, 4, ... groups (at most
   ``max_restored``), then halving the gap between the last that failed and the first that held;
   one validation each. Restoring one group at a time did not pay on BCCD: the loss is spread
   over many layers, and one layer moves val mAP by less than its noise (~0.003).

A group goes back to float by bypassing its convolutions' FakeQuantize on the weights and on the
activation input (:func:`with_float`); other consumers of a shared activation quantizer keep it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Sequence

import numpy as np

CONVOLUTIONS = ("Convolution", "GroupConvolution")


@dataclass(frozen=True)
class Restored:
    """What :func:`restore_accuracy` did. model: the int8 model (some groups in float); int8_map:
    its validation mAP50-95; groups: the groups put back in float, costliest first; tried: how
    many validations it ran; ranked: how many groups were ranked."""

    model: Any
    int8_map: float
    groups: tuple[str, ...]
    tried: int
    ranked: int


def group_key(name: str) -> str:
    """A convolution's friendly name -> the module it comes from: ``/det/model/`` and the
    ``/Conv/WithoutBiases`` tail dropped, and under ``head/`` the ``_N`` the ONNX export appends
    to the shared head's per-level copies (``head/cls_tower/cls_tower.3_2`` -> ``...cls_tower.3``)."""
    key = re.sub(r"/Conv(/WithoutBiases)?$", "", name).removeprefix("/det/model/")
    return re.sub(r"_\d+$", "", key) if key.startswith("head/") else key


def layer_groups(model: Any) -> dict[str, list[str]]:
    """group key -> friendly names of the convolutions whose weights come through FakeQuantize,
    in graph order."""
    groups: dict[str, list[str]] = {}
    for op in model.get_ordered_ops():
        if op.get_type_name() in CONVOLUTIONS and op.input_value(1).get_node().get_type_name() == "FakeQuantize":
            groups.setdefault(group_key(op.get_friendly_name()), []).append(op.get_friendly_name())
    return groups


def with_float(model: Any, convs: Iterable[str]) -> Any:
    """A copy of ``model`` where the convolutions named ``convs`` take their weights and input
    unquantised (their FakeQuantize inputs bypassed)."""
    names = set(convs)
    copy = model.clone()
    for op in copy.get_ordered_ops():
        if op.get_friendly_name() in names and op.get_type_name() in CONVOLUTIONS:
            for i in (0, 1):
                source = op.input_value(i).get_node()
                if source.get_type_name() == "FakeQuantize":
                    op.input(i).replace_source_output(source.input_value(0))
    return copy


def add_predictor_outputs(model: Any, patterns: Sequence[str]) -> int:
    """Append the dense class and box outputs of every level (the predictor convolutions matching
    ``patterns[0]`` / ``patterns[1]``, after their bias) to ``model``'s outputs, in place: the
    class output of each level, then the box output of each, in graph (level) order. -> levels."""
    found: tuple[list[Any], list[Any]] = ([], [])
    for op in model.get_ordered_ops():
        if op.get_type_name() not in CONVOLUTIONS:
            continue
        for kind, pattern in enumerate(patterns):
            if re.fullmatch(pattern, op.get_friendly_name()):
                consumers = [i.get_node() for i in op.output(0).get_target_inputs()]
                biased = next((c for c in consumers if c.get_type_name() == "Add"), op)
                found[kind].append(biased.output(0))
    if not found[0] or len(found[0]) != len(found[1]):
        raise ValueError(f"expected one class and one box predictor per level, found {len(found[0])} and {len(found[1])}")
    model.add_outputs(found[0] + found[1])
    return len(found[0])


def output_error(reference: Sequence[np.ndarray], got: Sequence[np.ndarray], levels: int) -> float:
    """How far ``got``'s dense outputs are from ``reference``'s (fp32): the class and box outputs
    of each level, ``levels`` class arrays ``(1, A*K, H, W)`` (logits) then ``levels`` box arrays
    ``(1, A*4, H, W)``. -> normalised squared error of the class probabilities, plus that of the
    box deltas weighted by each anchor's best fp32 probability (boxes matter where objects are)."""
    sums = np.zeros(4)
    for level in range(levels):
        cls_ref, cls_got = reference[level], got[level]
        box_ref, box_got = reference[levels + level], got[levels + level]
        anchors = box_ref.shape[1] // 4
        p_ref, p_got = _sigmoid(cls_ref), _sigmoid(cls_got)
        weight = p_ref.reshape(anchors, -1, *p_ref.shape[2:]).max(1)[:, None]  # (A, 1, H, W)
        d_ref, d_got = box_ref.reshape(anchors, 4, *box_ref.shape[2:]), box_got.reshape(anchors, 4, *box_got.shape[2:])
        sums += (((p_got - p_ref) ** 2).sum(), (p_ref ** 2).sum(),
                 (weight * (d_got - d_ref) ** 2).sum(), (weight * d_ref ** 2).sum())
    return float(sums[0] / max(sums[1], 1e-12) + sums[2] / max(sums[3], 1e-12))


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -60, 60)))


def rank_groups(quantized: Any, fp32: Any, groups: dict[str, list[str]], images: Sequence[np.ndarray],
                compile: Callable[[Any], Any], patterns: Sequence[str], advance: Any = None) -> list[tuple[str, float]]:
    """-> [(group, error with that group in float)], lowest error first: the groups whose int8
    costs most. images: ``(1, 3, H, W)`` float32 inputs; compile: model -> compiled model;
    patterns: the class and box predictor name patterns. advance: called once per group, or None."""
    reference = _dense(fp32, images, compile, patterns)
    errors = []
    for key, convs in groups.items():
        got = _dense(with_float(quantized, convs), images, compile, patterns)
        errors.append((key, float(np.mean([output_error(r, g, len(r) // 2) for r, g in zip(reference, got)]))))
        if advance is not None:
            advance()
    return sorted(errors, key=lambda pair: pair[1])


def _dense(model: Any, images: Sequence[np.ndarray], compile: Callable[[Any], Any], patterns: Sequence[str]) -> list[list[np.ndarray]]:
    """The dense outputs (class outputs, then box outputs, per level) of ``model`` on each image."""
    model = model.clone()
    base = len(model.outputs)
    add_predictor_outputs(model, patterns)
    compiled = compile(model)
    ports = compiled.outputs[base:]
    return [[out[p] for p in ports] for out in (compiled(x) for x in images)]


def restore_accuracy(quantized: Any, fp32: Any, images: Sequence[np.ndarray], validate: Callable[[Any], float],
                     fp32_map: float, int8_map: float, max_drop: float, max_restored: int,
                     compile: Callable[[Any], Any], patterns: Sequence[str], say: Callable[[str], None],
                     advance: Any = None) -> Restored:
    """Put quantised groups of ``quantized`` back in float until its validation mAP50-95 is
    within ``max_drop`` of ``fp32_map`` (see the module docstring). validate: model -> mAP50-95.
    images: the ranking inputs ``(1, 3, H, W)`` float32. -> :class:`Restored`."""
    groups = layer_groups(quantized)
    # the caller has said how far off the quantised model is; this says what happens next
    say(f"int8: still {fp32_map - int8_map:.4f} below fp32 (--max-drop {max_drop}); "
        f"ranking {len(groups)} layer groups on {len(images)} images")
    order = [key for key, _error in rank_groups(quantized, fp32, groups, images, compile, patterns, advance)]
    scores: dict[int, tuple[float, Any]] = {0: (int8_map, quantized)}

    def score(k: int) -> float:
        if k not in scores:
            model = with_float(quantized, [c for key in order[:k] for c in groups[key]])
            scores[k] = (validate(model), model)
            say(f"int8: the {k} costliest group{'s' if k > 1 else ''} in float: val mAP50-95 {scores[k][0]:.4f}")
        return scores[k][0]

    # the shortest prefix of the ranking that holds: doubling, then halving the gap
    limit = min(max_restored, len(order))
    low, high = 0, None
    k = 1
    while k <= limit:
        if fp32_map - score(k) <= max_drop:
            high = k
            break
        low, k = k, (limit if k < limit < 2 * k else 2 * k)
    if high is None:
        best = max(scores, key=lambda n: scores[n][0])
        return Restored(scores[best][1], scores[best][0], tuple(order[:best]), len(scores) - 1, len(order))
    while high - low > 1:
        mid = (low + high) // 2
        if fp32_map - score(mid) <= max_drop:
            high = mid
        else:
            low = mid
    return Restored(scores[high][1], scores[high][0], tuple(order[:high]), len(scores) - 1, len(order))
