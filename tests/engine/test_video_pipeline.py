"""Video prediction: output video size/fps/frame count, rows equal to InferenceModel per frame,
frame order, damaged frames, Ctrl-C, unopenable files."""

from __future__ import annotations

import contextlib
import json
import threading
import time

import cv2
import numpy as np
import pytest

from retina_cli.engine import sources as sources_mod
from retina_cli.engine.predict import PredictConfig, TorchBackend, run_predict
from retina_cli.engine.sources import Frame, Source, SourceError
from retina_cli.engine.video import StageTimer, run_pipeline
from test_predict_images import as_xyxy, make_checkpoint, reference

W, H, N, FPS = 128, 96, 12, 10.0


def write_video(path, frames: int = N, fourcc: str = "mp4v"):
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), FPS, (W, H))
    rng = np.random.default_rng(1)
    for i in range(frames):
        img = (rng.random((H, W, 3)) * 50).astype(np.uint8)
        cv2.rectangle(img, (10 + 5 * i, 20), (60 + 5 * i, 70), (40, 220, 250), -1)
        out.write(img)
    out.release()
    return path


def decoded_frames(path) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, img = cap.read()
        if not ok:
            return frames
        frames.append(img)


def video_props(path) -> tuple[int, int, int, float]:
    cap = cv2.VideoCapture(str(path))
    props = (int(cap.get(cv2.CAP_PROP_FRAME_COUNT)), int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)), cap.get(cv2.CAP_PROP_FPS))
    cap.release()
    return props


def assert_rows_equal_reference(rows: list[dict], video, model) -> None:
    """predictions.json rows of ``video``: in frame order, each frame's equal to InferenceModel's."""
    assert [r["frame"] for r in rows] == sorted(r["frame"] for r in rows)
    for i, frame in enumerate(decoded_frames(video)):
        boxes, scores, labels = reference(model, np.ascontiguousarray(frame[:, :, ::-1]))
        got = [r for r in rows if r["frame"] == i]
        assert len(got) == len(boxes) > 0
        np.testing.assert_allclose(as_xyxy(got), boxes, atol=1e-3)
        np.testing.assert_allclose([r["score"] for r in got], scores, atol=1e-5)
        assert [r["category_id"] for r in got] == labels.tolist()


def test_video_output_and_rows_equal_inference_model(tmp_path):
    ckpt, model = make_checkpoint(tmp_path / "m.pt")
    video = write_video(tmp_path / "clip.mp4")
    out = tmp_path / "out"
    summary = run_predict(ckpt, str(video), PredictConfig(out=str(out), batch=4, device="cpu"))
    assert summary.frames == N and summary.bad_frames == 0
    assert video_props(out / "clip.mp4") == (N, W, H, FPS)
    assert len(decoded_frames(out / "clip.mp4")) == N
    rows = json.loads((out / "predictions.json").read_text())
    assert sorted({r["frame"] for r in rows}) == list(range(N))  # every frame has detections, in order
    assert_rows_equal_reference(rows, video, model)


def test_h264_codec_through_pyav(tmp_path):
    pytest.importorskip("av")
    ckpt, _ = make_checkpoint(tmp_path / "m.pt")
    video = write_video(tmp_path / "clip.avi", frames=6, fourcc="MJPG")
    out = tmp_path / "out"
    run_predict(ckpt, str(video), PredictConfig(out=str(out), device="cpu", codec="h264", batch=3))
    import av

    with av.open(str(out / "clip.mp4")) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        assert (stream.width, stream.height, float(stream.average_rate)) == (W, H, FPS)
        assert sum(1 for _ in container.decode(stream)) == 6


class FlakyCapture:
    """cv2.VideoCapture whose read of frame 5 fails, as a damaged frame does."""

    real = cv2.VideoCapture

    def __init__(self, target):
        self.cap = self.real(target)
        self.reads = 0

    def read(self):
        ok, img = self.cap.read()
        self.reads += 1
        return (False, None) if self.reads == 6 else (ok, img)

    def __getattr__(self, name):
        return getattr(self.cap, name)


def test_damaged_frame_is_skipped_and_counted(tmp_path, monkeypatch):
    ckpt, _ = make_checkpoint(tmp_path / "m.pt")
    video = write_video(tmp_path / "clip.mp4")
    monkeypatch.setattr(sources_mod.cv2, "VideoCapture", FlakyCapture)
    summary = run_predict(ckpt, str(video), PredictConfig(out=str(tmp_path / "out"), device="cpu", batch=2))
    # the flaky read swallowed one decoded frame: 11 frames come out, numbered 0-4 and 6-11
    assert summary.bad_frames == 1 and summary.frames == N - 1
    rows = json.loads((tmp_path / "out" / "predictions.json").read_text())
    assert sorted({r["frame"] for r in rows}) == [0, 1, 2, 3, 4, 6, 7, 8, 9, 10, 11]
    assert video_props(tmp_path / "out" / "clip.mp4")[0] == N - 1


