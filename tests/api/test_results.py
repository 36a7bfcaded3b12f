"""`Result`: literal detections -> dict / JSON round trip, labels, plot pixels, save, supervision."""

from __future__ import annotations

import json
import sys

import cv2
import numpy as np
import pytest

from retina_cli.engine.results import MissingExtraError, Result
from retina_cli.drawing.boxes import PALETTE, draw_boxes
from retina_cli.errors import ConfigError, RetinaError

NAMES = ("cat", "dog", "bird")


def sample(image: np.ndarray | None = None) -> Result:
    return Result(
        boxes=np.array([[10.25, 5.5, 40.0, 30.125], [0.0, 0.0, 7.3, 9.1]], np.float32),
        scores=np.array([0.875, 0.4], np.float32), class_ids=np.array([2, 0]), names=NAMES,
        orig_shape=(48, 64), path="a.png", frame=3, image=image,
    )


def test_fields_labels_and_dict_round_trip_exactly():
    res = sample()
    assert len(res) == 2 and res.labels == ("bird", "cat")
    assert res.boxes.dtype == np.float32 and res.class_ids.dtype == np.int64
    d = json.loads(res.to_json())
    assert d == res.to_dict()
    assert d["orig_shape"] == [48, 64] and d["frame"] == 3 and d["path"] == "a.png" and d["names"] == list(NAMES)
    assert d["detections"][0] == {"box": [10.25, 5.5, 40.0, 30.125], "score": 0.875, "class_id": 2, "label": "bird"}
    back = Result.from_dict(d)
    assert np.array_equal(back.boxes, res.boxes) and np.array_equal(back.scores, res.scores)  # float32 exactly
    assert np.array_equal(back.class_ids, res.class_ids) and back.names == NAMES
    assert (back.orig_shape, back.path, back.frame, back.image) == ((48, 64), "a.png", 3, None)
    empty = Result.from_dict({"names": ["a"], "orig_shape": [4, 5], "detections": []})
    assert len(empty) == 0 and empty.boxes.shape == (0, 4) and empty.to_dict()["detections"] == []
    with pytest.raises(ValueError, match="differ in length"):
        Result(np.zeros((2, 4)), np.zeros(1), np.zeros(2), NAMES, (4, 4))


def test_plot_is_bgr_with_the_class_colour_and_save_writes_it(tmp_path):
    image = np.zeros((48, 64, 3), np.uint8)
    res = sample(image)
    drawn = res.plot(line_width=3, labels=False)
    assert drawn.shape == (48, 64, 3) and drawn.dtype == np.uint8 and not image.any()  # a copy
    rgb = draw_boxes(image, res.boxes, res.class_ids, NAMES, res.scores, lw=3, show_labels=False)
    assert np.array_equal(drawn, rgb[:, :, ::-1])
    # the middle of box 0's left edge (x = 10) is class 2's palette colour, in BGR order
    assert tuple(drawn[18, 10]) == PALETTE[2][::-1]
    path = res.save(tmp_path / "out.png")
    assert np.array_equal(cv2.imread(str(path)), res.plot())
    with pytest.raises(ConfigError, match="holds no image"):
        Result.from_dict(res.to_dict()).plot()
    assert np.array_equal(Result.from_dict(res.to_dict()).plot(image=image), res.plot())


def test_to_supervision_fields_equal():
    sv = pytest.importorskip("supervision")
    det = sample().to_supervision()
    assert isinstance(det, sv.Detections) and len(det) == 2
    assert np.array_equal(det.xyxy, sample().boxes) and np.array_equal(det.confidence, sample().scores)
    assert det.class_id.tolist() == [2, 0] and det.data["class_name"].tolist() == ["bird", "cat"]


def test_to_supervision_without_the_package_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "supervision", None)  # import supervision -> ImportError
    with pytest.raises(MissingExtraError, match=r"pip install 'retina-cli\[supervision\]'") as info:
        sample().to_supervision()
    assert isinstance(info.value, RetinaError)


def test_track_ids_round_trip_select_and_label():
    res = sample(np.zeros((48, 64, 3), np.uint8)).with_tracks(np.array([7, 3]))
    assert res.track_ids.dtype == np.int64 and res.track_ids.tolist() == [7, 3]
    d = res.to_dict()
    assert [x["track_id"] for x in d["detections"]] == [7, 3]
    back = Result.from_dict(d)
    assert back.track_ids.tolist() == [7, 3]
    assert Result.from_dict(sample().to_dict()).track_ids is None and "track_id" not in sample().to_dict()["detections"][0]
    one = res.select(np.array([1]))
    assert one.track_ids.tolist() == [3] and one.labels == ("cat",) and one.image is res.image
    assert res.select(np.array([True, False])).track_ids.tolist() == [7]
    with pytest.raises(ValueError, match="track_ids"):
        sample().with_tracks(np.array([1, 2, 3]))
    # the id is written before the class: "#7 bird 0.88" is wider than "bird 0.88", so more pixels change
    plain, tracked = sample(np.zeros((48, 64, 3), np.uint8)).plot(line_width=1), res.plot(line_width=1)
    assert (tracked != 0).any(axis=2).sum() > (plain != 0).any(axis=2).sum()


def test_to_supervision_carries_the_track_ids():
    pytest.importorskip("supervision")
    det = sample().with_tracks(np.array([7, 3])).to_supervision()
    assert det.tracker_id.tolist() == [7, 3]
    assert sample().to_supervision().tracker_id is None
