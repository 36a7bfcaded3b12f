"""int8 OpenVINO IR (NNCF): predictor layers kept float, detections close to fp32, accuracy control
that restores layers to float until val mAP is within --max-drop, CLI / API / bench through it."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from retina_cli.data.synthetic import write_yolo_dataset
from retina_cli.engine.predict import Predictor, load_backend
from retina_cli.export import ExportError
from retina_cli.export.formats import export_model
from test_export_onnx import frames
from test_predict_images import POST, make_checkpoint

pytest.importorskip("openvino")
pytest.importorskip("nncf")

from retina_cli.export.openvino import OpenVinoBackend  # noqa: E402
from retina_cli.export.openvino_int8 import conv_precisions  # noqa: E402

NAMES = ("circle", "square", "triangle")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_yolo_dataset(tmp_path_factory.mktemp("int8_data"), n_train=6, n_val=4, size=(96, 128), seed=3)


def pseudo_labelled(root, ckpt):
    """Replace the val labels with the fp32 model's own detections: the fp32 model then scores
    about 1.0 there, so int8's loss is measurable with a random-weight model."""
    import cv2

    backend = load_backend(ckpt, device="cpu")
    predictor = Predictor(backend, backend.post_cfg)
    for img in sorted((root / "images" / "val").glob("*.jpg")):
        bgr = cv2.imread(str(img))
        (det,) = predictor([bgr])
        h, w = bgr.shape[:2]
        lines = [f"{int(c)} {(x1 + x2) / 2 / w:.6f} {(y1 + y2) / 2 / h:.6f} {(x2 - x1) / w:.6f} {(y2 - y1) / h:.6f}"
                 for (x1, y1, x2, y2), c in zip(det.boxes, det.labels)]
        (root / "labels" / "val" / f"{img.stem}.txt").write_text("\n".join(lines) + "\n")
    return root


def test_int8_ir_keeps_the_predictors_float_and_detects_like_fp32(tmp_path, data):
    ckpt, _ = make_checkpoint(tmp_path / "m.pt", names=NAMES)
    done = export_model(ckpt, "openvino", int8=True, calibration=data, calibration_images=4, max_drop=None)
    assert done.path == tmp_path / "m.xml" and done.int8 == tmp_path / "m.int8.xml"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.bin", "m.int8.bin", "m.int8.xml", "m.pt", "m.timing.json", "m.xml"]
    report = done.report
    assert report.fp32_map is None and report.calibration_images == 4
    assert sorted(report.kept_float) == sorted(n for n in report.kept_float if "cls_logits" in n or "box_deltas" in n)
    # the shared head's predictors, once per level (P3-P5) in the graph
    assert len(report.kept_float) == 6 and report.quantized == report.convolutions - 6 >= 10
    int8 = load_backend(done.int8, device="cpu")
    assert isinstance(int8, OpenVinoBackend) and int8.post_cfg == POST  # the metadata came along
    assert conv_precisions(int8.model) == (report.convolutions, list(report.kept_float))
    fp32 = load_backend(done.path, device="cpu")
    images = [np.ascontiguousarray(f) for f in frames(n=3)]
    got, want = Predictor(int8, POST)(images), Predictor(fp32, POST)(images)
    n_want = sum(len(r.scores) for r in want)
    assert n_want > 10
    # int8 moves scores a little (random weights crowd them, so NMS reorders): most fp32 boxes
    # still have an int8 box of the same class over IoU 0.5 (measured 0.80-0.82 on these frames)
    import torch
    from torchvision.ops import box_iou

    def kept(a, b):
        iou = box_iou(torch.from_numpy(b.boxes), torch.from_numpy(a.boxes)).numpy()
        return float(((iou > 0.5) & (b.labels[:, None] == a.labels[None])).any(1).mean())

    agree = np.mean([kept(a, b) for a, b in zip(got, want)])
    assert agree > 0.7, agree


def test_accuracy_control_report_matches_the_written_model(tmp_path, data):
    """With its own detections as val labels the fp32 model scores ~1 and int8 less; max_drop 0
    sends accuracy control through the ranking and the restore search (capped at 2 groups)."""
    import shutil

    from retina_cli.export.formats import validation_records
    from retina_cli.export.int8_restore import group_key
    from retina_cli.export.openvino import export_openvino
    from retina_cli.export.openvino_int8 import quantize_openvino
    from retina_cli.export.quantize import calibration_batches

    root = shutil.copytree(data, tmp_path / "data")
    ckpt, model = make_checkpoint(tmp_path / "m.pt", names=NAMES)
    pseudo_labelled(root, ckpt)
    xml = export_openvino(ckpt, tmp_path / "m.xml")
    records = validation_records(str(root), model.cfg)
    r = quantize_openvino(xml, calibration_batches(str(root), 128, 4), validation=records, max_drop=0.0, max_restored=2)
    assert r.validation_images == 4 and r.max_drop == 0.0
    assert r.fp32_map > 0.8 and 0.0 <= r.int8_map <= 1.0
    assert len(r.groups) <= 2 and sorted({group_key(n) for n in r.restored}) == sorted(r.groups)
    assert r.quantized == r.convolutions - len(r.kept_float)
    # what the report says is what the written model holds
    total, floating = conv_precisions(OpenVinoBackend(r.path, "cpu").model)
    assert (total, tuple(floating)) == (r.convolutions, r.kept_float)


