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


def test_int8_export_needs_calibration_and_evaluates_like_the_checkpoint(tmp_path):
    from retina_cli.data.synthetic import write_yolo_dataset

    data = write_yolo_dataset(tmp_path / "data", n_train=6, n_val=3, size=(96, 128), seed=3)
    names = ("circle", "square", "triangle")
    make_checkpoint(tmp_path / "m.pt", names=names, post=PostprocessConfig(score_thresh=0.05, topk=100, max_det=50))
    env = {"COLUMNS": "200", "NO_COLOR": "1"}
    bad = runner.invoke(app, ["export", str(tmp_path / "m.pt"), "--int8"], env=env)
    assert bad.exit_code != 0
    res = runner.invoke(app, ["export", str(tmp_path / "m.pt"), "--int8", "--calibration", str(data),
                              "--calibration-images", "4"], env=env)
    assert res.exit_code == 0, res.output
    assert (tmp_path / "m.onnx").is_file() and (tmp_path / "m.int8.onnx").is_file()
    assert not list(tmp_path.glob("*.prep.onnx"))
    aps = {}
    for model in ("m.pt", "m.onnx", "m.int8.onnx"):
        out = runner.invoke(app, ["eval", str(tmp_path / model), str(data), "--device", "cpu", "--workers", "0",
                                  "--project", str(tmp_path / "eval"), "--json"], env=env)
        assert out.exit_code == 0, out.output
        aps[model] = json.loads(out.stdout)["metrics"]
    # the fp32 graph is the checkpoint's network: the same COCO metrics
    assert aps["m.onnx"] == pytest.approx(aps["m.pt"], abs=1e-6)
    assert all(0.0 <= v <= 1.0 or v == -1.0 for v in aps["m.int8.onnx"].values())
