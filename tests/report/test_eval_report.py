"""The evaluation's report files and report.html, checked in a real headless browser."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from retina_cli.analysis.diagnosis import diagnose
from retina_cli.data.records import ImageRecord
from retina_cli.engine.evaluate import coco_evaluate, coco_ground_truth
from retina_cli.report import html as H
from retina_cli.report.evaluation import write_diagnosis, write_eval_report
from tests.browser import load_page

NAMES = ["cat", "dog"]


def _split(tmp_path: Path):
    recs = []
    for i in range(3):
        path = tmp_path / "images" / f"im{i}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(path), np.full((120, 160, 3), 40 * i, np.uint8))
        recs.append(ImageRecord(path, 160, 120, np.array([[10, 10, 60, 60], [80, 20, 150, 100]], np.float32),
                                np.array([0, 1]), np.zeros(2, bool)))
    results = [
        {"image_id": 1, "category_id": 1, "bbox": [10, 10, 50, 50], "score": 0.9},
        {"image_id": 1, "category_id": 2, "bbox": [80, 20, 70, 80], "score": 0.8},
        {"image_id": 2, "category_id": 2, "bbox": [10, 10, 50, 50], "score": 0.7},  # cat taken for a dog
        {"image_id": 3, "category_id": 1, "bbox": [100, 0, 20, 10], "score": 0.6},  # background
    ]
    res = coco_evaluate(coco_ground_truth(recs, NAMES), results, NAMES)
    return recs, res


def test_report_files_and_page_in_a_browser(tmp_path):
    recs, res = _split(tmp_path)
    run = tmp_path / "run"
    run.mkdir()
    diag = diagnose(res, recs, NAMES, conf=0.5)
    files = write_diagnosis(diag, recs, run)
    conf = json.loads((run / "confusion_matrix.json").read_text())
    assert conf["labels"] == ["cat", "dog", "background"]
    assert conf["counts"] == [[1, 1, 1], [0, 1, 2], [1, 0, 0]]
    assert [g.path.name for g in files["gallery"]] == ["01_im2.png", "02_im1.png"]  # 2 missed + 1 bkg, then cls + missed
    page = write_eval_report(run, {"checkpoint": "best.pt", "split": "val", "images": 3}, res.metrics, res.per_class,
                             diag, files, None)
    shot = tmp_path / "report.png"
    seen = load_page(page, screenshot=shot)
    assert seen.errors == []
    assert len(seen.images) == 4 and all(ok for _, ok in seen.images)  # confusion, thresholds, 2 gallery images
    assert "Confusion matrix" in seen.text and "Deploy at --conf 0.50" in seen.text
    assert cv2.imread(str(shot)) is not None and cv2.imread(str(shot)).shape[0] > 900  # full page


def test_the_browser_check_sees_a_missing_image(tmp_path):
    page = H.Page("broken")
    page.add("x", H.image("nope.png", "missing"))
    seen = load_page(page.write(tmp_path / "p.html"))
    assert seen.images == [("nope.png", False)]
    assert any("nope.png" in e or "ERR_FILE_NOT_FOUND" in e for e in seen.errors)


def test_text_is_escaped():
    page = H.Page("<script>alert(1)</script>")
    page.add("a & b", H.table(["<b>"], [["<img src=x onerror=alert(1)>"]]))
    out = page.render()
    assert "<script>" not in out and "<img src=x" not in out and "&lt;script&gt;" in out
