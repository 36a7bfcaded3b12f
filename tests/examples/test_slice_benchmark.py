"""examples/slice_benchmark.py with a tiny model and a few images: three modes scored and timed."""

import json

from examples_support import load_example

TINY = {"backbone": "resnet18", "backbone_weights": "", "freeze_bn": False, "fpn_levels": "3-5", "fpn_channels": 32,
        "head_width": 32, "head_depth": 1, "batch_size": 4, "epochs": 1, "time": None, "anchors": "manual",
        "anchor_sizes": "", "verbose": False, "ema": False}


def test_slice_benchmark_scores_whole_and_sliced(tmp_path, capsys):
    rows = load_example("slice_benchmark").main([
        "--img-size", "64", "--images", "8", "--large", "160", "--test-images", "3", "--work", str(tmp_path),
        "--json", str(tmp_path / "rows.json"), "--train-args", json.dumps(TINY)])
    assert list(rows) == ["whole image at 64 px", "slices of 64 + whole", "slices of 64 only"]
    for r in rows.values():
        assert set(r) == {"AP", "AP50", "APs", "ms_per_image"} and r["ms_per_image"] > 0
        assert -1 <= r["AP"] <= 1  # COCOeval's -1: no ground truth in the area range
    assert json.loads((tmp_path / "rows.json").read_text()) == rows
    assert "AP_small" in capsys.readouterr().out
