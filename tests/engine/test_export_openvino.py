"""OpenVINO IR export and backend: metadata in rt_info, detections equal to PyTorch's, one compiled
model per input shape, predict / eval / bench through it, clear errors."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import torch

from retina_cli.engine.predict import Predictor, PredictConfig, TorchBackend, load_backend, run_predict
from retina_cli.errors import ConfigError
from retina_cli.export import ExportError
from retina_cli.export.formats import export_model
from test_export_onnx import assert_same_detections, frames
from test_predict_images import POST, as_xyxy, make_checkpoint, write_images

pytest.importorskip("openvino")

from retina_cli.export.openvino import OpenVinoBackend, export_openvino, require_openvino  # noqa: E402


def test_export_writes_xml_and_bin_with_the_metadata(tmp_path):
    ckpt, model = make_checkpoint(tmp_path / "m.pt")
    done = export_model(ckpt, "openvino")
    assert done.path == tmp_path / "m.xml" and (tmp_path / "m.bin").stat().st_size > 100_000
    # no temporary left; the timing against the checkpoint beside it
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.bin", "m.pt", "m.timing.json", "m.xml"]
    assert done.timing.backend == "openvino" and done.timing.file == "m.xml"
    backend = OpenVinoBackend(done.path, "cpu")
    assert backend.model_cfg == model.cfg and backend.post_cfg == POST and backend.stride == 32


def test_openvino_detections_equal_torch_at_each_rectangular_shape(tmp_path):
    ckpt, model = make_checkpoint(tmp_path / "m.pt")
    backend = load_backend(export_openvino(ckpt, tmp_path / "m.xml"), device="cpu")
    assert isinstance(backend, OpenVinoBackend)
    torch_backend = TorchBackend(make_checkpoint(tmp_path / "t.pt")[1], POST, torch.device("cpu"))
    images = [np.ascontiguousarray(f) for f in frames(n=3)]
    got = [r for im in images for r in Predictor(backend, POST)([im])]
    want = [r for im in images for r in Predictor(torch_backend, POST)([im])]
    assert_same_detections(got, want)
    assert sorted(backend.compiled.shapes()) == [(1, 96, 128), (1, 128, 128)]  # 96, 112 -> 128, 128
    square = Predictor(backend, POST, rect=False)(images[:2])  # one batch of 2 at the square size
    assert_same_detections(square, Predictor(torch_backend, POST, rect=False)(images[:2]))
    assert (2, 128, 128) in backend.compiled.shapes()


def test_two_streams_from_two_threads_give_the_same_detections(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    ckpt, _ = make_checkpoint(tmp_path / "m.pt")
    backend = OpenVinoBackend(export_openvino(ckpt, tmp_path / "m.xml"), "cpu")
    images = [np.ascontiguousarray(f[:96]) for f in frames(n=3)] * 4  # one shape: one compiled model
    one = [Predictor(backend, POST)([im])[0] for im in images]
    backend.use_streams(2)
    compiled = backend.compiled((1, 96, 128))
    assert compiled.get_property("NUM_STREAMS") == 2
    with ThreadPoolExecutor(2) as pool:
        two = list(pool.map(lambda im: Predictor(backend, POST)([im])[0], images))
    assert_same_detections(two, one)
    backend.use_streams(1)
    assert backend.compiled.shapes() == []  # compiled again, for one stream, when next used


def test_predict_and_eval_take_the_xml_model(tmp_path):
    from retina_cli.data.synthetic import write_yolo_dataset
    from retina_cli.engine.evaluation_run import evaluate_backend

    ckpt, _ = make_checkpoint(tmp_path / "m.pt", names=("circle", "square", "triangle"))
    xml = export_openvino(ckpt, tmp_path / "ov" / "m.xml")
    write_images(tmp_path / "imgs")
    run_predict(ckpt, str(tmp_path / "imgs"), PredictConfig(out=str(tmp_path / "pt"), device="cpu", save_media=False))
    run_predict(xml, str(tmp_path / "imgs"), PredictConfig(out=str(tmp_path / "ov_out"), device="cpu", save_media=False))
    pt = json.loads((tmp_path / "pt" / "predictions.json").read_text())
    ov = json.loads((tmp_path / "ov_out" / "predictions.json").read_text())
    assert len(pt) == len(ov) > 0
    assert [(r["file_name"], r["category_id"]) for r in pt] == [(r["file_name"], r["category_id"]) for r in ov]
    np.testing.assert_allclose(as_xyxy(ov), as_xyxy(pt), atol=1e-2)

    data = write_yolo_dataset(tmp_path / "data", n_train=2, n_val=4, size=(96, 128))
    a = evaluate_backend(load_backend(ckpt, device="cpu"), str(data), workers=0).result.metrics
    b = evaluate_backend(load_backend(xml, device="cpu"), str(data), workers=0).result.metrics
    assert a["AP"] == pytest.approx(b["AP"], abs=1e-3) and a["AP50"] == pytest.approx(b["AP50"], abs=1e-3)


def test_bench_runs_the_openvino_backend_and_it_agrees():
    from retina_cli.bench.run import BenchOptions, run_bench

    opts = BenchOptions(backbone="resnet18", img_size=128, levels=(3, 5), fpn_channels=64, head_depth=2,
                        head_width=64, runs=1, warmup=0, backends=("torch", "openvino"), train=False, memory=False)
    report = run_bench(opts)
    ours, ov = report.results
    assert ov.name == "openvino" and ov.detections == ours.detections > 20
    assert report.agreement["openvino"] == 1.0
    assert "openvino" in report.environment


def test_clear_errors(tmp_path, monkeypatch):
    ckpt, _ = make_checkpoint(tmp_path / "m.pt")
    with pytest.raises(ExportError, match=r"\.xml file"):
        export_openvino(ckpt, tmp_path / "m.onnx")
    with pytest.raises(ExportError, match="--max-drop 2"):
        export_model(ckpt, "openvino", int8=True, calibration="x", max_drop=2)
    with pytest.raises(ExportError, match="no such OpenVINO model"):
        OpenVinoBackend(tmp_path / "none.xml")
    (tmp_path / "junk.xml").write_text("<junk/>")
    with pytest.raises(ExportError, match="OpenVINO cannot read this model"):
        OpenVinoBackend(tmp_path / "junk.xml")
    with pytest.raises(ConfigError, match="--backend openvino needs an OpenVINO model"):
        load_backend(ckpt, backend="openvino")
    xml = export_openvino(ckpt)
    with pytest.raises(ConfigError, match="runs on the CPU"):
        OpenVinoBackend(xml, "cuda")
    with pytest.raises(ConfigError, match="runs with --backend openvino"):
        load_backend(xml, backend="torch")
    monkeypatch.setitem(sys.modules, "openvino", None)
    with pytest.raises(ExportError, match=r"pip install 'retina-cli\[openvino\]'"):
        require_openvino()