def test_ctrl_c_leaves_a_playable_video_with_the_frames_done(tmp_path, monkeypatch):
    ckpt, _ = make_checkpoint(tmp_path / "m.pt")
    video = write_video(tmp_path / "clip.mp4")
    real = TorchBackend.candidates
    calls = {"n": 0}

    def interrupted(self, batch):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(self, batch)

    monkeypatch.setattr(TorchBackend, "candidates", interrupted)
    out = tmp_path / "out"
    summary = run_predict(ckpt, str(video), PredictConfig(out=str(out), device="cpu", batch=2))
    assert summary.interrupted and summary.frames == 4
    assert video_props(out / "clip.mp4")[:3] == (4, W, H)
    assert len(decoded_frames(out / "clip.mp4")) == 4
    assert sorted({r["frame"] for r in json.loads((out / "predictions.json").read_text())}) == [0, 1, 2, 3]


def test_unopenable_and_empty_videos_are_one_line_errors(tmp_path):
    ckpt, _ = make_checkpoint(tmp_path / "m.pt")
    (tmp_path / "broken.mp4").write_bytes(b"this is not a video" * 50)
    with pytest.raises(SourceError, match=r"broken\.mp4: cannot open this video") as info:
        run_predict(ckpt, str(tmp_path / "broken.mp4"), PredictConfig(out=str(tmp_path / "o1"), device="cpu"))
    assert "\n" not in str(info.value)
    (tmp_path / "empty.avi").write_bytes(b"")
    with pytest.raises(SourceError, match=r"empty\.avi: empty video file"):
        run_predict(ckpt, str(tmp_path / "empty.avi"), PredictConfig(out=str(tmp_path / "o2"), device="cpu"))


def test_pipeline_keeps_order_overlaps_and_propagates_sink_errors():
    src = Source("video", "x.mp4")
    frames = [Frame(src, i, np.full((2, 2, 3), i, np.uint8)) for i in range(10)]
    seen, in_writer = [], []

    def predict(batch):
        time.sleep(0.01 * (len(batch) % 2))  # uneven batch times
        return [int(f.image[0, 0, 0]) * 10 for f in batch]

    def sink(frame, result):
        in_writer.append(threading.current_thread().name)
        seen.append((frame.index, result))

    timer = StageTimer()
    assert run_pipeline(iter(frames), predict, sink, batch_size=3, timer=timer) == 10
    assert seen == [(i, 10 * i) for i in range(10)]
    assert set(in_writer) == {"retina-encode"}

    def failing(frame, result):
        if frame.index == 4:
            raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        run_pipeline(iter(frames), predict, failing, batch_size=2, timer=timer)


def test_streams_predict_batches_at_once_and_keep_their_order():
    src = Source("video", "x.mp4")
    frames = [Frame(src, i, np.full((2, 2, 3), i, np.uint8)) for i in range(11)]
    lock, running, peak, threads = threading.Lock(), [0], [0], set()

    def predict(batch):
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
            threads.add(threading.current_thread().name)
        time.sleep(0.02 if batch[0].index % 2 else 0.005)  # uneven: the later batch may finish first
        with lock:
            running[0] -= 1
        return [int(f.image[0, 0, 0]) for f in batch]

    order, seen = [], []

    def ordered(batch, results):
        assert threading.current_thread() is threading.main_thread()
        order.extend(results)
        return [r * 10 for r in results]

    n = run_pipeline(iter(frames), predict, lambda f, r: seen.append((f.index, r)), batch_size=2, timer=StageTimer(),
                     streams=2, ordered=ordered)
    assert n == 11 and order == list(range(11)) and seen == [(i, 10 * i) for i in range(11)]
    assert peak[0] == 2 and len(threads) == 2  # the calling thread and one pool thread, side by side

    def failing(batch):
        if batch[0].index == 4:
            raise ValueError("bad frame")
        return predict(batch)

    with pytest.raises(ValueError, match="bad frame"):
        run_pipeline(iter(frames), failing, lambda f, r: None, batch_size=1, timer=StageTimer(), streams=2)
    peak[0] = 0
    run_pipeline(iter(frames), predict, lambda f, r: None, batch_size=1, timer=StageTimer(), streams=2, latest=True)
    assert peak[0] == 1  # a live source: one stream, the newest frame


def test_torch_cpu_video_runs_two_streams_with_the_same_rows(tmp_path, monkeypatch):
    import torch

    from retina_cli.engine import predict as predict_mod

    seen = []
    real = predict_mod.network_streams

    @contextlib.contextmanager
    def spy(backend, live=False):
        with real(backend, live) as streams:
            seen.append((streams, torch.get_num_threads()))
            yield streams

    monkeypatch.setattr(predict_mod, "network_streams", spy)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        ckpt, model = make_checkpoint(tmp_path / "m.pt")
        video = write_video(tmp_path / "clip.mp4")
        run_predict(ckpt, str(video), PredictConfig(out=str(tmp_path / "out"), device="cpu", save_media=False))
        assert seen == [(2, 1)] and torch.get_num_threads() == 2  # 2 streams of 1 thread, then restored
    finally:
        torch.set_num_threads(before)
    assert_rows_equal_reference(json.loads((tmp_path / "out" / "predictions.json").read_text()), video, model)
    backend = TorchBackend(model, predict_mod.PostprocessConfig(), torch.device("cpu"))
    with real(backend, live=True) as streams:
        assert streams == 1
