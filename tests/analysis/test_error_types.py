"""Confusion matrix and TIDE error types against hand-counted cases."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from retina_cli.analysis.errors import analyse_errors, image_errors
from retina_cli.data.records import ImageRecord

NAMES = ("cat", "dog")


def _rec(boxes, labels, ignore=None):
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    labels = np.asarray(labels, dtype=np.int64)
    ignore = np.zeros(len(labels), dtype=bool) if ignore is None else np.asarray(ignore, dtype=bool)
    return ImageRecord(Path("x.jpg"), 200, 200, boxes, labels, ignore)


def _det(image_index, box, label, score):
    x1, y1, x2, y2 = box
    return {"image_id": image_index + 1, "category_id": label + 1, "bbox": [x1, y1, x2 - x1, y2 - y1], "score": score}


def test_each_error_type_once():
    gt = _rec([[0, 0, 10, 10], [50, 50, 70, 70], [100, 100, 120, 120], [150, 150, 170, 170]], [0, 0, 1, 0])
    dets = [
        _det(0, (0, 0, 10, 10), 0, 0.9),       # tp on box 0
        _det(0, (0, 0, 10, 11), 0, 0.8),       # dupe of box 0 (IoU 0.91, box taken)
        _det(0, (50, 50, 70, 70), 1, 0.7),     # cls: dog on the cat box 1
        _det(0, (100, 100, 114, 120), 1, 0.6),  # tp on the dog box 2 (IoU 14/20 = 0.7)
        _det(0, (150, 150, 162, 162), 1, 0.5),  # both: wrong class, IoU 144/400 = 0.36
        _det(0, (180, 0, 190, 10), 0, 0.4),    # bkg: touches nothing
        _det(0, (5, 5, 9, 9), 1, 0.01),        # under conf: dropped
    ]
    a = analyse_errors([gt], dets, NAMES, conf=0.05, iou=0.5)
    im = a.images[0]
    assert im.det_type == ["tp", "dupe", "cls", "tp", "both", "bkg"]
    assert a.errors == {"cls": 1, "loc": 0, "both": 1, "dupe": 1, "bkg": 1, "missed": 1}  # box 3 (cat) missed
    # rows true (cat, dog, background), columns predicted (cat, dog, background)
    assert a.matrix.tolist() == [
        [1, 1, 1],  # cat: one found, one taken for a dog, one missed
        [0, 1, 0],  # dog: found
        [2, 1, 0],  # background: the dupe and the bkg cat, the "both" dog
    ]


def test_loc_error_and_iou_threshold():
    gt = _rec([[0, 0, 20, 20]], [0])
    dets = [_det(0, (0, 0, 20, 8), 0, 0.9)]  # IoU 0.4: right class, poorly placed
    a = analyse_errors([gt], dets, NAMES, conf=0.05, iou=0.5)
    assert a.images[0].det_type == ["loc"]
    assert a.errors["loc"] == 1 and a.errors["missed"] == 1
    b = analyse_errors([gt], dets, NAMES, conf=0.05, iou=0.3)
    assert b.images[0].det_type == ["tp"] and b.errors["missed"] == 0


def test_same_class_match_wins_over_a_better_overlap_of_another_class():
    # the dog detection overlaps the cat box more, but a dog box is there too: it is a true positive
    gt = _rec([[0, 0, 20, 20], [2, 0, 22, 20]], [0, 1])
    dets = [_det(0, (0, 0, 20, 20), 1, 0.9)]
    im = analyse_errors([gt], dets, NAMES, conf=0.05).images[0]
    assert im.det_type == ["tp"]
    assert im.missed.tolist() == [0]


def test_ignored_boxes_count_for_nothing():
    gt = _rec([[0, 0, 20, 20], [50, 50, 60, 60]], [0, 1], ignore=[False, True])
    dets = [_det(0, (50, 50, 60, 60), 1, 0.9)]
    a = analyse_errors([gt], dets, NAMES, conf=0.05)
    assert a.images[0].det_type == ["ignored"]
    assert a.errors == {"cls": 0, "loc": 0, "both": 0, "dupe": 0, "bkg": 0, "missed": 1}
    assert a.matrix.sum() == 1  # only the missed cat


def test_normalised_rows_and_worst_images():
    recs = [_rec([[0, 0, 10, 10]], [0]), _rec([[0, 0, 10, 10], [20, 20, 30, 30]], [0, 1]), _rec([], [])]
    dets = [_det(0, (0, 0, 10, 10), 0, 0.9), _det(2, (0, 0, 5, 5), 1, 0.8)]
    a = analyse_errors(recs, dets, NAMES, conf=0.5)
    norm = a.normalised()
    assert norm[0].tolist() == [0.5, 0.0, 0.5]
    assert norm[1].tolist() == [0.0, 0.0, 1.0]
    worst = a.worst_images(5)
    assert [im.index for im in worst] == [1, 2]  # two misses, then one confident false positive
    assert worst[1].false_positive_score == 0.8
    d = a.to_dict()
    assert d["labels"] == ["cat", "dog", "background"] and d["counts"][2][1] == 1


def test_image_without_detections_or_ground_truth():
    none = image_errors(0, np.zeros((0, 4)), np.zeros(0), np.zeros(0), np.zeros((0, 4)), np.zeros(0), np.zeros(0), 0.5)
    assert none.det_type == [] and none.missed.size == 0
    only_gt = image_errors(0, [[0, 0, 5, 5]], [1], [False], np.zeros((0, 4)), np.zeros(0), np.zeros(0), 0.5)
    assert only_gt.missed.tolist() == [0]
