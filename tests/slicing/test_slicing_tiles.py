"""tile_windows: literal windows, the edge cases, and coverage by property; SliceConfig's checks."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from retina_cli.errors import ConfigError
from retina_cli.slicing.config import SliceConfig
from retina_cli.slicing.tiles import tile_windows


def test_a_1000_wide_600_high_image_in_400_px_windows_with_overlap_0_2():
    # stride round(400 * 0.8) = 320: x starts 0, 320, then 600 (right border); y starts 0, then 200
    expected = np.array([
        [0, 0, 400, 400], [320, 0, 720, 400], [600, 0, 1000, 400],
        [0, 200, 400, 600], [320, 200, 720, 600], [600, 200, 1000, 600],
    ])
    got = tile_windows(600, 1000, 400, 0.2)
    assert got.dtype == np.int64 and np.array_equal(got, expected)


def test_an_image_not_larger_than_the_window_is_one_window_the_image_itself():
    assert np.array_equal(tile_windows(300, 200, 400, 0.2), [[0, 0, 200, 300]])
    assert np.array_equal(tile_windows(400, 400, 400, 0.2), [[0, 0, 400, 400]])


def test_a_side_smaller_than_the_window_is_taken_whole():
    assert np.array_equal(tile_windows(300, 1000, 400, 0.2), [[0, 0, 400, 300], [320, 0, 720, 300], [600, 0, 1000, 300]])


def test_an_exact_fit_adds_no_extra_window_and_overlap_0_tiles_edge_to_edge():
    assert np.array_equal(tile_windows(400, 800, 400, 0.0), [[0, 0, 400, 400], [400, 0, 800, 400]])
    # 720 = 320 + 400: the regular start 320 is also the border-aligned one, taken once
    assert np.array_equal(tile_windows(400, 720, 400, 0.2), [[0, 0, 400, 400], [320, 0, 720, 400]])


@settings(max_examples=150, deadline=None)
@given(h=st.integers(1, 260), w=st.integers(1, 260), size=st.integers(10, 120), overlap=st.floats(0.0, 0.9))
def test_windows_cover_every_pixel_and_stay_inside_the_image(h, w, size, overlap):
    win = tile_windows(h, w, size, overlap)
    covered = np.zeros((h, w), dtype=bool)
    for x1, y1, x2, y2 in win:
        covered[y1:y2, x1:x2] = True
    assert covered.all()
    assert (win[:, :2] >= 0).all() and (win[:, 2] <= w).all() and (win[:, 3] <= h).all()
    assert ((win[:, 2] - win[:, 0]) == min(size, w)).all() and ((win[:, 3] - win[:, 1]) == min(size, h)).all()
    stride = round(size * (1 - overlap))
    for col in (0, 1):  # starts along each axis: strictly increasing, never more than a stride apart
        starts = np.unique(win[:, col])
        assert len(starts) * (len(np.unique(win[:, 1 - col]))) == len(win)
        assert (np.diff(starts) >= 1).all() and (np.diff(starts) <= stride).all()


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"size": 16}, "--slice must be an integer in [32, 8192]"),
    ({"size": 64, "overlap": 0.95}, "--slice-overlap must be a finite number in [0, 0.9], got 0.95"),
    ({"size": 64, "overlap": float("nan")}, "--slice-overlap must be a finite number in [0, 0.9], got nan"),
    ({"size": 64, "merge_thresh": 0.0}, "--slice-merge-thresh must be a finite number in (0, 1], got 0.0"),
    ({"size": 64, "merge": "wbf"}, "--slice-merge 'wbf': expected nms or nmm"),
    ({"size": 64, "full_image": "no"}, "--slice-full must be true or false, got 'no'"),
])
def test_slice_config_refuses_in_one_line_naming_the_flag(kwargs, message):
    with pytest.raises(ConfigError) as err:
        SliceConfig(**kwargs)
    assert str(err.value) == message or str(err.value).startswith(message)
    assert "\n" not in str(err.value)


def test_slice_config_keeps_plain_numbers():
    cfg = SliceConfig(np.int64(64), np.float32(0.25))
    assert type(cfg.size) is int and type(cfg.overlap) is float and cfg.overlap == 0.25
    assert cfg.describe() == "64 px windows, overlap 0.25, + full image, nms at 0.5"
