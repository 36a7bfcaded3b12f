"""ONNX export: checker, metadata, and onnxruntime detections equal to PyTorch's (boxes within 1e-2 px)."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import torch

from retina_cli.engine.predict import Predictor, PredictConfig, TorchBackend, run_predict
from retina_cli.export import ExportError, require
from retina_cli.export.graph import DecodingDetector
from retina_cli.postprocess import select_detections
from test_predict_images import NAMES, POST, as_xyxy, make_checkpoint, write_images

ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

from retina_cli.export.onnx import export_onnx  # noqa: E402
from retina_cli.export.runtime import OnnxBackend  # noqa: E402


def frames(seed: int = 0, n: int = 3) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        img = (rng.random((96 + 16 * i, 128, 3)) * 255).astype(np.uint8)
        img[20:60, 30 + 10 * i : 90] = (30, 200, 240)
        out.append(img)
    return out


def assert_same_detections(a, b):
    assert len(a) == len(b)
    total = 0
    for x, y in zip(a, b):
        assert np.array_equal(x.labels, y.labels)
        np.testing.assert_allclose(x.boxes, y.boxes, rtol=0, atol=1e-2)
        np.testing.assert_allclose(x.scores, y.scores, rtol=0, atol=1e-4)
        total += len(x.labels)
    assert total > 0


def test_onnx_model_checks_carries_metadata_and_matches_torch(tmp_path):
    ckpt, model = make_checkpoint(tmp_path / "m.pt")
    path = export_onnx(ckpt)
    assert path == tmp_path / "m.onnx"
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto)
    assert [o.name for o in proto.graph.output] == ["scores", "labels", "boxes"]
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    backend = OnnxBackend(path, "cpu")
    assert backend.model_cfg == model.cfg and backend.post_cfg == POST
    assert backend.model_cfg.class_names == NAMES
    torch_backend = TorchBackend(model, POST, torch.device("cpu"))
    images = frames()
    # batch of 3 through a graph exported with batch 1: the batch axis is dynamic
    assert_same_detections(Predictor(backend, POST)(images), Predictor(torch_backend, POST)(images))


def test_predict_with_onnx_model_writes_the_same_rows_as_the_checkpoint(tmp_path):
    ckpt, _ = make_checkpoint(tmp_path / "m.pt")
    write_images(tmp_path / "imgs")
    onnx_path = export_onnx(ckpt, tmp_path / "export" / "model.onnx")
    # the same batches: a rectangular batch is the smallest canvas that holds all its images
    run_predict(ckpt, str(tmp_path / "imgs"), PredictConfig(out=str(tmp_path / "pt"), device="cpu", save_media=False, batch=2))
    run_predict(onnx_path, str(tmp_path / "imgs"), PredictConfig(out=str(tmp_path / "ox"), device="cpu", save_media=False, batch=2))
    pt = json.loads((tmp_path / "pt" / "predictions.json").read_text())
    ox = json.loads((tmp_path / "ox" / "predictions.json").read_text())
    assert len(pt) == len(ox) > 0
    assert [(r["file_name"], r["category_id"]) for r in pt] == [(r["file_name"], r["category_id"]) for r in ox]
    np.testing.assert_allclose(as_xyxy(ox), as_xyxy(pt), atol=1e-2)


def test_dynamic_size_export_runs_at_another_size(tmp_path):
    ckpt, model = make_checkpoint(tmp_path / "m.pt")
    path = export_onnx(ckpt, tmp_path / "dyn.onnx", dynamic_size=True)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = torch.from_numpy(np.stack([f[:96, :128] for f in frames(n=2)])).permute(0, 3, 1, 2).float().contiguous()
    x = torch.nn.functional.pad(x, (0, 64, 0, 96), value=114.0)  # (2, 3, 192, 192): not img_size
    scores, labels, boxes = (torch.from_numpy(a) for a in session.run(None, {"images": x.numpy()}))
    with torch.no_grad():
        ref = DecodingDetector(model, POST.topk)(x)
    assert scores.shape == ref.scores.shape == (2, 600)  # k = min(200, R_l * K) per level at 192 px
    got = select_detections(ref._replace(scores=scores, labels=labels, boxes=boxes), (192, 192), POST)
    want = select_detections(ref, (192, 192), POST)
    for g, w in zip(got, want):
        assert torch.equal(g.labels, w.labels) and g.labels.numel() > 0
        torch.testing.assert_close(g.boxes, w.boxes, rtol=0, atol=1e-2)


def test_missing_onnxruntime_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import now raises ImportError
    with pytest.raises(ExportError, match=r"pip install 'retina-cli\[export\]'"):
        require("onnxruntime")
    with pytest.raises(ExportError, match="onnxruntime is not installed"):
        OnnxBackend(tmp_path / "model.onnx")


def test_not_an_onnx_model_is_a_clear_error(tmp_path):
    (tmp_path / "junk.onnx").write_bytes(b"junk")
    with pytest.raises(ExportError, match=r"junk\.onnx: onnxruntime cannot load this model"):
        OnnxBackend(tmp_path / "junk.onnx", "cpu")
    with pytest.raises(ExportError, match=r"nothere\.onnx: no such ONNX model file"):
        OnnxBackend(tmp_path / "nothere.onnx", "cpu")


def test_int8_weights_use_seven_bits_and_predictor_convs_stay_float(tmp_path):
    """reduce_range: per-channel weights in [-64, 64] (7 bits), so VPMADDUBSW's 16-bit pair sums (x86
    without VNNI) cannot saturate; the class and box predictor convs keep float weights."""
    from onnx import numpy_helper

    from retina_cli.data.transforms import letterbox_batch
    from retina_cli.export.quantize import quantize_int8

    ckpt, model = make_checkpoint(tmp_path / "m.pt")
    path = quantize_int8(export_onnx(ckpt), [letterbox_batch([im], model.cfg.img_size)[0] for im in frames()])
    graph = onnx.load(str(path)).graph
    weights = [numpy_helper.to_array(t) for t in graph.initializer if t.data_type == onnx.TensorProto.INT8]
    assert len(weights) >= 5
    assert all(w.min() >= -64 and w.max() <= 64 for w in weights)
    assert min(int(w.min()) for w in weights) == -64 and max(int(w.max()) for w in weights) == 64  # the range is used
    float_init = {t.name for t in graph.initializer if t.data_type == onnx.TensorProto.FLOAT}
    float_convs = [n.name for n in graph.node if n.op_type == "Conv" and n.input[1] in float_init]
    assert any("cls_logits" in n for n in float_convs) and any("box_deltas" in n for n in float_convs)
    assert all("cls_logits" in n or "box_deltas" in n for n in float_convs)  # every other conv is int8


def test_dynamic_graph_runs_where_a_level_has_fewer_pairs_than_topk(tmp_path):
    """k of the per-level top-k is a graph value, not the export size's constant: at 64x64 the top
    level (P5, 2x2 cells x 9 anchors x 3 classes = 108 pairs) has fewer than topk=200."""
    ckpt, model = make_checkpoint(tmp_path / "m.pt")
    path = export_onnx(ckpt, tmp_path / "dyn.onnx")  # dynamic height and width: the default
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = torch.full((1, 3, 64, 64), 114.0)
    scores, _, _ = session.run(None, {"images": x.numpy()})
    with torch.no_grad():
        ref = DecodingDetector(model, POST.topk)(x)
    assert scores.shape == ref.scores.shape == (1, 200 + 200 + 108)
    np.testing.assert_allclose(scores, ref.scores.numpy(), atol=1e-5)


def test_rectangular_onnx_predictions_equal_torch_and_use_one_session_per_shape(tmp_path):
    ckpt, _ = make_checkpoint(tmp_path / "m.pt")
    backend = OnnxBackend(export_onnx(ckpt, tmp_path / "m.onnx"), "cpu")
    torch_backend = TorchBackend(make_checkpoint(tmp_path / "t.pt")[1], POST, torch.device("cpu"))
    assert backend.stride == torch_backend.stride == 32
    images = [np.ascontiguousarray(f) for f in frames(n=3)]  # 128 wide, 96-128 high
    shapes = []
    original = backend.candidates

    def spy(batch):
        shapes.append(batch.shape[1:3])
        return original(batch)

    backend.candidates = spy
    got = Predictor(backend, POST)([images[0]]) + Predictor(backend, POST)([images[1]])
    want = Predictor(torch_backend, POST)([images[0]]) + Predictor(torch_backend, POST)([images[1]])
    assert shapes == [(96, 128), (128, 128)]  # 96 high: already a multiple of 32; 112 -> 128
    assert_same_detections(got, want)
    assert sorted(backend.session.shapes()) == [(1, 96, 128), (1, 128, 128)]
    fixed = OnnxBackend(export_onnx(ckpt, tmp_path / "fixed.onnx", dynamic_size=False), "cpu")
    assert fixed.stride is None
    assert_same_detections(Predictor(fixed, POST)([images[0]]), Predictor(torch_backend, POST, rect=False)([images[0]]))


def test_two_streams_split_the_threads_and_give_the_same_detections(tmp_path, monkeypatch):
    from concurrent.futures import ThreadPoolExecutor

    monkeypatch.setattr("os.cpu_count", lambda: 4)
    ckpt, _ = make_checkpoint(tmp_path / "m.pt")
    backend = OnnxBackend(export_onnx(ckpt), "cpu")
    images = [np.ascontiguousarray(f[:96]) for f in frames(n=3)] * 4
    one = [Predictor(backend, POST)([im])[0] for im in images]
    assert backend.use_streams(2) == 2
    assert backend.session((1, 96, 128)).get_session_options().intra_op_num_threads == 2  # 4 cores / 2
    with ThreadPoolExecutor(2) as pool:
        two = list(pool.map(lambda im: Predictor(backend, POST)([im])[0], images))
    assert_same_detections(two, one)
    assert backend.use_streams(1) == 1 and backend.session.shapes() == []
