"""The MOTChallenge text format and the MOT metrics."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from retina_cli.engine.results import MissingExtraError
from retina_cli.errors import DataError
from retina_cli.tracking.metrics import mot_metrics
from retina_cli.tracking.mot import mot_rows, read_mot, write_mot


def test_mot_rows_are_top_left_width_height():
    rows = mot_rows(3, np.array([7, 8]), np.array([[10, 20, 40, 60], [0.5, 1.25, 2, 3]]), np.array([0.5, 0.91234]))
    assert rows == ["3,7,10.00,20.00,30.00,40.00,0.5000,-1,-1,-1", "3,8,0.50,1.25,1.50,1.75,0.9123,-1,-1,-1"]
    assert mot_rows(1, np.zeros(0), np.zeros((0, 4)), np.zeros(0)) == []


def test_round_trip(tmp_path):
    rows = mot_rows(1, np.array([1]), np.array([[10, 20, 40, 60]]), np.array([0.5]))
    rows += mot_rows(2, np.array([1, 2]), np.array([[12, 20, 42, 60], [100, 100, 110, 130]]), np.array([0.75, 0.25]))
    path = write_mot(tmp_path / "sub" / "seq.txt", rows)
    np.testing.assert_array_equal(read_mot(path), [[1, 1, 10, 20, 30, 40, 0.5, -1, -1, -1],
                                                   [2, 1, 12, 20, 30, 40, 0.75, -1, -1, -1],
                                                   [2, 2, 100, 100, 10, 30, 0.25, -1, -1, -1]])
    assert read_mot(write_mot(tmp_path / "empty.txt", [])).shape == (0, 7)


@pytest.mark.parametrize("bad, message", [
    ("1,2,3,x,5,6,1", "expected at least 7"), ("1,2,3,4,5,6", "expected at least 7"),
    ("1,2,3,4,5,6,1,1", "8 columns where the lines above have 9"),
])
def test_a_bad_line_names_the_file_and_line(tmp_path, bad, message):
    path = tmp_path / "gt.txt"
    path.write_text(f"1,1,0,0,10,10,1,0,1\n\n{bad}\n")
    with pytest.raises(DataError, match=message) as err:
        read_mot(path)
    assert str(err.value).startswith(f"{path}:3: ") and "\n" not in str(err.value)
    with pytest.raises(DataError, match="cannot read"):
        read_mot(tmp_path / "missing.txt")


GT = np.array([[1, 1, 0, 0, 10, 10, 1, 0, 1], [2, 1, 1, 0, 10, 10, 1, 0, 1], [3, 1, 2, 0, 10, 10, 1, 0, 1],
               [1, 2, 50, 50, 10, 10, 1, 0, 1], [2, 3, 200, 200, 10, 10, 0, 0, 1]], dtype=np.float64)  # last: ignored


def test_metrics_by_hand():
    # object 1 is followed by id 5 on frames 1-2, then by id 6 (a switch); object 2 is missed;
    # id 7 on frame 2 is a false positive. 4 gt boxes: MOTA = 1 - (1 miss + 1 fp + 1 switch) / 4
    pred = np.array([[1, 5, 0, 0, 10, 10, 0.9], [2, 5, 1, 0, 10, 10, 0.9], [3, 6, 2, 0, 10, 10, 0.9],
                     [2, 7, 80, 80, 5, 5, 0.9]])
    m = mot_metrics(GT, pred)
    assert (m["mota"], m["idf1"], m["precision"], m["recall"], m["motp"]) == (0.25, 0.5, 0.75, 0.75, 1.0)
    assert (m["id_switches"], m["false_positives"], m["misses"], m["num_frames"], m["num_objects"]) == (1, 1, 1, 3, 4)
    assert (m["mostly_tracked"], m["mostly_lost"], m["num_gt_tracks"], m["num_predictions"]) == (1, 1, 2, 4)


def test_the_iou_threshold():
    pred = GT[:4, :7].copy()
    pred[:, 2] += 4  # 6 of 10 px overlap: IoU 60 / 140 = 0.43
    assert mot_metrics(GT, pred)["mota"] == -1.0  # 4 misses and 4 false positives
    m = mot_metrics(GT, pred, iou=0.4)
    assert m["mota"] == 1.0 and m["idf1"] == 1.0 and np.isclose(m["motp"], 60 / 140)


def test_without_motmetrics_the_extra_is_named(monkeypatch):
    monkeypatch.setitem(sys.modules, "motmetrics", None)
    with pytest.raises(MissingExtraError, match=r"pip install 'retina-cli\[track-eval\]'"):
        mot_metrics(GT, GT)


def test_a_prediction_on_an_ignored_box_is_neither_hit_nor_false_positive():
    # the 4 considered gt boxes followed exactly, one prediction on the ignored box (frame 2, at
    # 200,200) and one on nothing: only the last is a false positive
    pred = np.concatenate((GT[:4, :7], [[2, 9, 201, 200, 10, 10, 0.9], [3, 8, 120, 120, 10, 10, 0.9]]))
    m = mot_metrics(GT, pred)
    assert (m["false_positives"], m["misses"], m["num_predictions"], m["num_objects"]) == (1, 0, 5, 4)
    assert m["mota"] == 0.75
    # a prediction the matching gives to a considered box stays, even if it also overlaps the ignored one
    both = np.array([[2, 1, 1, 0, 10, 10, 1, 0, 1], [2, 2, 3, 0, 10, 10, 0, 0, 1]], dtype=np.float64)
    m = mot_metrics(both, np.array([[2, 4, 1, 0, 10, 10, 0.9]]))
    assert (m["mota"], m["false_positives"], m["num_predictions"]) == (1.0, 0, 1)
