"""`retina predict` on image files: the written JSON/CSV/txt equal InferenceModel on the letterboxed
image with the letterbox undone; class filter; unreadable inputs."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from retina_cli.config import PostprocessConfig
from retina_cli.data.transforms import boxes_from_letterbox, letterbox, read_image, rect_shape
from retina_cli.engine.detector import InferenceModel
from retina_cli.engine.predict import PredictConfig, run_predict
from retina_cli.engine.sources import SourceError, resolve_sources
from retina_cli.errors import ConfigError
from retina_cli.model.retinanet import RetinaNet

from helpers import NAMES, POST, make_checkpoint  # noqa: F401  (re-exported to the video/export tests)


def write_images(folder: Path) -> dict[str, tuple[int, int]]:
    """A few PNG/JPG files of different sizes with coloured shapes -> {name: (w, h)}."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    sizes = {"a.png": (128, 96), "b.jpg": (100, 150), "c.png": (64, 64)}
    for name, (w, h) in sizes.items():
        img = (rng.random((h, w, 3)) * 60).astype(np.uint8)
        cv2.rectangle(img, (w // 4, h // 4), (w * 3 // 4, h * 3 // 4), (30, 200, 240), -1)
        cv2.circle(img, (w // 3, h // 2), min(w, h) // 6, (250, 40, 40), -1)
        cv2.imwrite(str(folder / name), img)
    return sizes


def reference(model: RetinaNet, image_rgb: np.ndarray, post: PostprocessConfig = POST):
    """InferenceModel on the letterboxed image (the rectangle of the top stride, as predict runs
    it), boxes mapped back: (boxes (D, 4), scores (D,), labels (D,))."""
    h, w = image_rgb.shape[:2]
    canvas, meta = letterbox(image_rgb, model.cfg.img_size, rect_shape(w, h, model.cfg.img_size, 2 ** model.cfg.max_level))
    x = torch.from_numpy(canvas).permute(2, 0, 1)[None].float()
    det = InferenceModel(model, post)(x)[0]
    return boxes_from_letterbox(det.boxes, meta).numpy(), det.scores.numpy(), det.labels.numpy()


def rows_by_file(out: Path) -> dict[tuple[str, int], list[dict]]:
    grouped: dict[tuple[str, int], list[dict]] = {}
    for r in json.loads((out / "predictions.json").read_text()):
        grouped.setdefault((Path(r["file_name"]).name, r["frame"]), []).append(r)
    return grouped


def as_xyxy(rows: list[dict]) -> np.ndarray:
    b = np.array([r["bbox"] for r in rows], np.float64).reshape(-1, 4)
    return np.concatenate([b[:, :2], b[:, :2] + b[:, 2:]], axis=1)


def test_folder_results_equal_inference_model_with_letterbox_undone(tmp_path):
    ckpt, model = make_checkpoint(tmp_path / "m.pt")
    sizes = write_images(tmp_path / "imgs")
    out = tmp_path / "out"
    summary = run_predict(ckpt, str(tmp_path / "imgs"), PredictConfig(out=str(out), batch=2, device="cpu", save_txt=True))
    assert summary.frames == 3 and not summary.interrupted
    rows = rows_by_file(out)
    total = 0
    for name, (w, h) in sizes.items():
        boxes, scores, labels = reference(model, read_image(tmp_path / "imgs" / name))
        got = rows.get((name, 0), [])
        assert len(got) == len(boxes) > 0  # there ARE detections
        total += len(got)
        np.testing.assert_allclose(as_xyxy(got), boxes, atol=1e-3)
        np.testing.assert_allclose([r["score"] for r in got], scores, atol=1e-5)
        assert [r["category_id"] for r in got] == labels.tolist()
        assert [r["category_name"] for r in got] == [NAMES[k] for k in labels]
        # letterbox undone: every box lies in the original image, and some reach into the
        # part of the canvas that was padding only if they are clipped to the image edge
        xyxy = as_xyxy(got)
        assert (xyxy >= 0).all() and (xyxy[:, [0, 2]] <= w + 1e-3).all() and (xyxy[:, [1, 3]] <= h + 1e-3).all()
        annotated = cv2.imread(str(out / name))
        assert annotated.shape == (h, w, 3)
        # YOLO txt: class cx cy w h normalised, the same boxes
        txt = np.loadtxt(out / "labels" / f"{Path(name).stem}.txt", ndmin=2)
        np.testing.assert_array_equal(txt[:, 0], labels)
        np.testing.assert_allclose(txt[:, 1] * w, (boxes[:, 0] + boxes[:, 2]) / 2, atol=1e-3)
        np.testing.assert_allclose(txt[:, 4] * h, boxes[:, 3] - boxes[:, 1], atol=1e-3)
    assert sum(summary.per_class.values()) == total
    with (out / "predictions.csv").open() as f:
        table = list(csv.DictReader(f))
    assert len(table) == total
    first = rows_by_file(out)[("a.png", 0)][0]
    row = next(r for r in table if Path(r["source"]).name == "a.png")
    x, y, bw, bh = first["bbox"]
    assert (float(row["x1"]), float(row["y2"]), row["class_name"], int(row["frame"])) == pytest.approx((x, y + bh, first["category_name"], 0), abs=1e-3)


def test_classes_filter_keeps_exactly_the_named_classes(tmp_path):
    ckpt, model = make_checkpoint(tmp_path / "m.pt")
    write_images(tmp_path / "imgs")
    all_rows = tmp_path / "all"
    run_predict(ckpt, str(tmp_path / "imgs" / "a.png"), PredictConfig(out=str(all_rows), device="cpu", save_media=False, max_det=1000))
    run_predict(ckpt, str(tmp_path / "imgs" / "a.png"), PredictConfig(out=str(tmp_path / "f"), device="cpu", save_media=False, max_det=1000, classes=("dog,2",)))
    full = json.loads((all_rows / "predictions.json").read_text())
    kept = json.loads((tmp_path / "f" / "predictions.json").read_text())
    expected = [r for r in full if r["category_id"] in (1, 2)]
    assert len(kept) == len(expected) > 0 and len(expected) < len(full)
    assert {r["category_name"] for r in kept} <= {"dog", "bird"}
    np.testing.assert_allclose(as_xyxy(kept), as_xyxy(expected), atol=1e-4)
    assert not list((tmp_path / "f").glob("*.png"))  # --no-save-media
    with pytest.raises(ConfigError, match="--classes 'horse'"):
        run_predict(ckpt, str(tmp_path / "imgs" / "a.png"), PredictConfig(out=str(tmp_path / "g"), device="cpu", classes=("horse",)))


def test_zero_byte_image_alone_is_an_error_in_a_folder_a_warning(tmp_path):
    ckpt, _ = make_checkpoint(tmp_path / "m.pt")
    write_images(tmp_path / "imgs")
    (tmp_path / "imgs" / "empty.jpg").write_bytes(b"")
    with pytest.raises(SourceError, match=r"empty\.jpg: empty file \(0 bytes\)"):
        run_predict(ckpt, str(tmp_path / "imgs" / "empty.jpg"), PredictConfig(out=str(tmp_path / "o1"), device="cpu"))
    warnings: list[str] = []
    summary = run_predict(ckpt, str(tmp_path / "imgs"), PredictConfig(out=str(tmp_path / "o2"), device="cpu"), warn=warnings.append)
    assert summary.frames == 3 and len(summary.skipped) == 1 and "empty.jpg" in warnings[0]
    (tmp_path / "bad.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(SourceError, match=r"bad\.png"):
        run_predict(ckpt, str(tmp_path / "bad.png"), PredictConfig(out=str(tmp_path / "o3"), device="cpu"))


def test_resolve_sources(tmp_path):
    write_images(tmp_path / "imgs")
    (tmp_path / "imgs" / "notes.txt").write_text("x")
    (tmp_path / "imgs" / "clip.mp4").write_bytes(b"")
    kinds = [(Path(s.spec).name, s.kind, s.index) for s in resolve_sources(str(tmp_path / "imgs"))]
    assert kinds == [("a.png", "image", 0), ("b.jpg", "image", 1), ("c.png", "image", 2), ("clip.mp4", "video", 3)]
    assert [Path(s.spec).name for s in resolve_sources(str(tmp_path / "imgs" / "*.png"))] == ["a.png", "c.png"]
    assert resolve_sources("0")[0].kind == "stream" and resolve_sources("rtsp://cam/1")[0].kind == "stream"
    with pytest.raises(SourceError, match="no such file or folder"):
        resolve_sources(str(tmp_path / "missing.jpg"))
    with pytest.raises(SourceError, match="not an image or video"):
        resolve_sources(str(tmp_path / "imgs" / "notes.txt"))
    with pytest.raises(SourceError, match="matches no image"):
        resolve_sources(str(tmp_path / "imgs" / "*.gif"))


def test_non_utf8_and_spaced_names_predict_and_unreadable_video_name_is_an_error(tmp_path):
    import os

    ckpt, _ = make_checkpoint(tmp_path / "m.pt")
    write_images(tmp_path / "imgs")
    src = tmp_path / "imgs" / "a.png"
    odd = Path(os.fsdecode(os.fsencode(str(tmp_path / "imgs")) + b"/caf\xe9 shot.png"))  # Latin-1 byte
    odd.write_bytes(src.read_bytes())
    summary = run_predict(ckpt, str(tmp_path / "imgs"), PredictConfig(out=str(tmp_path / "o"), device="cpu"))
    assert summary.frames == 4 and not summary.skipped
    written = {os.fsencode(p.name) for p in (tmp_path / "o").iterdir()}
    assert b"caf\xe9 shot.png" in written  # the annotated copy keeps the odd name
    video = Path(os.fsdecode(os.fsencode(str(tmp_path)) + b"/clip\xe9.mp4"))
    video.write_bytes(b"\x00" * 64)
    with pytest.raises(SourceError, match="not valid UTF-8"):
        run_predict(ckpt, str(video), PredictConfig(out=str(tmp_path / "v"), device="cpu"))


def test_tracked_rows_and_csv_have_a_track_id_column(tmp_path):
    import csv as _csv

    from retina_cli.engine import writers

    boxes = np.array([[1, 2, 11, 22], [5, 5, 6, 7]], np.float32)
    rows = writers.detection_rows(0, "v.mp4", 4, boxes, np.array([0.9, 0.5]), np.array([1, 0]), ("a", "b"), np.array([12, 5]))
    assert [r["track_id"] for r in rows] == [12, 5] and rows[0]["bbox"] == [1.0, 2.0, 10.0, 20.0]
    writers.write_csv(rows, tmp_path / "t.csv", tracked=True)
    table = list(_csv.reader((tmp_path / "t.csv").open()))
    assert table[0][-1] == "track_id" and table[1][-1] == "12" and table[2][-1] == "5"
    untracked = writers.detection_rows(0, "v.mp4", 4, boxes, np.array([0.9, 0.5]), np.array([1, 0]), ("a", "b"))
    assert "track_id" not in untracked[0]
    writers.write_csv(untracked, tmp_path / "u.csv")
    assert list(_csv.reader((tmp_path / "u.csv").open()))[0] == list(writers.CSV_HEADER)
