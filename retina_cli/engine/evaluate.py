"""COCO-style evaluation through pycocotools: ground truth from image records, detections in
original image pixels, AP/AR summary, per-class AP and the precision arrays for PR curves."""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

import numpy as np
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from retina_cli.data.transforms import boxes_from_letterbox

STAT_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")


@dataclass
class EvalResult:
    """metrics: the 12 COCOeval summary numbers by name (-1 where undefined, as COCO reports).
    per_class: class name -> {"AP", "AP50", "num_gt"}. precision: COCOeval's ``(T, R, K, A, M)`` array
    (IoU thresholds, 101 recall points, classes, areas, max-dets) or None without detections.
    matches: per class, COCOeval's true-positive flags at IoU 0.5 with the detections' scores
    (:mod:`retina_cli.analysis.thresholds`), empty without detections."""

    metrics: dict[str, float]
    per_class: dict[str, dict[str, float]]
    precision: np.ndarray | None = None
    detections: list[dict[str, Any]] = field(default_factory=list)
    matches: list[Any] = field(default_factory=list)


def coco_ground_truth(records: Sequence[Any], class_names: Sequence[str]) -> COCO:
    """An in-memory COCO object: image id ``i + 1`` for ``records[i]``, category id ``label + 1``.

    Records follow :class:`retina_cli.data.records.ImageRecord`; ``ignore`` boxes become
    ``iscrowd=1`` so COCOeval neither rewards nor penalises detections on them.
    """
    images, annotations = [], []
    for i, rec in enumerate(records):
        images.append({"id": i + 1, "file_name": str(rec.path), "width": int(rec.width), "height": int(rec.height)})
        boxes = np.asarray(rec.boxes, dtype=np.float64).reshape(-1, 4)
        wh = boxes[:, 2:] - boxes[:, :2]
        for j in range(boxes.shape[0]):  # building the COCO index is one-off bookkeeping, not a hot path
            annotations.append({
                "id": len(annotations) + 1,
                "image_id": i + 1,
                "category_id": int(rec.labels[j]) + 1,
                "bbox": [float(boxes[j, 0]), float(boxes[j, 1]), float(wh[j, 0]), float(wh[j, 1])],
                "area": float(wh[j, 0] * wh[j, 1]),
                "iscrowd": int(bool(rec.ignore[j])) if len(rec.ignore) else 0,
            })
    gt = COCO()
    gt.dataset = {
        "images": images,
        "annotations": annotations,
        "categories": [{"id": k + 1, "name": name} for k, name in enumerate(class_names)],
    }
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
    return gt


def to_coco_results(image_id: int, boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray) -> list[dict[str, Any]]:
    """One image's detections -> COCO results entries. boxes ``(D, 4)`` xyxy original pixels."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    xywh = np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1).round(3)
    return [
        {"image_id": int(image_id), "category_id": int(c) + 1, "bbox": b.tolist(), "score": round(float(s), 5)}
        for b, s, c in zip(xywh, scores, labels)
    ]


def coco_evaluate(gt: COCO, results: list[dict[str, Any]], class_names: Sequence[str]) -> EvalResult:
    """Run COCOeval (bbox) of ``results`` against ``gt``; quiet, and defined for zero detections."""
    per_class = {
        name: {"AP": 0.0, "AP50": 0.0, "num_gt": float(len(gt.getAnnIds(catIds=[k + 1], iscrowd=False)))}
        for k, name in enumerate(class_names)
    }
    if not results:
        metrics = {name: 0.0 for name in STAT_NAMES}
        return EvalResult(metrics, per_class, None, [])
    with contextlib.redirect_stdout(io.StringIO()):
        dt = gt.loadRes(results)
        ev = COCOeval(gt, dt, iouType="bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    metrics = {name: float(v) for name, v in zip(STAT_NAMES, ev.stats)}
    precision = ev.eval["precision"]  # (T, R, K, A, M)
    for k, name in enumerate(class_names):
        p_all = precision[:, :, k, 0, -1]
        p_50 = precision[0, :, k, 0, -1]
        per_class[name]["AP"] = float(p_all[p_all > -1].mean()) if (p_all > -1).any() else 0.0
        per_class[name]["AP50"] = float(p_50[p_50 > -1].mean()) if (p_50 > -1).any() else 0.0
    from retina_cli.analysis.thresholds import coco_matches

    return EvalResult(metrics, per_class, precision, results, coco_matches(ev))


def predict_records(
    infer_model: torch.nn.Module, loader: Iterable, device: torch.device, autocast_dtype: torch.dtype | None = None,
    progress: Any = None,
) -> list[dict[str, Any]]:
    """COCO results for every image of ``loader`` (image id = record index + 1), in original pixels.

    The loader yields ``(images, targets, metas)`` from :func:`retina_cli.data.loader.collate`;
    each meta is a SampleMeta of its image, whose ``index`` (the record's) gives the image id, so
    batches may come in any order (rectangular evaluation groups them by canvas shape).
    """
    results: list[dict[str, Any]] = []
    for images, _targets, metas in loader:
        images = images.to(device, non_blocking=True).float()
        with torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
            dets = infer_model(images)
        for det, meta in zip(dets, metas):
            image_id = meta.index + 1
            boxes = boxes_from_letterbox(det.boxes.float().cpu().numpy(), meta)
            results.extend(to_coco_results(image_id, boxes, det.scores.float().cpu().numpy(), det.labels.cpu().numpy()))
            if progress is not None:
                progress()
    return results


def evaluate_records(
    infer_model: torch.nn.Module, loader: Iterable, records: Sequence[Any], class_names: Sequence[str],
    device: torch.device, autocast_dtype: torch.dtype | None = None, progress: Any = None,
) -> EvalResult:
    """Predict every image of ``loader`` (built over ``records``, in order) and score it with COCOeval."""
    results = predict_records(infer_model, loader, device, autocast_dtype, progress)
    return coco_evaluate(coco_ground_truth(records, class_names), results, class_names)

