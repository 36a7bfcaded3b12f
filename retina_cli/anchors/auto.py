"""``retina train --anchors auto``: the anchor search of :mod:`retina_cli.anchors.search` run
on the training split before the model is built (``retina anchors`` reports the same search)."""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Callable, Sequence

from retina_cli.config import AnchorConfig, LossConfig, ModelConfig, TrainConfig, from_dict, to_dict


def anchor_flags(cfg: AnchorConfig, levels: Sequence[int]) -> str:
    """The ``retina train`` flags that give ``cfg`` (sizes always spelled out)."""

    def join(values: Sequence[float]) -> str:
        return ",".join(f"{v:g}" for v in values)

    return (f"--anchor-sizes {join(cfg.sizes_for(tuple(levels)))} --anchor-ratios {join(cfg.ratios)} "
            f"--anchor-scales {join(cfg.scales)}")


def auto_anchors(model_cfg: ModelConfig, loss_cfg: LossConfig, train_cfg: TrainConfig, log: Callable[[str], None]) -> ModelConfig:
    """``retina train --anchors auto``: search anchors on the training split before the model is built.

    Under torchrun rank 0 alone searches (the process group is joined here, earlier than training
    would) and every rank takes its result, so all ranks build the same model whatever their
    floating-point paths.
    """
    from retina_cli.anchors.search import best_anchor_iou, search_anchors
    from retina_cli.data import load_dataset
    from retina_cli.anchors.fit import letterboxed_boxes
    from retina_cli.engine import distributed as dist_utils

    dist = dist_utils.init_distributed(train_cfg.device)
    found = None
    if dist.is_main:
        t0 = time.perf_counter()
        ds = load_dataset(train_cfg.data, train_cfg.data_format, strict=train_cfg.strict,
                          val_fraction=train_cfg.val_fraction, seed=train_cfg.seed)
        records = ds.records("train")
        levels, cfg = model_cfg.levels, model_cfg.anchors
        boxes, _ = letterboxed_boxes(records, model_cfg.img_size)
        anchors = search_anchors(boxes, cfg, levels, model_cfg.img_size, loss_cfg.fg_iou, seed=train_cfg.seed)
        share = [best_anchor_iou(boxes, c, levels, model_cfg.img_size).numpy() for c in (cfg, anchors)]
        covered = [f"{100 * float((b >= loss_cfg.fg_iou).mean()):.2f}%" if b.size else "-" for b in share]
        mean = [f"{float(b.mean()):.3f}" if b.size else "-" for b in share]
        log(
            f"anchors auto: {int(boxes.shape[0])} train boxes covered at IoU >= {loss_cfg.fg_iou} {covered[0]} -> {covered[1]}, "
            f"mean best IoU {mean[0]} -> {mean[1]} ({time.perf_counter() - t0:.1f}s)\n"
            f"anchors auto: {anchor_flags(anchors, levels) if anchors != cfg else 'no better setting found; current anchors kept'}",
        )
        found = to_dict(anchors)
    found = dist_utils.broadcast_object(found)
    return replace(model_cfg, anchors=from_dict(AnchorConfig, found))
