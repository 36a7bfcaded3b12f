"""`retina anchors` (coverage report, search, flags, --json, --plot) and `retina train --anchors auto`."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from retina_cli.anchors.search import search_anchors
from retina_cli.cli import app as app_module
from retina_cli.cli.anchors import anchor_flags
from retina_cli.cli.options import parse_floats
from retina_cli.config import AnchorConfig
from retina_cli.data import load_dataset
from retina_cli.anchors.fit import letterboxed_boxes
from retina_cli.engine.checkpoint import model_from_checkpoint
from retina_cli.data.synthetic import write_yolo_dataset

runner = CliRunner()
ONE_ANCHOR = ["--img-size", "64", "--fpn-levels", "3-3", "--anchor-sizes", "16", "--anchor-ratios", "1", "--anchor-scales", "1"]


@pytest.fixture(scope="module", autouse=True)
def registered():
    app_module._register()


@pytest.fixture()
def voc(tmp_path) -> Path:
    """Two 64x48 images; a.jpg: cat [8, 8, 40, 40] + dog [40, 0, 56, 16]; b.jpg: cat [0, 0, 64, 48]."""
    root = tmp_path / "voc"
    (root / "Annotations").mkdir(parents=True)
    (root / "JPEGImages").mkdir()
    objs = {"a": [("cat", 8, 8, 40, 40), ("dog", 40, 0, 56, 16)], "b": [("cat", 0, 0, 64, 48)]}
    for name, boxes in objs.items():
        cv2.imwrite(str(root / "JPEGImages" / f"{name}.jpg"), np.full((48, 64, 3), 200, np.uint8))
        body = "".join(
            f"<object><name>{c}</name><bndbox><xmin>{a}</xmin><ymin>{b}</ymin><xmax>{x}</xmax><ymax>{y}</ymax></bndbox></object>"
            for c, a, b, x, y in boxes
        )
        (root / "Annotations" / f"{name}.xml").write_text(f"<annotation><filename>{name}.jpg</filename>{body}</annotation>")
    return root


def test_json_reports_hand_computed_coverage_and_flags_that_parse(voc):
    res = runner.invoke(app_module.app, ["anchors", str(voc), "--split", "all", *ONE_ANCHOR, "--generations", "30", "--json"])
    assert res.exit_code == 0, res.output
    payload = json.loads(res.output)
    before, after = payload["before"], payload["after"]
    # letterboxed to 64 px (8 px bars top and bottom), one 16 px anchor per 8 px cell:
    # cat 32x32 at centre (24, 32): IoU 0.25; dog 16x16 on a cell centre: 1.0; cat 64x48: 256 / 3072
    assert before["boxes"] == 3 and before["coverage"] == pytest.approx(1 / 3, abs=1e-4)
    assert before["mean_best_iou"] == pytest.approx((0.25 + 1.0 + 256 / 3072) / 3, abs=1e-4)
    assert before["per_class"] == {"cat": 0.0, "dog": 1.0}
    assert before["per_size"] == {"small": 1.0, "medium": 0.0, "large": None}  # both cats are medium
    assert before["mean_positives"] is not None and before["positives_boxes"] == 3
    assert after["coverage"] > before["coverage"] and payload["changed"]
    # the printed flags are the searched anchors, in the format `retina train` parses
    flags = payload["flags"].split()
    assert flags[0::2] == ["--anchor-sizes", "--anchor-ratios", "--anchor-scales"]
    parsed = [list(parse_floats(v, f)) for f, v in zip(flags[0::2], flags[1::2])]
    assert parsed == [after["anchors"]["sizes"], after["anchors"]["ratios"], after["anchors"]["scales"]]
    assert len(after["anchors"]["ratios"]) * len(after["anchors"]["scales"]) == 1


def test_table_prints_before_after_and_the_flags_and_writes_the_plot(voc, tmp_path):
    plot = tmp_path / "iou.png"
    res = runner.invoke(app_module.app, ["anchors", str(voc), "--split", "all", *ONE_ANCHOR, "--generations", "30",
                                         "--plot", str(plot)], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    flat = " ".join(res.output.split())
    # one anchor shape per cell cannot fit the 16 px dog and the two 32-64 px cats: the cats win
    assert "│ all │ 3 │ 33.33 │ 66.67 │" in flat and "│ class cat │ 2 │ 0.00 │ 100.00 │" in flat
    assert "before: --anchor-sizes 16 --anchor-ratios 1 --anchor-scales 1" in flat
    assert "after: --anchor-sizes" in flat
    assert cv2.imread(str(plot)) is not None


def test_sizes_that_do_not_match_the_levels_are_a_one_line_error(voc):
    res = runner.invoke(app_module.app, ["anchors", str(voc), "--fpn-levels", "3-4", "--anchor-sizes", "16"])
    assert res.exit_code != 0 and "one size per level" in str(res.exception)


def test_train_anchors_auto_stores_the_searched_anchors_in_the_checkpoint(tmp_path):
    data = write_yolo_dataset(tmp_path / "data", n_train=6, n_val=2, size=(64, 80), seed=3, object_size=(10, 20))
    flags = ["--backbone", "resnet18", "--img-size", "64", "--fpn-levels", "3-5", "--fpn-channels", "16",
             "--head-width", "16", "--head-depth", "1", "--workers", "0", "--batch", "4", "--epochs", "1"]
    res = runner.invoke(app_module.app, ["train", str(data), *flags, "--anchors", "auto", "--project", str(tmp_path / "runs")])
    assert res.exit_code == 0, res.output
    # the same deterministic search on the training split, outside the CLI
    records = load_dataset(data).records("train")
    boxes, _ = letterboxed_boxes(records, 64)
    start = AnchorConfig(size_per_stride=3.0)  # the CPU default preset's anchors: 3 x stride
    expected = search_anchors(boxes, start, (3, 4, 5), 64)
    assert expected != start and len(expected.sizes) == 3
    assert "anchors auto:" in res.output and anchor_flags(expected, (3, 4, 5)) in " ".join(res.output.split())
    model, ckpt = model_from_checkpoint(tmp_path / "runs" / "exp" / "last.pt")
    assert model.cfg.anchors == expected  # eval and predict rebuild the model through model_from_checkpoint
    assert ckpt["model_config"]["anchors"]["sizes"] == list(expected.sizes)
    res = runner.invoke(app_module.app, ["eval", str(tmp_path / "runs" / "exp" / "last.pt"), str(data), "--workers", "0",
                                         "--json", "--project", str(tmp_path / "eval")])
    assert res.exit_code == 0, res.output
    assert "AP50" in json.loads(res.output)["metrics"]


def test_train_anchors_rejects_other_values(tmp_path):
    res = runner.invoke(app_module.app, ["train", str(tmp_path), "--anchors", "kmeans"])
    assert res.exit_code != 0 and "--anchors must be check, auto or manual" in str(res.exception)
