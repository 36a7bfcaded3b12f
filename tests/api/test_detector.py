"""`retina_cli.load(...).predict(...)`: the same numbers as `retina predict`'s predictions.json and as
InferenceModel with the letterbox undone, for every kind of source; val and export through the API."""

from __future__ import annotations

import json
import types
from pathlib import Path

import cv2
import numpy as np
import pytest

import retina_cli
from retina_cli.cli.app import main
from retina_cli.engine.sources import SourceError
from retina_cli.errors import ConfigError, RetinaError
from helpers import NAMES, make_checkpoint
from retina_cli.data.synthetic import write_video

H, W = 72, 150  # non-square: the letterbox pads top and bottom


def picture(seed: int = 0, h: int = H, w: int = W) -> np.ndarray:
    """``(h, w, 3)`` uint8 BGR noise with two painted shapes."""
    rng = np.random.default_rng(seed)
    img = (rng.random((h, w, 3)) * 60).astype(np.uint8)
    cv2.rectangle(img, (w // 5, h // 5), (w // 2, h * 4 // 5), (30, 200, 240), -1)
    cv2.circle(img, (w * 3 // 4, h // 2), h // 4, (250, 40, 40), -1)
    return img


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> tuple[Path, object]:
    return make_checkpoint(tmp_path_factory.mktemp("api") / "m.pt")


@pytest.fixture(scope="module")
def detector(ckpt):
    return retina_cli.load(ckpt[0], device="cpu")


def reference(model, image_rgb: np.ndarray):
    """InferenceModel on the letterboxed image, boxes mapped back (as tests/engine/test_predict_images.py)."""
    import torch

    from retina_cli.config import PostprocessConfig
    from retina_cli.data.transforms import boxes_from_letterbox, letterbox, rect_shape
    from retina_cli.engine.detector import InferenceModel

    h, w = image_rgb.shape[:2]  # the rectangle of the top stride, as predict runs it
    canvas, meta = letterbox(image_rgb, model.cfg.img_size, rect_shape(w, h, model.cfg.img_size, 2 ** model.cfg.max_level))
    x = torch.from_numpy(canvas).permute(2, 0, 1)[None].float()
    det = InferenceModel(model, PostprocessConfig(score_thresh=0.3, nms_thresh=0.5, topk=200, max_det=1000))(x)[0]
    return boxes_from_letterbox(det.boxes, meta).numpy(), det.scores.numpy(), det.labels.numpy()


def as_xyxy(rows: list[dict]) -> np.ndarray:
    b = np.array([r["bbox"] for r in rows], np.float64).reshape(-1, 4)
    return np.concatenate([b[:, :2], b[:, :2] + b[:, 2:]], axis=1)


def cli_rows(args: list[str], out: Path) -> dict[tuple[str, int], list[dict]]:
    try:
        main(["predict", *args, "--device", "cpu", "--out", str(out), "--no-save-media", "-q"])
    except SystemExit as exc:
        assert exc.code in (0, None)
    grouped: dict[tuple[str, int], list[dict]] = {}
    for r in json.loads((out / "predictions.json").read_text()):
        grouped.setdefault((r["file_name"], r["frame"]), []).append(r)
    return grouped


def assert_result_equals_rows(res, rows: list[dict]) -> None:
    assert len(res) == len(rows) > 0
    np.testing.assert_allclose(res.boxes, as_xyxy(rows), atol=1e-3)  # the JSON keeps 4 decimals
    np.testing.assert_allclose(res.scores, [r["score"] for r in rows], atol=1e-5)
    assert res.class_ids.tolist() == [r["category_id"] for r in rows]
    assert list(res.labels) == [r["category_name"] for r in rows]


def test_numpy_array_and_video_equal_retina_predict_json(detector, ckpt, tmp_path):
    png = tmp_path / "scene.png"
    cv2.imwrite(str(png), picture())
    video = write_video(tmp_path / "clip.mp4", frames=5, size=(96, 128))
    rows = cli_rows([str(ckpt[0]), str(png)], tmp_path / "cli_img")
    [res] = detector.predict(cv2.imread(str(png)))  # a script's BGR array, not the file
    assert res.path is None and res.frame == 0 and res.orig_shape == (H, W)
    assert_result_equals_rows(res, rows[(str(png), 0)])

    video_rows = cli_rows([str(ckpt[0]), str(video)], tmp_path / "cli_vid")
    frames = list(detector.predict(video, stream=True))
    assert [r.frame for r in frames] == [0, 1, 2, 3, 4]
    assert {r.path for r in frames} == {str(video)}
    for r in frames:
        assert_result_equals_rows(r, video_rows[(str(video), r.frame)])


def test_boxes_are_in_original_pixels_of_a_letterboxed_array(detector, ckpt):
    img = picture(1)
    [res] = detector.predict(img, max_det=1000)
    boxes, scores, labels = reference(ckpt[1], img[:, :, ::-1].copy())  # InferenceModel + letterbox undone
    assert len(res) == len(boxes) > 0
    np.testing.assert_allclose(res.boxes, boxes, atol=1e-3)
    np.testing.assert_allclose(res.scores, scores, atol=1e-5)
    assert res.class_ids.tolist() == labels.tolist()
    assert res.boxes.dtype == np.float32 and res.class_ids.dtype == np.int64
    assert (res.boxes >= 0).all() and (res.boxes[:, [0, 2]] <= W).all() and (res.boxes[:, [1, 3]] <= H).all()
    # the network saw 128 x 128 with 36 px of padding above: boxes reaching below H would be canvas pixels
    assert res.boxes[:, [1, 3]].max() > H / 2


def test_stream_is_a_generator_and_a_list_gives_one_result_per_item(detector, tmp_path):
    a, b = picture(2), picture(3, 96, 64)
    png = tmp_path / "c.png"
    cv2.imwrite(str(png), picture(4))
    gen = detector.predict([a, b], stream=True)
    assert isinstance(gen, types.GeneratorType)
    both = detector.predict([a, b, png], batch=2)
    assert [r.path for r in both] == [None, None, str(png)]
    assert [r.orig_shape for r in both] == [(H, W), (96, 64), (H, W)]
    for res, single in zip(both, [detector.predict(a)[0], detector.predict(b)[0], detector.predict(str(png))[0]]):
        np.testing.assert_allclose(res.boxes, single.boxes, atol=1e-4)
        np.testing.assert_allclose(res.scores, single.scores, atol=1e-5)
        assert res.class_ids.tolist() == single.class_ids.tolist()
    assert [len(r) for r in gen] == [len(both[0]), len(both[1])]


def test_pil_image_and_rgb_array_equal_the_bgr_array(detector):
    from PIL import Image

    bgr = picture(5)
    rgb = np.ascontiguousarray(bgr[:, :, ::-1])
    [ref] = detector.predict(bgr)
    for res in (detector.predict(Image.fromarray(rgb))[0], detector.predict(rgb, channels="rgb")[0]):
        assert np.array_equal(res.boxes, ref.boxes) and np.array_equal(res.scores, ref.scores)
        assert np.array_equal(res.class_ids, ref.class_ids)
    grey = detector.predict(bgr[:, :, 1])[0]  # (H, W) greyscale works as three equal channels
    assert grey.orig_shape == (H, W)
    assert np.array_equal(grey.boxes, detector.predict(np.repeat(bgr[:, :, 1:2], 3, axis=2))[0].boxes)


def test_classes_and_thresholds_filter_like_the_checkpoint_settings(detector):
    img = picture(6)
    [everything] = detector.predict(img, max_det=1000)
    [dogs] = detector.predict(img, max_det=1000, classes=["dog"])
    [dogs_by_id] = detector.predict(img, max_det=1000, classes=[1])
    keep = everything.class_ids == 1
    assert 0 < keep.sum() < len(everything)
    np.testing.assert_allclose(dogs.boxes, everything.boxes[keep], atol=1e-4)
    assert set(dogs.labels) == {"dog"} and np.array_equal(dogs.boxes, dogs_by_id.boxes)
    [confident] = detector.predict(img, max_det=1000, conf=0.6)
    np.testing.assert_allclose(confident.scores, everything.scores[everything.scores >= 0.6], atol=1e-6)
    [capped] = detector.predict(img, max_det=3)
    np.testing.assert_allclose(capped.scores, everything.scores[:3], atol=1e-6)
    with pytest.raises(ConfigError, match="'horse': not a class"):
        detector.predict(img, classes=["horse"])


def test_unsupported_sources_are_retina_errors_naming_what_was_passed(detector, tmp_path):
    cases = [
        ({"image": 1}, "builtins.dict"),
        (np.zeros((8, 8, 3), np.float32), "dtype float32"),
        (np.zeros((8, 8, 4), np.uint8), "shape (8, 8, 4)"),
        (tmp_path / "missing.jpg", "missing.jpg: no such file"),
        ([], "empty list"),
    ]
    for source, expected in cases:
        with pytest.raises(SourceError, match=None) as info:
            detector.predict(source, stream=True)  # raised at the call, not at the first next()
        assert isinstance(info.value, RetinaError) and expected in str(info.value), str(info.value)
    with pytest.raises(SourceError, match="channels 'bgra'"):
        detector.predict(picture(), channels="bgra")


def test_names_and_repr(detector, ckpt):
    assert detector.names == NAMES and detector.backend == "torch" and detector.img_size == 128
    assert repr(detector) == f"Detector({str(ckpt[0])!r}, backend='torch', classes=3, img_size=128)"


def test_export_then_load_the_onnx_model_predicts_the_same(detector, tmp_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    path = detector.export(out=tmp_path / "m.onnx")
    assert path == tmp_path / "m.onnx" and path.is_file()
    onnx_det = retina_cli.load(path, device="cpu")
    assert onnx_det.backend == "onnxruntime" and onnx_det.names == NAMES
    img = picture(7)
    [a], [b] = detector.predict(img), onnx_det.predict(img)
    assert len(a) == len(b) > 0 and a.class_ids.tolist() == b.class_ids.tolist()
    np.testing.assert_allclose(a.boxes, b.boxes, atol=1e-2)
    with pytest.raises(RetinaError, match="already an exported model"):
        onnx_det.export()
    with pytest.raises(RetinaError, match="--format 'tflite'"):
        detector.export(format="tflite")


def test_val_equals_retina_eval_and_writes_only_when_asked(tmp_path, monkeypatch, capsys):
    from retina_cli.data.synthetic import write_yolo_dataset

    data = write_yolo_dataset(tmp_path / "data", n_train=2, n_val=3, size=(64, 80), seed=3, object_size=(16, 36))
    names = ("circle", "square", "triangle")
    from retina_cli.config import PostprocessConfig

    ckpt, _ = make_checkpoint(tmp_path / "v.pt", names=names, post=PostprocessConfig(score_thresh=0.05, topk=100, max_det=50))
    monkeypatch.chdir(tmp_path)
    m = retina_cli.load(ckpt, device="cpu").val(data)
    assert m.run_dir is None and not (tmp_path / "runs").exists()
    assert m.images == 3 and m.split == "val" and set(m.per_class) == set(names)
    assert m.AP == m.metrics["AP"] and m.AP50 == m.metrics["AP50"] and m.AP75 == m.metrics["AP75"]
    assert set(m.metrics) == {"AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl"}
    assert sum(v["num_gt"] for v in m.per_class.values()) > 0
    capsys.readouterr()
    try:
        main(["eval", str(ckpt), str(data), "--device", "cpu", "--workers", "0", "--json", "--project", str(tmp_path / "ev")])
    except SystemExit as exc:
        assert exc.code in (0, None)
    assert json.loads(capsys.readouterr().out) == m.to_dict()
    saved = json.loads((tmp_path / "ev" / "exp" / "metrics.json").read_text())
    assert saved["metrics"] == m.metrics and saved["images"] == 3
    again = retina_cli.load(ckpt, device="cpu").val(data, project=tmp_path / "ev")
    assert again.run_dir == tmp_path / "ev" / "exp2" and (again.run_dir / "detections.json").is_file()
    assert again.metrics == m.metrics
