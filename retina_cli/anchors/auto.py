"""``retina train --anchors``: the anchors a run trains with, fitted to its training split before
the model is built (``retina anchors`` reports the same coverage and search).

- ``check`` (the default): the preset's anchors (or the ``--anchor-*`` flags) are measured on the
  training boxes, and one line says how many they reach; when that is under :data:`COVERAGE_FLOOR` at ``--fg-iou``
  (boxes much smaller than the smallest anchor, very elongated ones: a dataset unlike the ones
  the presets were made on), the search of :mod:`retina_cli.anchors.search` replaces them, and
  the run says so. Anchors given with ``--anchor-*`` flags are only warned about, never replaced.
- ``auto``: always search. ``manual``: the anchors as given, not measured.

Under torchrun rank 0 alone measures and searches, and every rank takes its result, so all ranks
build the same model whatever their floating-point paths.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any, Callable, Sequence

from retina_cli.config import AnchorConfig, LossConfig, ModelConfig, TrainConfig, from_dict, to_dict

# below this share of training boxes reached at --fg-iou, `check` searches (BCCD: 99.96%)
COVERAGE_FLOOR = 0.95
# images measured (a seeded sample of larger splits): ~0.5 s on 2 cores, the share within ~1%
MAX_IMAGES = 5000


def anchor_flags(cfg: AnchorConfig, levels: Sequence[int]) -> str:
    """The ``retina train`` flags that give ``cfg`` (sizes always spelled out)."""

    def join(values: Sequence[float]) -> str:
        return ",".join(f"{v:g}" for v in values)

    return (f"--anchor-sizes {join(cfg.sizes_for(tuple(levels)))} --anchor-ratios {join(cfg.ratios)} "
            f"--anchor-scales {join(cfg.scales)}")


def fit_anchors(
    model_cfg: ModelConfig, loss_cfg: LossConfig, train_cfg: TrainConfig, records: Sequence[Any],
    mode: str, log: Callable[[str], None], warn: Callable[[str], None] | None = None, given: bool = False,
) -> ModelConfig:
    """``model_cfg`` with the anchors ``mode`` gives for the training ``records`` (see the module).

    given: the anchors came from ``--anchor-*`` flags: ``check`` warns instead
    of replacing them. Called on every rank once the process group is joined."""
    from retina_cli.engine import distributed as dist_utils

    if mode == "manual":
        return model_cfg
    found: dict[str, Any] | None = None
    if dist_utils.current_rank() == 0:
        found = _fit(model_cfg, loss_cfg, train_cfg, records, mode, log, log if warn is None else warn, given)
    found = dist_utils.broadcast_object(found)
    return replace(model_cfg, anchors=from_dict(AnchorConfig, found)) if found is not None else model_cfg


def _fit(model_cfg: ModelConfig, loss_cfg: LossConfig, train_cfg: TrainConfig, records: Sequence[Any], mode: str,
         log: Callable[[str], None], warn: Callable[[str], None], given: bool) -> dict[str, Any] | None:
    """Rank 0's part: the anchors to use as a dict, or None to keep ``model_cfg``'s."""
    import numpy as np

    from retina_cli.anchors.fit import letterboxed_boxes
    from retina_cli.anchors.search import best_anchor_iou, search_anchors

    t0 = time.perf_counter()
    levels, cfg, fg = model_cfg.levels, model_cfg.anchors, loss_cfg.fg_iou
    sampled = len(records) > MAX_IMAGES
    if sampled:
        pick = np.sort(np.random.default_rng(train_cfg.seed).choice(len(records), MAX_IMAGES, replace=False))
        records = [records[i] for i in pick]
    boxes, _ = letterboxed_boxes(records, model_cfg.img_size)
    if not boxes.shape[0]:
        return None
    n = f"{boxes.shape[0]} train boxes" + (f" (of {MAX_IMAGES} sampled images)" if sampled else "")
    before = best_anchor_iou(boxes, cfg, levels, model_cfg.img_size)
    covered = float((before >= fg).float().mean())
    if mode == "check":
        if covered >= COVERAGE_FLOOR:
            log(f"anchors check: {100 * covered:.2f}% of {n} reach IoU >= {fg:g} with an anchor "
                f"(mean best IoU {float(before.mean()):.3f}): kept")
            return None
        if given:
            warn(f"anchors: the --anchor-* flags reach {100 * covered:.1f}% of the {n} at "
                 f"IoU >= {fg:g} (mean best IoU {float(before.mean()):.3f}); `retina anchors {train_cfg.data}` "
                 "suggests flags that fit, --anchors auto searches them")
            return None
    anchors = search_anchors(boxes, cfg, levels, model_cfg.img_size, fg, seed=train_cfg.seed)
    after = best_anchor_iou(boxes, anchors, levels, model_cfg.img_size) if anchors != cfg else before
    shares = f"{100 * covered:.2f}% -> {100 * float((after >= fg).float().mean()):.2f}%"
    means = f"{float(before.mean()):.3f} -> {float(after.mean()):.3f}"
    why = "" if mode == "auto" else f" (below {100 * COVERAGE_FLOOR:g}%: searched; --anchors manual keeps them)"
    log(f"anchors {mode}: {n} covered at IoU >= {fg:g} {shares}{why}, "
        f"mean best IoU {means} ({time.perf_counter() - t0:.1f}s)")
    log(f"anchors {mode}: {anchor_flags(anchors, levels) if anchors != cfg else 'no better setting found; current anchors kept'}")
    return to_dict(anchors) if anchors != cfg else None
