"""COCO evaluation: our wrappers give the numbers pycocotools defines."""

from pathlib import Path

import numpy as np
import pytest

from retina_cli.data.records import ImageRecord
from retina_cli.engine.evaluate import coco_evaluate, coco_ground_truth, to_coco_results

CLASSES = ["a", "b"]


def _record(i: int, boxes, labels, ignore=None) -> ImageRecord:
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    labels = np.asarray(labels, dtype=np.int64)
    ignore = np.zeros(len(labels), bool) if ignore is None else np.asarray(ignore, bool)
    return ImageRecord(path=Path(f"/tmp/img{i}.jpg"), width=400, height=300, boxes=boxes, labels=labels, ignore=ignore)


def _records():
    return [
        _record(0, [[10, 10, 110, 110], [200, 50, 260, 170]], [0, 1]),
        _record(1, [[50, 60, 150, 160]], [0]),
    ]


def test_perfect_detections_score_one():
    recs = _records()
    gt = coco_ground_truth(recs, CLASSES)
    results = []
    for i, r in enumerate(recs):
        results += to_coco_results(i + 1, r.boxes, np.full(len(r.labels), 0.9), r.labels)
    res = coco_evaluate(gt, results, CLASSES)
    assert res.metrics["AP"] == pytest.approx(1.0)
    assert res.metrics["AP50"] == pytest.approx(1.0)
    assert res.per_class["a"]["AP"] == pytest.approx(1.0)
    assert res.per_class["b"]["num_gt"] == 1


def test_known_shift_lowers_ap_as_coco_defines():
    # one 100x100 GT, the detection shifted 20 px: IoU = 80*100 / (120*100) = 2/3, a match at
    # IoU thresholds 0.50, 0.55, 0.60, 0.65 only -> AP = 4/10, AP50 = 1, AP75 = 0
    recs = [_record(0, [[100, 100, 200, 200]], [0])]
    gt = coco_ground_truth(recs, CLASSES)
    res = coco_evaluate(gt, to_coco_results(1, np.array([[120.0, 100, 220, 200]]), np.array([0.8]), np.array([0])), CLASSES)
    assert res.metrics["AP"] == pytest.approx(0.4)
    assert res.metrics["AP50"] == pytest.approx(1.0)
    assert res.metrics["AP75"] == pytest.approx(0.0)


def test_false_positive_ranked_first_halves_precision():
    # two GTs; a higher-scored false positive first, then both hits: precision at recall 0.5 is 1/2,
    # at recall 1.0 is 2/3 -> interpolated AP = (51 * 2/3 + 50 * 2/3) / 101 = 2/3 under COCO's 101 points
    recs = [_record(0, [[0, 0, 50, 50], [100, 100, 150, 150]], [0, 0])]
    gt = coco_ground_truth(recs, CLASSES)
    dets = np.array([[300, 200, 350, 250], [0, 0, 50, 50], [100, 100, 150, 150]], dtype=np.float64)
    res = coco_evaluate(gt, to_coco_results(1, dets, np.array([0.9, 0.8, 0.7]), np.array([0, 0, 0])), CLASSES)
    assert res.metrics["AP50"] == pytest.approx(2 / 3, abs=1e-6)


def test_ignore_boxes_are_crowd():
    recs = [_record(0, [[0, 0, 50, 50], [100, 100, 150, 150]], [0, 0], ignore=[False, True])]
    gt = coco_ground_truth(recs, CLASSES)
    dets = np.array([[0, 0, 50, 50], [100, 100, 150, 150]], dtype=np.float64)
    # the detection on the ignored box is neither a true nor a false positive
    res = coco_evaluate(gt, to_coco_results(1, dets, np.array([0.7, 0.9]), np.array([0, 0])), CLASSES)
    assert res.metrics["AP"] == pytest.approx(1.0)
    assert res.per_class["a"]["num_gt"] == 1


def test_no_detections_is_zero_not_an_error():
    gt = coco_ground_truth(_records(), CLASSES)
    res = coco_evaluate(gt, [], CLASSES)
    assert res.metrics["AP"] == 0.0 and res.per_class["a"]["AP"] == 0.0
