"""`retina viz`: GT PNGs, mosaic, anchors report, detections side by side, run folders."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from retina_cli.cli import app as app_module
from retina_cli.engine.runs import next_run_dir

runner = CliRunner()


@pytest.fixture(scope="module", autouse=True)
def registered():
    app_module._register()


def make_voc(root: Path) -> Path:
    """Two 64x48 images; a.jpg: cat [8, 8, 40, 40] + dog [40, 0, 56, 16]; b.jpg: cat [0, 0, 64, 48]."""
    (root / "Annotations").mkdir(parents=True)
    (root / "JPEGImages").mkdir()
    objs = {"a": [("cat", 8, 8, 40, 40), ("dog", 40, 0, 56, 16)], "b": [("cat", 0, 0, 64, 48)]}
    for name, boxes in objs.items():
        img = np.full((48, 64, 3), 200, np.uint8)
        cv2.imwrite(str(root / "JPEGImages" / f"{name}.jpg"), img)
        body = "".join(
            f"<object><name>{c}</name><bndbox><xmin>{a}</xmin><ymin>{b}</ymin><xmax>{x}</xmax><ymax>{y}</ymax></bndbox></object>"
            for c, a, b, x, y in boxes
        )
        (root / "Annotations" / f"{name}.xml").write_text(f"<annotation><filename>{name}.jpg</filename>{body}</annotation>")
    return root


def coloured_fraction(path: Path) -> float:
    """Share of pixels that are not the flat grey background (drawn boxes and labels)."""
    img = cv2.imread(str(path))
    return float((np.abs(img.astype(int) - 200).max(axis=2) > 40).mean())


def test_viz_writes_one_png_per_image_with_boxes(tmp_path):
    data = make_voc(tmp_path / "voc")
    res = runner.invoke(app_module.app, ["viz", str(data), "--out", str(tmp_path / "out")])
    assert res.exit_code == 0, res.output
    pngs = sorted((tmp_path / "out").glob("*.png"))
    assert [p.name for p in pngs] == ["a.png", "b.png"]
    img = cv2.imread(str(pngs[0]))
    assert img.shape == (48, 64, 3)
    assert 0.05 < coloured_fraction(pngs[0]) < 0.9
    # the cat box edge on a.jpg is drawn in the cat colour (palette 0, RGB (31, 119, 180) -> BGR)
    assert np.abs(img[24, 8].astype(int) - [180, 119, 31]).max() < 40


def test_viz_mosaic_and_alias(tmp_path):
    data = make_voc(tmp_path / "voc")
    res = runner.invoke(app_module.app, ["visualize", str(data), "--mosaic", "--tile", "64", "--out", str(tmp_path / "m")])
    assert res.exit_code == 0, res.output
    (png,) = (tmp_path / "m").glob("*.png")
    assert png.name == "mosaic_000.png" and cv2.imread(str(png)).shape == (64, 128, 3)


def test_viz_anchors_reports_unmatched_boxes(tmp_path):
    data = make_voc(tmp_path / "voc")
    # one 16px anchor per cell at P3 only: the 32x32 cat (letterboxed to 64px input = 32x32) cannot reach IoU 0.5
    args = ["viz", str(data), "--anchors", "--img-size", "64", "--fpn-levels", "3-3", "--anchor-sizes", "16",
            "--anchor-ratios", "1", "--anchor-scales", "1", "--out", str(tmp_path / "a")]
    res = runner.invoke(app_module.app, args, env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    assert len(list((tmp_path / "a").glob("*.png"))) == 2
    # a: cat 32x32 (best IoU 0.25) unmatched, dog 16x16 sits exactly on an anchor; b: cat 64x48 (IoU 0.083) unmatched
    flat = " ".join(res.output.split())
    assert "│ cat │ medium │ 2 │ 2 │ 100.0 │" in flat
    assert "│ dog │ small │ 1 │ 0 │ 0.0 │" in flat
    assert "│ all │ all │ 3 │ 2 │ 66.7 │" in flat


def test_viz_detections_side_by_side_with_gt(tmp_path):
    data = make_voc(tmp_path / "voc")
    preds = [
        {"file_name": "a.jpg", "category_id": 1, "bbox": [44, 4, 16, 16], "score": 0.9},
        {"image_id": "b.jpg", "category_id": 0, "bbox": [2, 2, 50, 40], "score": 0.8},
        {"file_name": "a.jpg", "category_id": 0, "bbox": [0, 0, 5, 5], "score": 0.01},  # under --conf
        {"file_name": "zzz.jpg", "category_id": 0, "bbox": [0, 0, 5, 5], "score": 0.9},
    ]
    (tmp_path / "p.json").write_text(json.dumps(preds))
    res = runner.invoke(app_module.app, ["viz", str(data / "JPEGImages"), "--detections", str(tmp_path / "p.json"),
                                         "--gt", str(data), "--out", str(tmp_path / "d")], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    assert "1 detections" in res.output and "matched none of the images" in res.output
    img = cv2.imread(str(tmp_path / "d" / "a.png"))
    assert img.shape[1] == 64 * 2 + 8 and img.shape[0] > 48  # GT | gap | predictions, with a title band


def test_next_run_dir_counts_up(tmp_path):
    assert next_run_dir(tmp_path / "viz", None) == tmp_path / "viz" / "exp"
    assert next_run_dir(tmp_path / "viz", None) == tmp_path / "viz" / "exp2"
    assert next_run_dir(tmp_path / "viz", "x") == tmp_path / "viz" / "x"
    assert next_run_dir(tmp_path / "viz", "x") == tmp_path / "viz" / "x2"
    assert (tmp_path / "viz" / "exp2").is_dir()
