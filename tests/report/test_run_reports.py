"""report.html of `retina train` and `retina eval` runs, opened in headless Chromium; the eval
CLI's threshold suggestion and the API's diagnosis."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import retina_cli
from retina_cli.cli.app import _register, app
from retina_cli.data.synthetic import write_yolo_dataset
from tests.browser import load_page

_register()
runner = CliRunner()
TINY = ["--backbone", "resnet18", "--img-size", "64", "--fpn-levels", "3-5", "--fpn-channels", "32",
        "--head-width", "32", "--head-depth", "1", "--workers", "0", "--batch", "4"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    data = write_yolo_dataset(tmp_path_factory.mktemp("rep_data"), n_train=8, n_val=4, size=(64, 80), seed=5,
                              object_size=(14, 30))
    project = tmp_path_factory.mktemp("rep_runs")
    result = runner.invoke(app, ["train", str(data), *TINY, "--epochs", "2", "--project", str(project)])
    assert result.exit_code == 0, result.output
    return data, project / "exp"


def test_train_run_has_a_report_that_loads_in_a_browser(run, tmp_path):
    _, exp = run
    page = exp / "report.html"
    assert page.is_file() and (exp / "confusion_matrix.json").is_file()
    seen = load_page(page, screenshot=tmp_path / "train.png")
    assert seen.errors == []
    assert seen.images and all(ok for _, ok in seen.images), seen.images
    assert {"curves.png", "confusion_matrix.png", "threshold_curves.png"} <= {Path(src).name for src, _ in seen.images}
    for heading in ("Run", "Data", "Epochs", "Per class", "Confusion matrix", "Errors", "Settings"):
        assert heading in seen.text
    assert (tmp_path / "train.png").stat().st_size > 10_000


def test_eval_writes_the_diagnosis_and_suggests_a_threshold(run, tmp_path):
    data, exp = run
    result = runner.invoke(app, ["eval", str(exp / "best.pt"), str(data), "--workers", "0", "--conf", "0.01",
                                 "--project", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert result.output.count("suggested: --conf") == 1
    out = tmp_path / "exp"
    metrics = json.loads((out / "metrics.json").read_text())
    conf = json.loads((out / "confusion_matrix.json").read_text())
    assert metrics["suggested_conf"] == conf["conf"] and 0 <= conf["conf"] <= 1
    assert set(metrics["best_thresholds"]) == {"circle", "square", "triangle", "all"}
    counts = np.array(conf["counts"])
    # every box of the split lands once in its row: found, confused or missed
    boxes = sum(v["num_gt"] for v in metrics["per_class"].values())
    assert counts[:3].sum() == boxes
    assert metrics["errors"]["missed"] == counts[:3, 3].sum()
    thresholds = json.loads((out / "thresholds.json").read_text())
    assert len(thresholds["thresholds"]) == 101
    seen = load_page(out / "report.html", screenshot=tmp_path / "eval.png")
    assert seen.errors == [] and seen.images and all(ok for _, ok in seen.images)
    assert "Deploy at --conf" in seen.text


def test_api_val_returns_the_diagnosis(run):
    data, exp = run
    m = retina_cli.load(exp / "best.pt").val(data, conf=0.01)
    assert m.diagnosis is not None and m.best_conf == m.diagnosis.conf
    assert m.confusion_matrix.shape == (4, 4)
    assert "diagnosis" in m.to_dict() and m.to_dict()["diagnosis"]["confusion"]["labels"][-1] == "background"


@pytest.mark.skipif(not os.environ.get("RETINA_REPORT_DIR"), reason="set RETINA_REPORT_DIR to an eval run folder")
def test_screenshot_of_a_real_report_for_the_readme(tmp_path):
    """`RETINA_REPORT_DIR=runs/eval/exp pytest tests/report -k readme` writes docs/img/eval_report.jpg
    (the full page at half size)."""
    import cv2

    folder = Path(os.environ["RETINA_REPORT_DIR"])
    seen = load_page(folder / "report.html", screenshot=tmp_path / "page.png")
    assert seen.errors == [] and seen.images and all(ok for _, ok in seen.images)
    page = cv2.imread(str(tmp_path / "page.png"))
    half = cv2.resize(page, (page.shape[1] // 2, page.shape[0] // 2), interpolation=cv2.INTER_AREA)
    out = Path(__file__).resolve().parents[2] / "docs" / "img" / "eval_report.jpg"
    assert cv2.imwrite(str(out), half, [cv2.IMWRITE_JPEG_QUALITY, 80])