def test_restore_finds_the_shortest_prefix_of_the_ranking(tmp_path, data):
    """The search on a real int8 graph with a validation that scores how many groups are float:
    doubling (1, 2, 4, 8), then halving the gap (6, 5) finds the 5 groups the bound needs."""
    import nncf
    import openvino as ov

    from retina_cli.export.int8_restore import layer_groups, rank_groups, restore_accuracy, with_float
    from retina_cli.export.openvino import export_openvino
    from retina_cli.export.openvino_int8 import FLOAT_PATTERNS
    from retina_cli.export.quantize import calibration_batches

    ckpt, _ = make_checkpoint(tmp_path / "m.pt", names=NAMES)
    fp32 = OpenVinoBackend(export_openvino(ckpt, tmp_path / "m.xml"), "cpu").model
    batches = calibration_batches(str(data), 128, 3)
    inputs = [b.transpose(0, 3, 1, 2).astype(np.float32) for b in batches]
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters

    q = nncf.quantize(fp32.clone(), nncf.Dataset(inputs), subset_size=3,
                      ignored_scope=nncf.IgnoredScope(patterns=list(FLOAT_PATTERNS), validate=False),
                      advanced_parameters=AdvancedQuantizationParameters(backend_params={"compress_weights": False}))
    groups = layer_groups(q)
    n = len(groups)
    assert n >= 8 and all(len(v) == 3 for k, v in groups.items() if k.startswith("head/"))  # one per level
    core = ov.Core()

    def compile(model):
        return core.compile_model(model, "CPU")

    ranking = rank_groups(q, fp32, groups, inputs[:1], compile, FLOAT_PATTERNS)
    assert sorted(k for k, _ in ranking) == sorted(groups) and all(e >= 0 for _, e in ranking)
    # every group in float is the fp32 model: no error left
    everything = with_float(q, [c for v in groups.values() for c in v])
    assert layer_groups(everything) == {}

    def validate(model):
        return 1.0 - len(layer_groups(model)) / n

    said = []
    done = restore_accuracy(q, fp32, inputs[:1], validate, 1.0, 0.0, 1.0 - 5 / n + 1e-9, 16, compile,
                            FLOAT_PATTERNS, said.append)
    assert len(done.groups) == 5 and done.tried == 6 and done.ranked == n
    assert set(layer_groups(q)) - set(layer_groups(done.model)) == set(done.groups)
    assert done.int8_map == pytest.approx(5 / n)
    # a bound out of reach within max_restored: the best prefix tried (the longest) is kept
    capped = restore_accuracy(q, fp32, inputs[:1], validate, 1.0, 0.0, 0.0, 3, compile, FLOAT_PATTERNS, said.append)
    assert len(capped.groups) == 3 and capped.tried == 3


def test_cli_export_int8_openvino_prints_the_check_and_predict_takes_it(tmp_path, data):
    from typer.testing import CliRunner

    from retina_cli.cli.main import app

    ckpt, _ = make_checkpoint(tmp_path / "m.pt", names=NAMES)
    env = {"COLUMNS": "200", "NO_COLOR": "1"}
    runner = CliRunner()
    # a drop this loose holds at once: the check runs (both val mAPs printed) without a ranking
    res = runner.invoke(app, ["export", str(ckpt), "--format", "openvino", "--int8", "--calibration", str(data),
                              "--calibration-images", "3", "--max-drop", "0.9"], env=env)
    assert res.exit_code == 0, res.output
    assert "m.int8.xml" in res.output and "convolutions quantised" in res.output and "val mAP50-95" in res.output
    out = runner.invoke(app, ["eval", str(tmp_path / "m.int8.xml"), str(data), "--device", "cpu", "--workers", "0",
                              "--project", str(tmp_path / "eval"), "--json"], env=env)
    assert out.exit_code == 0, out.output
    assert 0.0 <= json.loads(out.stdout)["metrics"]["AP"] <= 1.0
    bad = runner.invoke(app, ["export", str(ckpt), "--format", "openvino", "--int8", "--calibration", str(data),
                              "--max-drop", "1.5"], env=env)
    assert bad.exit_code != 0 and "--max-drop" in str(bad.exception)


