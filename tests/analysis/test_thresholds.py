"""Precision / recall / F1 against the score threshold, and the F1-best threshold."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from retina_cli.analysis.diagnosis import diagnose
from retina_cli.analysis.thresholds import ClassMatches, threshold_curves
from retina_cli.data.records import ImageRecord
from retina_cli.engine.evaluate import coco_evaluate, coco_ground_truth


def test_f1_best_threshold_on_a_constructed_example():
    # 4 boxes; detections by score: tp .9, tp .8, fp .7, tp .6, fp .3, fp .2
    m = ClassMatches(np.array([0.9, 0.8, 0.7, 0.6, 0.3, 0.2]), np.array([1, 1, 0, 1, 0, 0], dtype=bool), 4)
    c = threshold_curves([m], ["a"], thresholds=np.array([0.0, 0.25, 0.5, 0.65, 0.75, 0.85, 0.95]))
    # at >= 0.5: 3 tp, 1 fp -> P .75, R .75, F1 .75; at >= 0.75: 2 tp -> P 1, R .5, F1 .667
    assert c.precision[0].tolist() == pytest.approx([0.5, 0.6, 0.75, 2 / 3, 1.0, 1.0, 1.0])
    assert c.recall[0].tolist() == pytest.approx([0.75, 0.75, 0.75, 0.5, 0.5, 0.25, 0.0])
    assert c.best["a"] == {"conf": 0.5, "precision": 0.75, "recall": 0.75, "f1": 0.75}
    assert c.best["all"]["conf"] == 0.5
    assert c.f1[0, -1] == 0.0  # nothing detected: precision 1 by convention, recall 0


def test_overall_threshold_averages_f1_over_classes():
    a = ClassMatches(np.array([0.9, 0.4]), np.array([True, True]), 2)  # best at any t <= .4
    b = ClassMatches(np.array([0.9, 0.4]), np.array([True, False]), 1)  # best at .41-.9
    c = threshold_curves([a, b], ["a", "b"], thresholds=np.array([0.3, 0.5]))
    # t .3: a F1 1, b P .5 R 1 F1 .667 -> mean .833; t .5: a P1 R.5 F1 .667, b F1 1 -> .833: first wins
    assert c.best["a"]["conf"] == 0.3 and c.best["b"]["conf"] == 0.5
    assert c.best["all"]["f1"] == pytest.approx(0.8333, abs=1e-4)
    empty = ClassMatches(np.zeros(0), np.zeros(0, dtype=bool), 0)
    c2 = threshold_curves([a, empty], ["a", "none"], thresholds=np.array([0.3, 0.5]))
    assert c2.best["all"]["f1"] == 1.0  # a class without boxes does not drag the mean down


def test_coco_matching_feeds_the_curves():
    recs = [
        ImageRecord(Path("a.jpg"), 100, 100, np.array([[0, 0, 20, 20], [50, 50, 80, 80]], np.float32), np.array([0, 0]), np.zeros(2, bool)),
        ImageRecord(Path("b.jpg"), 100, 100, np.array([[10, 10, 40, 40]], np.float32), np.array([1]), np.zeros(1, bool)),
    ]
    results = [
        {"image_id": 1, "category_id": 1, "bbox": [0, 0, 20, 20], "score": 0.9},
        {"image_id": 1, "category_id": 1, "bbox": [60, 0, 20, 20], "score": 0.8},  # fp
        {"image_id": 1, "category_id": 1, "bbox": [50, 50, 30, 30], "score": 0.3},
        {"image_id": 2, "category_id": 2, "bbox": [10, 10, 30, 30], "score": 0.7},
    ]
    res = coco_evaluate(coco_ground_truth(recs, ["a", "b"]), results, ["a", "b"])
    assert [m.num_gt for m in res.matches] == [2, 1]
    order = np.argsort(-res.matches[0].scores)
    assert res.matches[0].tp[order].tolist() == [True, False, True]
    d = diagnose(res, recs, ["a", "b"])
    assert d.curves.best["a"]["f1"] == pytest.approx(0.8, abs=1e-4)  # t <= .3: P 2/3, R 1
    assert d.curves.best["b"]["f1"] == 1.0
    at_half = diagnose(res, recs, ["a", "b"], conf=0.5)
    assert at_half.errors.errors["missed"] == 1 and at_half.errors.errors["bkg"] == 1
    assert at_half.to_dict()["confusion"]["counts"] == [[1, 0, 1], [0, 1, 0], [1, 0, 0]]


def test_no_detections_every_box_is_missed():
    recs = [ImageRecord(Path("a.jpg"), 100, 100, np.array([[0, 0, 20, 20], [5, 5, 9, 9]], np.float32),
                        np.array([0, 1]), np.array([False, True]))]
    res = coco_evaluate(coco_ground_truth(recs, ["a", "b"]), [], ["a", "b"])
    d = diagnose(res, recs, ["a", "b"])
    assert d.errors.errors["missed"] == 1  # the ignored box is not counted
    assert d.curves.best["a"]["f1"] == 0.0 and d.curves.recall.max() == 0.0
