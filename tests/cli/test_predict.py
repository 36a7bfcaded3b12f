"""``retina predict``: run folder numbering, summary and profile output, one-line errors."""

from __future__ import annotations

import json

import cv2
import numpy as np
from typer.testing import CliRunner

from retina_cli.cli.app import _register, app, main
from helpers import make_checkpoint
from retina_cli.config import PostprocessConfig

_register()
runner = CliRunner()


def checkpoint(tmp_path):
    return make_checkpoint(tmp_path / "m.pt", names=("ant", "bee"), post=PostprocessConfig(score_thresh=0.3, topk=100, max_det=20))[0]


def test_predict_numbers_run_folders_and_prints_summary_and_profile(tmp_path, monkeypatch):
    ckpt = checkpoint(tmp_path)
    img = np.zeros((60, 80, 3), np.uint8)
    cv2.rectangle(img, (10, 10), (50, 40), (0, 200, 255), -1)
    cv2.imwrite(str(tmp_path / "x.png"), img)
    monkeypatch.chdir(tmp_path)
    env = {"COLUMNS": "200", "NO_COLOR": "1"}
    first = runner.invoke(app, ["predict", str(ckpt), "x.png", "--device", "cpu", "--profile", "--max-det", "5"], env=env)
    assert first.exit_code == 0, first.output
    second = runner.invoke(app, ["predict", str(ckpt), "x.png", "--device", "cpu", "--conf", "0.99"], env=env)
    assert second.exit_code == 0, second.output
    rows = json.loads((tmp_path / "runs/predict/exp/predictions.json").read_text())
    assert len(rows) == 5 and {r["category_name"] for r in rows} <= {"ant", "bee"}  # --max-det 5 binds
    assert json.loads((tmp_path / "runs/predict/exp2/predictions.json").read_text()) == []  # --conf 0.99
    assert (tmp_path / "runs/predict/exp/x.png").is_file()
    assert "done: 1 frames, 5 detections" in first.output
    for stage in ("decode", "preprocess", "network", "postprocess", "draw", "encode"):
        assert stage in first.output
    assert "results in runs/predict/exp" in first.output


def test_predict_errors_are_one_line(tmp_path, capsys):
    ckpt = checkpoint(tmp_path)
    (tmp_path / "bad.mp4").write_bytes(b"nope" * 100)
    for args, expected in [
        ([str(ckpt), str(tmp_path / "bad.mp4")], "bad.mp4: cannot open this video"),
        ([str(ckpt), str(tmp_path / "none.jpg")], "none.jpg: no such file or folder"),
        ([str(tmp_path / "nockpt.pt"), str(tmp_path / "bad.mp4")], "nockpt.pt: no such checkpoint file"),
        ([str(ckpt), str(tmp_path / "bad.mp4"), "--precision", "fp16"], "--precision 'fp16'"),
    ]:
        try:
            main(["predict", *args, "--device", "cpu", "--out", str(tmp_path / "o")])
        except SystemExit as exc:
            assert exc.code == 1
        err = capsys.readouterr().err
        assert expected in err and err.count("\n") == 1, err
