"""``retina export``: writes model.onnx that ``retina predict`` runs with no other flag."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from retina_cli.cli.app import _register, app
from helpers import make_checkpoint
from retina_cli.config import PostprocessConfig

pytest.importorskip("onnxruntime")
_register()
runner = CliRunner()


def test_export_then_predict_with_the_onnx_model(tmp_path):
    make_checkpoint(tmp_path / "m.pt", names=("ant", "bee"), post=PostprocessConfig(score_thresh=0.3, topk=100, max_det=20))
    env = {"COLUMNS": "200", "NO_COLOR": "1"}
    res = runner.invoke(app, ["export", str(tmp_path / "m.pt"), "--out", str(tmp_path / "model.onnx")], env=env)
    assert res.exit_code == 0, res.output
    assert "wrote" in res.output and (tmp_path / "model.onnx").is_file()
    bad = runner.invoke(app, ["export", str(tmp_path / "m.pt"), "--format", "tflite"], env=env)
    assert bad.exit_code != 0
    img = np.zeros((60, 80, 3), np.uint8)
    cv2.rectangle(img, (10, 10), (50, 40), (0, 200, 255), -1)
    cv2.imwrite(str(tmp_path / "x.png"), img)
    for model_file, out in (("m.pt", "pt"), ("model.onnx", "onnx")):
        res = runner.invoke(app, ["predict", str(tmp_path / model_file), str(tmp_path / "x.png"), "--device", "cpu", "--out", str(tmp_path / out)], env=env)
        assert res.exit_code == 0, res.output
    pt = json.loads((tmp_path / "pt/predictions.json").read_text())
    ox = json.loads((tmp_path / "onnx/predictions.json").read_text())
    assert len(pt) == len(ox) == 20
    assert [r["category_name"] for r in pt] == [r["category_name"] for r in ox]
    np.testing.assert_allclose([r["bbox"] for r in ox], [r["bbox"] for r in pt], atol=1e-2)
