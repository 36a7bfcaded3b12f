"""`retina eval --slice`: metrics.json records the slicing, the detections are the SlicedPredictor's,
and one window covering every image scores what the plain evaluation scores."""

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from helpers import make_checkpoint
from retina_cli.cli.app import _register, app
from retina_cli.data.images import read_image
from retina_cli.data.synthetic import CLASSES, write_yolo_dataset
from retina_cli.engine.evaluate import to_coco_results
from retina_cli.engine.predict import Predictor, load_backend
from retina_cli.slicing.config import SliceConfig
from retina_cli.slicing.predictor import SlicedPredictor

_register()
runner = CliRunner()


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("sliced_eval")
    data = write_yolo_dataset(root / "data", n_train=4, n_val=4, size=(160, 240))
    ckpt, _ = make_checkpoint(root / "m.pt", names=CLASSES)
    return data, ckpt


def _eval(ckpt: Path, data: Path, project: Path, *flags: str) -> dict:
    # --batch 1: the plain loader and the SlicedPredictor then run the same batches (on CPU a
    # batch of 4 moves a score by an ulp, enough to flip its 5th decimal in detections.json)
    result = runner.invoke(app, ["eval", str(ckpt), str(data), "--workers", "0", "--device", "cpu", "--batch", "1",
                                 "--project", str(project), "--json", *flags])
    assert result.exit_code == 0, result.output
    return json.loads((project / "exp" / "metrics.json").read_text())


def test_sliced_eval_writes_the_settings_and_the_sliced_predictors_detections(setup, tmp_path):
    data, ckpt = setup
    saved = _eval(ckpt, data, tmp_path, "--slice", "96", "--slice-overlap", "0.25", "--slice-merge", "nmm",
                  "--slice-merge-thresh", "0.6", "--no-slice-full")
    assert saved["slicing"] == {"size": 96, "overlap": 0.25, "full_image": False, "merge": "nmm", "merge_thresh": 0.6}
    assert saved["images"] == 4 and set(saved["metrics"]) >= {"AP", "AP50", "AR100"}
    assert "96 px windows, overlap 0.25, nmm at 0.6" in (tmp_path / "exp" / "report.html").read_text()
    dets = json.loads((tmp_path / "exp" / "detections.json").read_text())
    # image 1's detections are what the SlicedPredictor finds on the file (read as RGB, given as BGR)
    first = [d for d in dets if d["image_id"] == 1]
    backend = load_backend(ckpt, device="cpu")
    sliced = SlicedPredictor(Predictor(backend, backend.post_cfg), SliceConfig(96, 0.25, False, "nmm", 0.6), batch=1)
    path = Path(first[0]["file_name"])
    (res,) = sliced([np.ascontiguousarray(read_image(path)[..., ::-1])])
    expected = to_coco_results(1, res.boxes, res.scores, res.labels)
    assert len(first) == len(expected) == backend.post_cfg.max_det
    assert [(d["bbox"], d["score"], d["category_id"]) for d in first] == \
        [(d["bbox"], d["score"], d["category_id"]) for d in expected]
    # 160 x 240 in 96 px windows at stride 72: x starts 0, 72, 144; y starts 0, 64: the boxes span the image
    boxes = np.array([d["bbox"] for d in dets])
    assert boxes[:, 0].min() < 72 and (boxes[:, 0] + boxes[:, 2]).max() > 168


def test_one_window_covering_each_image_scores_what_the_plain_eval_scores(setup, tmp_path):
    data, ckpt = setup
    plain = _eval(ckpt, data, tmp_path / "plain")
    sliced = _eval(ckpt, data, tmp_path / "sliced", "--slice", "256")
    assert "slicing" not in plain and sliced["slicing"]["size"] == 256
    assert plain["metrics"]["AR100"] > 0
    assert sliced["metrics"] == plain["metrics"] and sliced["per_class"] == plain["per_class"]
    # the same detections, to COCO's rounding: the loader's letterbox of the RGB file equals the
    # Predictor's of the BGR array, and InferenceModel is DecodingDetector + select_detections
    dets = [json.loads((tmp_path / run / "exp" / "detections.json").read_text()) for run in ("plain", "sliced")]
    assert 300 < len(dets[0]) <= 4 * 100 and dets[0] == dets[1]
