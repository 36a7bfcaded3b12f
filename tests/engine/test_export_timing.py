"""The export timing record: `retina export` times its fp32 graph against the checkpoint, and
loading the checkpoint runs the export only while that record holds and says it was faster.

The timings themselves are machine-dependent, so the choice is tested with records written from
chosen numbers; the real timing is checked for what it measured (shape, runs), never its speed."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from retina_cli.engine.predict import PredictConfig, TorchBackend, load_backend, picked_line, run_predict
from test_export_onnx import assert_same_detections, frames
from test_predict_images import POST, as_xyxy, make_checkpoint, write_images

pytest.importorskip("onnxruntime")

from retina_cli.export import timing as timing_mod  # noqa: E402
from retina_cli.export.formats import export_model  # noqa: E402
from retina_cli.export.onnx import export_onnx  # noqa: E402
from retina_cli.export.runtime import OnnxBackend  # noqa: E402
from retina_cli.export.timing import PICK_RATIO, Timing, export_choice, faster_export, record_path, write_timing  # noqa: E402


def _exported(tmp_path):
    ckpt, model = make_checkpoint(tmp_path / "m.pt")
    return ckpt, export_onnx(ckpt), model


def _record(ckpt, ms=10.0, torch_ms=100.0, backend="onnxruntime", file="m.onnx"):
    return write_timing(ckpt, Timing(backend, file, ms, torch_ms, (96, 128), 5))


def test_export_times_the_graph_against_the_checkpoint_and_records_it(tmp_path):
    ckpt, _ = make_checkpoint(tmp_path / "m.pt")
    done = export_model(ckpt, "onnx")
    t = done.timing
    # img_size 128, P5 (stride 32): a 4:3 frame letterboxes to 128x96
    assert t.backend == "onnxruntime" and t.file == "m.onnx" and t.shape == (96, 128) and t.runs == 5
    assert t.ms > 0 and t.torch_ms > 0
    record = json.loads(record_path(ckpt).read_text())
    assert record_path(ckpt).name == "m.timing.json" and record["format"] == "retina-timing/1"
    entry = record["exports"]["onnxruntime"]
    assert entry["file"] == "m.onnx" and entry["ms"] == t.ms and entry["shape"] == [96, 128] and entry["runtime"]
    assert record["machine"] == timing_mod.machine()
    # what load picks follows the measured ratio, whichever way it went on this machine
    found = faster_export(ckpt)
    assert (found is not None) == (t.ms <= PICK_RATIO * t.torch_ms)


def test_no_timing_writes_no_record(tmp_path):
    ckpt, _ = make_checkpoint(tmp_path / "m.pt")
    done = export_model(ckpt, "onnx", timing=False)
    assert done.timing is None and not record_path(ckpt).exists()
    assert isinstance(load_backend(ckpt, device="cpu"), TorchBackend)


def test_a_faster_export_is_loaded_for_the_checkpoint_with_the_same_detections(tmp_path):
    ckpt, onnx_path, model = _exported(tmp_path)
    _record(ckpt)
    backend = load_backend(ckpt, device="cpu")
    assert isinstance(backend, OnnxBackend) and backend.path == onnx_path
    assert backend.picked.ms == 10.0 and backend.picked.torch_ms == 100.0
    torch_backend = TorchBackend(model, POST, torch.device("cpu"))
    from retina_cli.engine.predict import Predictor

    images = frames()
    assert_same_detections(Predictor(backend, POST)(images), Predictor(torch_backend, POST)(images))


@pytest.mark.parametrize("kwargs", [
    {"backend": "torch"}, {"exports": False}, {"precision": "bf16"}, {"winograd": False},
], ids=["backend-torch", "exports-off", "bf16", "no-winograd"])
def test_asking_for_something_else_runs_the_checkpoint(tmp_path, kwargs):
    ckpt, _, _ = _exported(tmp_path)
    _record(ckpt)
    backend = load_backend(ckpt, device="cpu", **kwargs)
    assert isinstance(backend, TorchBackend) and backend.picked is None


def _resave(tmp_path, ckpt, onnx_path):
    make_checkpoint(ckpt, seed=1)  # retrained: the same path, other weights


def _reexport(tmp_path, ckpt, onnx_path):
    onnx_path.write_bytes(onnx_path.read_bytes() + b"\0")


def _delete(tmp_path, ckpt, onnx_path):
    onnx_path.unlink()


def _other_machine(tmp_path, ckpt, onnx_path):
    path = record_path(ckpt)
    record = json.loads(path.read_text())
    record["machine"]["cpu"] = "another CPU"
    path.write_text(json.dumps(record))


def _other_runtime(tmp_path, ckpt, onnx_path):
    path = record_path(ckpt)
    record = json.loads(path.read_text())
    record["exports"]["onnxruntime"]["runtime"] = "0.0.1"
    path.write_text(json.dumps(record))


def _not_faster(tmp_path, ckpt, onnx_path):
    _record(ckpt, ms=95.0, torch_ms=100.0)  # within the spread of the timings: PyTorch stays


def _garbled(tmp_path, ckpt, onnx_path):
    record_path(ckpt).write_text("{not json")


def _bad_entry(tmp_path, ckpt, onnx_path):
    path = record_path(ckpt)
    record = json.loads(path.read_text())
    record["exports"]["onnxruntime"]["ms"] = "fast"
    path.write_text(json.dumps(record))


@pytest.mark.parametrize("change, why", [
    (_resave, "m.pt changed after m.timing.json was written"),
    (_reexport, "m.onnx is missing or changed after it was timed"),
    (_delete, "m.onnx is missing or changed after it was timed"),
    (_other_machine, "m.timing.json was timed on another machine"),
    (_other_runtime, "when timed"),
    (_not_faster, ""),  # nothing was faster: nothing to explain
    (_garbled, ""),
    (_bad_entry, ""),
], ids=lambda v: getattr(v, "__name__", "")[1:] or None)
def test_a_record_that_no_longer_holds_falls_back_to_pytorch_and_says_why(tmp_path, change, why):
    ckpt, onnx_path, _ = _exported(tmp_path)
    _record(ckpt)
    assert faster_export(ckpt) is not None
    change(tmp_path, ckpt, onnx_path)
    assert faster_export(ckpt) is None
    found, reason = export_choice(ckpt)
    assert found is None and why in reason and (reason == "") == (why == "")
    if why:
        assert f"`retina export {ckpt}` times it again" in reason
    backend = load_backend(ckpt, device="cpu")
    assert isinstance(backend, TorchBackend) and backend.kept == reason
    assert picked_line(backend) == (f"ran the checkpoint in PyTorch, not its faster export: {reason}" if why else "")


def test_an_upgraded_runtime_is_named_with_both_versions(tmp_path):
    ckpt, onnx_path, _ = _exported(tmp_path)
    _record(ckpt)
    _other_runtime(tmp_path, ckpt, onnx_path)
    from importlib import metadata

    assert f"onnxruntime is {metadata.version('onnxruntime')} here, 0.0.1 when timed" in export_choice(ckpt)[1]


def _both_exported(tmp_path, onnx_ms, openvino_ms):
    """The checkpoint exported to m.onnx and m.xml, each recorded at the given ms (PyTorch 100)."""
    from retina_cli.export.openvino import export_openvino

    ckpt, onnx_path, _ = _exported(tmp_path)
    export_openvino(ckpt, tmp_path / "m.xml")
    _record(ckpt, ms=onnx_ms)
    _record(ckpt, ms=openvino_ms, backend="openvino", file="m.xml")
    return ckpt, onnx_path


def test_a_stale_faster_entry_does_not_hide_a_valid_slower_one(tmp_path):
    pytest.importorskip("openvino")
    from retina_cli.export.openvino import OpenVinoBackend

    ckpt, onnx_path = _both_exported(tmp_path, 20.0, 30.0)
    onnx_path.unlink()  # the faster one is gone: the other still holds and runs
    backend = load_backend(ckpt, device="cpu")
    assert isinstance(backend, OpenVinoBackend) and backend.picked.ms == 30.0


def test_a_record_of_another_checkpoint_is_started_afresh(tmp_path):
    ckpt, onnx_path, _ = _exported(tmp_path)
    _record(ckpt)
    make_checkpoint(ckpt, seed=1)
    export_onnx(ckpt)
    path = _record(ckpt, ms=20.0)
    record = json.loads(path.read_text())
    assert list(record["exports"]) == ["onnxruntime"] and record["exports"]["onnxruntime"]["ms"] == 20.0
    assert faster_export(ckpt)[1].ms == 20.0


def test_the_fastest_of_two_exports_is_picked(tmp_path):
    pytest.importorskip("openvino")
    from retina_cli.export.openvino import OpenVinoBackend

    ckpt, _ = _both_exported(tmp_path, 50.0, 30.0)
    assert isinstance(load_backend(ckpt, device="cpu"), OpenVinoBackend)
    _record(ckpt, ms=20.0)  # onnxruntime timed again, now faster: its entry is replaced
    record = json.loads(record_path(ckpt).read_text())
    assert sorted(record["exports"]) == ["onnxruntime", "openvino"]
    assert isinstance(load_backend(ckpt, device="cpu"), OnnxBackend)


def test_predict_and_the_api_say_what_ran(tmp_path):
    import retina_cli

    ckpt, _, _ = _exported(tmp_path)
    write_images(tmp_path / "imgs")
    cfg = dict(device="cpu", save_media=False, batch=2)
    before = run_predict(ckpt, str(tmp_path / "imgs"), PredictConfig(out=str(tmp_path / "pt"), **cfg))
    assert before.ran == ""
    _record(ckpt)
    after = run_predict(ckpt, str(tmp_path / "imgs"), PredictConfig(out=str(tmp_path / "ox"), **cfg))
    assert after.ran.startswith("ran m.onnx (onnxruntime; timed 10 vs PyTorch's 100 ms here")
    pt = json.loads((tmp_path / "pt" / "predictions.json").read_text())
    ox = json.loads((tmp_path / "ox" / "predictions.json").read_text())
    assert [(r["file_name"], r["category_id"]) for r in pt] == [(r["file_name"], r["category_id"]) for r in ox]
    np.testing.assert_allclose(as_xyxy(ox), as_xyxy(pt), atol=1e-2)
    det = retina_cli.load(ckpt, device="cpu")
    assert det.backend == "onnxruntime" and det.ran.startswith("ran m.onnx") and det.path == ckpt
    assert retina_cli.load(ckpt, device="cpu", backend="torch").ran == ""


def test_export_cli_prints_the_timing_and_what_predict_runs(tmp_path):
    from retina_cli.cli.main import app

    ckpt, _ = make_checkpoint(tmp_path / "m.pt")
    res = CliRunner().invoke(app, ["export", str(ckpt)], env={"NO_COLOR": "1", "COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    assert "timed: onnxruntime " in res.output and "PyTorch" in res.output and "per 128x96 image" in res.output
    assert (f"`retina predict {ckpt}` now runs m.onnx" in res.output) != (f"`retina predict {ckpt}` keeps PyTorch" in res.output)
    res = CliRunner().invoke(app, ["export", str(ckpt), "--no-timing"], env={"NO_COLOR": "1"})
    assert res.exit_code == 0 and "timed:" not in res.output
