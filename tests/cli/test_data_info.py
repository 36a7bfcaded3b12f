"""`retina data info`: detection, per-split and per-class counts, histogram, summary, strict mode."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from retina_cli.cli import app as app_module
from retina_cli.errors import DataError

runner = CliRunner()


@pytest.fixture(scope="module", autouse=True)
def registered():
    app_module._register()


def make_yolo(root: Path) -> Path:
    """3 images 40x30: a: cat + dog (dog clipped), b: degenerate cat on line 1 (dropped), c: negative."""
    (root / "labels").mkdir(parents=True)
    for n in "abc":
        (root / "images").mkdir(exist_ok=True)
        cv2.imwrite(str(root / "images" / f"{n}.png"), np.zeros((30, 40, 3), np.uint8))
    (root / "labels" / "a.txt").write_text("0 0.5 0.5 0.5 0.5\n1 0.9 0.5 0.4 0.2\n")
    (root / "labels" / "b.txt").write_text("0 0.5 0.5 0 0.1\n")
    (root / "classes.txt").write_text("cat\ndog\n")
    return root


def test_data_info_prints_counts_and_problems(tmp_path):
    root = make_yolo(tmp_path / "y")
    res = runner.invoke(app_module.app, ["data", "info", str(root)], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    out = res.output
    assert "format yolo (found images/ and labels/ folders)" in out
    assert "2 classes: cat, dog" in out
    assert "│ boxes kept                 │     2 │" in out
    assert "│ boxes clipped to the image │     1 │" in out
    assert "│ boxes dropped              │     1 │" in out
    assert "│ negative images (no boxes) │     2 │" in out
    assert "b.txt:1: degenerate box" in out
    assert "16-32 px" in out  # histogram: the cat is sqrt(20 * 15) = 17.3 px


def test_data_info_strict_fails_on_first_problem(tmp_path):
    root = make_yolo(tmp_path / "y")
    res = runner.invoke(app_module.app, ["data", "info", str(root), "--strict"])
    assert res.exit_code != 0 and isinstance(res.exception, DataError)
    assert "a.txt:2:" in str(res.exception) and "strict mode" in str(res.exception)


def test_main_prints_data_errors_on_one_line(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit) as exc:
        app_module.main(["data", "info", str(tmp_path / "empty")])
    assert exc.value.code == 1
    err = capsys.readouterr().err
    assert "cannot tell the dataset format" in err and len(err.strip().splitlines()) <= 3