def test_without_nncf_the_error_names_the_install(tmp_path, data, monkeypatch):
    ckpt, _ = make_checkpoint(tmp_path / "m.pt", names=NAMES)
    monkeypatch.setitem(sys.modules, "nncf", None)
    with pytest.raises(ExportError, match=r"pip install 'retina-cli\[openvino\]'"):
        export_model(ckpt, "openvino", int8=True, calibration=data)
    assert not list(tmp_path.glob("m.*xml"))  # nothing written


def test_bench_times_the_openvino_int8_backend(tmp_path):
    """Through `retina bench` in its own process (NNCF and two OpenVINO compilations there, not in
    the test process that has run hundreds of tests before)."""
    import subprocess

    out = tmp_path / "bench.json"
    cmd = [sys.executable, "-m", "retina_cli", "bench", "--backbone", "resnet18", "--img-size", "128",
           "--fpn-levels", "3-5", "--fpn-channels", "32", "--head-width", "32", "--head-depth", "1", "--runs", "1",
           "--warmup", "0", "--no-train", "--no-memory", "--backends", "torch,openvino-int8", "--out", str(out)]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    payload = json.loads(out.read_text())
    assert [r["name"] for r in payload["results"]] == ["retina", "openvino int8"]
    assert 0.0 <= payload["agreement"]["openvino int8"] <= 1.0


def test_accuracy_control_falls_back_to_the_backbone_only_before_restoring_layers(tmp_path, data):
    """The first fallback quantises the backbone alone (FPN, head and input normalisation float);
    when that holds no layer is ranked, otherwise the restore starts from the better model.
    Validations are fakes that score which groups a model quantises; the graphs are real."""
    import nncf
    import openvino as ov

    from retina_cli.export.formats import validation_records
    from retina_cli.export.int8_restore import layer_groups
    from retina_cli.export.openvino import export_openvino
    from retina_cli.export.openvino_int8 import BACKBONE_ONLY_PATTERNS, FLOAT_PATTERNS, _control, _f32_compiler, _quantize
    from retina_cli.export.quantize import calibration_batches

    ckpt, model = make_checkpoint(tmp_path / "m.pt", names=NAMES)
    source = OpenVinoBackend(export_openvino(ckpt, tmp_path / "m.xml"), "cpu")
    batches = calibration_batches(str(data), 128, 3)

    def quantize(patterns):
        return _quantize(nncf, source.model, batches, patterns)

    full = quantize(FLOAT_PATTERNS)
    groups = layer_groups(full)
    outside = {k for k in groups if not k.startswith("backbone/")}
    assert outside and len(outside) < len(groups)  # FPN and head groups, besides the backbone's
    backbone = quantize(BACKBONE_ONLY_PATTERNS)
    assert set(layer_groups(backbone)) == set(groups) - outside
    # nothing outside the backbone is quantised, the input normalisation in front of the stem included
    fake_quantized = [c.get_node().get_friendly_name() for op in backbone.get_ordered_ops()
                      if op.get_type_name() == "FakeQuantize" for c in op.output(0).get_target_inputs()]
    assert fake_quantized and all(n.startswith("/det/model/backbone/") for n in fake_quantized)
    records = validation_records(str(data), model.cfg)[:2]  # only the ranking reads their images
    compile = _f32_compiler(ov)
    said = []

    def loses_outside_the_backbone(m):
        return 1.0 - 0.1 * any(k in outside for k in layer_groups(m))

    done, fp32_map, int8_map, scope, restored = _control(source, full, quantize, loses_outside_the_backbone, compile,
                                                         records, 0.05, 4, said.append)
    assert (fp32_map, int8_map, scope, restored) == (1.0, 1.0, "backbone", ())
    assert set(layer_groups(done)) == set(groups) - outside
    assert any("backbone only" in line for line in said) and not any("ranking" in line for line in said)

    n = len(groups)
    inside = n - len(outside)

    def loses_per_group(m):  # each quantised group costs 1/n: the backbone alone is better, yet not enough
        return 1.0 - len(layer_groups(m)) / n

    max_drop = (inside - 2) / n + 1e-9  # two backbone groups in float hold it
    done, _, int8_map, scope, restored = _control(source, full, quantize, loses_per_group, compile, records,
                                                  max_drop, 4, said.append)
    assert scope == "backbone" and len(restored) == 2 and not set(restored) & outside
    assert int8_map == pytest.approx(1.0 - (inside - 2) / n)
    assert set(layer_groups(done)) == set(groups) - outside - set(restored)
