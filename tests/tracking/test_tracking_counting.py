"""Line counting on scripted trajectories: every count is a literal."""

from __future__ import annotations

import json

import numpy as np
import pytest

from retina_cli.errors import ConfigError
from retina_cli.tracking.counting import CountLine, Crossing, LineCounter

NAMES = ("circle", "square", "triangle")
UP = CountLine(100, 200, 100, 0)  # drawn upwards: its right is x > 100, so left -> right is "in"
ACROSS = CountLine(0, 100, 200, 100)  # drawn left to right: its right is below (y > 100)


def feed(counter: LineCounter, tracks: dict[int, tuple[int, list]]) -> list[Crossing]:
    """tracks: id -> (class, [centre (x, y) or None per frame]); boxes are 10 px squares round the centres."""
    frames = max(len(path) for _, path in tracks.values())
    out = []
    for f in range(frames):
        here = [(tid, k, path[f]) for tid, (k, path) in tracks.items() if f < len(path) and path[f] is not None]
        ids = np.array([t for t, _, _ in here], dtype=np.int64)
        labels = np.array([k for _, k, _ in here], dtype=np.int64)
        boxes = np.array([[x - 5, y - 5, x + 5, y + 5] for _, _, (x, y) in here], dtype=np.float32).reshape(-1, 4)
        out += counter.update(f, ids, boxes, labels)
    return out


def xs(*values, y=50.0):
    return [(float(x), y) for x in values]


def test_the_side_is_the_cross_product_sign_right_positive_in_image_coordinates():
    assert UP.side(np.array([[150.0, 50.0], [50.0, 50.0], [100.0, 10.0]])).tolist() == [10000.0, -10000.0, 0.0]
    assert ACROSS.side(np.array([[50.0, 150.0], [50.0, 50.0]])).tolist() == [10000.0, -10000.0]


def test_left_to_right_is_in_and_right_to_left_is_out():
    counter = LineCounter([UP], NAMES)
    crossings = feed(counter, {1: (0, xs(80, 90, 110, 120)), 2: (1, xs(130, 105, 95))})
    assert crossings == [Crossing(2, 0, 1, 0, "in"), Crossing(2, 0, 2, 1, "out")]
    assert counter.counts() == [{"line": [100, 200, 100, 0], "in": {"circle": 1}, "out": {"square": 1},
                                 "total_in": 1, "total_out": 1}]
    down = LineCounter([ACROSS], NAMES)  # moving down across a line drawn left to right: "in"
    feed(down, {1: (2, [(50.0, 80.0), (50.0, 120.0)]), 2: (2, [(60.0, 120.0), (60.0, 80.0)])})
    assert down.counts()[0]["in"] == {"triangle": 1} and down.counts()[0]["out"] == {"triangle": 1}


def test_back_and_forth_counts_once_by_the_first_crossing():
    counter = LineCounter([UP], NAMES)
    crossings = feed(counter, {7: (0, xs(90, 110, 90, 110, 90, 110))})  # 5 crossings, first one "in"
    assert crossings == [Crossing(1, 0, 7, 0, "in")]
    assert (counter.counts()[0]["total_in"], counter.counts()[0]["total_out"]) == (1, 0)


def test_passing_beyond_the_end_of_the_segment_is_not_counted():
    counter = LineCounter([UP], NAMES)  # the segment spans y 0..200
    feed(counter, {1: (0, xs(80, 120, y=250.0)), 2: (0, xs(80, 120, y=-5.0)), 3: (0, xs(80, 120, y=199.0))})
    assert counter.counts()[0]["total_in"] == 1 and counter.crossings[0].track_id == 3


def test_touching_the_line_and_going_back_is_not_counted_but_stopping_on_it_and_going_on_is():
    counter = LineCounter([UP], NAMES)
    feed(counter, {1: (0, xs(90, 95, 100, 100, 95, 90)), 2: (0, xs(90, 100, 100, 110))})
    assert counter.crossings == [Crossing(3, 0, 2, 0, "in")]


def test_two_classes_are_counted_apart():
    counter = LineCounter([UP], NAMES)
    feed(counter, {1: (0, xs(90, 110)), 2: (1, xs(90, 110)), 3: (1, xs(95, 105)), 4: (2, xs(110, 90))})
    c = counter.counts()[0]
    assert c["in"] == {"circle": 1, "square": 2} and c["out"] == {"triangle": 1}
    assert (c["total_in"], c["total_out"]) == (3, 1)


def test_two_lines_are_counted_each():
    counter = LineCounter([UP, CountLine(150, 0, 150, 200)], NAMES)  # the second drawn downwards
    feed(counter, {1: (0, xs(80, 120, 160)), 2: (0, xs(140, 160))})
    totals = [(c["total_in"], c["total_out"]) for c in counter.counts()]
    assert totals == [(1, 0), (0, 2)]
    assert [(c.frame, c.line, c.track_id) for c in counter.crossings] == [(1, 0, 1), (1, 1, 2), (2, 1, 1)]


def test_a_track_seen_again_later_is_counted_from_where_it_was_last_seen():
    counter = LineCounter([UP], NAMES)
    feed(counter, {1: (0, xs(90) + [None] * 20 + xs(110))})
    assert counter.counts()[0]["total_in"] == 1


def test_forgotten_tracks_restart_but_counted_ids_are_never_recounted():
    counter = LineCounter([UP], NAMES, forget_after=5)
    # id 1 crosses, vanishes for 10 frames (forgotten), comes back on the left and crosses again;
    # id 2 is forgotten on the left and comes back on the right: no crossing seen
    feed(counter, {1: (0, xs(90, 110) + [None] * 10 + xs(90, 110)), 2: (0, xs(90) + [None] * 10 + xs(110))})
    assert counter.crossings == [Crossing(1, 0, 1, 0, "in")]
    assert counter._ids.tolist() == [1, 2]  # both seen on frame 11 or 13: remembered; nothing else kept


def test_to_dict_is_json():
    counter = LineCounter([UP], NAMES)
    feed(counter, {4: (1, xs(110, 90))})
    assert json.loads(json.dumps(counter.to_dict())) == {
        "lines": [{"line": [100, 200, 100, 0], "in": {}, "out": {"square": 1}, "total_in": 0, "total_out": 1}],
        "crossings": [{"frame": 1, "line": 0, "track_id": 4, "class_id": 1, "class": "square", "direction": "out"}],
    }


def test_parse():
    assert CountLine.parse("0,240, 640.5,240") == CountLine(0.0, 240.0, 640.5, 240.0)
    for bad in ("1,2,3", "a,b,c,d", "1,2,3,4,5", "1,2,inf,4"):
        with pytest.raises(ConfigError, match="X1,Y1,X2,Y2") as err:
            CountLine.parse(bad)
        assert repr(bad) in str(err.value)
    with pytest.raises(ConfigError, match="zero length") as err:
        CountLine.parse("5,5,5,5")
    assert "'5,5,5,5'" in str(err.value)
