"""Latest-frame mode of the pipeline on live sources: a 30 fps source and a model slower than it.

Queue mode (every frame) falls further behind the source with every frame; latest mode drops the
frames the model has no time for and stays one model-time behind. Checked on a paced in-process
source and on a real MJPEG-over-HTTP stream read by OpenCV's FFmpeg backend.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from mjpeg_server import MjpegServer, paced_frames, read_stamp, stamped_frame
from retina_cli.engine.sources import Frame, Source, VideoReader
from retina_cli.engine.video import PipelineStats, StageTimer, run_pipeline

FPS = 30.0
COST = 0.15  # seconds per predicted frame: 4.5 frame intervals of the source


def slow_predict(cost: float = COST, batches: list[int] | None = None):
    def predict(batch: list[Frame]) -> list[int]:
        if batches is not None:
            batches.append(len(batch))
        time.sleep(cost * len(batch))
        return [read_stamp(f.image) for f in batch]
    return predict


def pipeline_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("retina-") and t.is_alive()]


def test_queue_mode_keeps_every_frame_and_falls_behind():
    stats, seen = PipelineStats(), []
    done = run_pipeline(paced_frames(FPS, frames=15, width=256, height=48), slow_predict(),
                        lambda f, r: seen.append((f.index, r)), batch_size=1, timer=StageTimer(), stats=stats)
    assert done == 15 and seen == [(i, i) for i in range(15)]  # the stamp read back is the frame number
    assert (stats.read, stats.predicted, stats.dropped) == (15, 15, 0)
    # frame i comes out near (i + 1) * COST, captured at i / FPS: the lag grows by ~0.117 s a frame
    assert stats.lags[0] < 3 * COST
    assert stats.lags[-1] > 1.3 and stats.lags[-1] > 5 * stats.lags[0]


def test_latest_mode_drops_stale_frames_and_its_lag_stays_flat():
    stats, seen, batches = PipelineStats(), [], []
    done = run_pipeline(paced_frames(FPS, frames=60, width=256, height=48), slow_predict(batches=batches),
                        lambda f, r: seen.append((f.index, r)), batch_size=4, timer=StageTimer(), latest=True, stats=stats)
    indices = [i for i, _ in seen]
    assert [r for _, r in seen] == indices and all(a < b for a, b in zip(indices, indices[1:]))
    assert set(batches) == {1}  # batch 4 asked, the newest single frame given
    assert stats.read == 60 and stats.predicted == done == len(seen)
    assert stats.predicted + stats.dropped == 60 and stats.dropped >= 40  # 2 s of source, ~13 predicted
    assert indices[-1] == 59  # the last frame of a source that ends is never dropped
    # a frame waits at most one interval to be taken, then COST to predict: bounded, not growing
    assert stats.lag_ms()["max"] < 1000 * (COST + 0.35)
    half = len(stats.lags) // 2
    assert np.median(stats.lags[half:]) < 1.5 * np.median(stats.lags[:half]) + 0.05


def test_real_mjpeg_stream_through_video_reader_in_latest_mode():
    with MjpegServer(fps=FPS, frames=60) as server:
        reader = VideoReader(Source("stream", server.url))
        assert reader.cap.getBackendName() == "FFMPEG"
        stats, seen = PipelineStats(), []

        def sink(frame: Frame, result: int) -> None:
            # behind the source: from when the server captured the frame to now, buffers and all
            seen.append((read_stamp(frame.image), result, time.perf_counter() - server.time_of(result)))

        run_pipeline(reader, slow_predict(0.1), sink, batch_size=2, timer=StageTimer(), latest=True, stats=stats)
    stamps = [s for s, _, _ in seen]
    assert [r for _, r, _ in seen] == stamps and all(a < b for a, b in zip(stamps, stamps[1:]))
    assert stats.read == stats.predicted + stats.dropped and stats.dropped > stats.predicted > 5
    assert stamps[-1] >= 55  # the stream's end is reached, not a stale backlog
    assert max(behind for _, _, behind in seen) < 0.1 + 0.4
    assert stats.lag_ms()["max"] < 1000 * (0.1 + 0.35)
    assert not reader.cap.isOpened() and pipeline_threads() == []


class EndlessCamera:
    """A live source that never ends on its own; records whether the pipeline closed it."""

    def __init__(self) -> None:
        self.frames = paced_frames(FPS, width=256, height=48)
        self.closed = False

    def __iter__(self):
        return self.frames

    def close(self) -> None:
        self.frames.close()
        self.closed = True


def test_ctrl_c_in_latest_mode_finishes_the_frames_done_and_closes_everything():
    camera, video, calls = EndlessCamera(), [], []
    video_closed = []

    def predict(batch):
        calls.append(batch[0].index)
        if len(calls) == 4:
            raise KeyboardInterrupt
        time.sleep(0.05)
        return [batch[0].index]

    stats = PipelineStats()
    with pytest.raises(KeyboardInterrupt):
        try:
            run_pipeline(camera, predict, lambda f, r: video.append(r), batch_size=1, timer=StageTimer(),
                         latest=True, stats=stats)
        finally:
            video_closed.append(len(video))  # what the caller's `finally: writer.close()` would see
    assert video == calls[:3] and video_closed == [3] and stats.predicted == 3
    assert camera.closed and pipeline_threads() == []


def test_latest_mode_raises_reader_and_sink_errors():
    def broken():
        yield from paced_frames(FPS, frames=5, width=256, height=48)
        raise OSError("stream reset by peer")

    seen = []
    with pytest.raises(OSError, match="stream reset by peer"):
        run_pipeline(broken(), slow_predict(0.01), lambda f, r: seen.append(r), 1, StageTimer(), latest=True)
    assert seen[-1] == 4  # the newest frame before the failure still came out

    def full_disk(frame, result):
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        run_pipeline(paced_frames(FPS, frames=10, width=256, height=48), slow_predict(0.01), full_disk, 1,
                     StageTimer(), latest=True)
    assert pipeline_threads() == []


def test_stamp_survives_jpeg_and_lag_summary_is_in_ms():
    import cv2

    for n in (0, 1, 59, 1234, 65535):
        ok, jpeg = cv2.imencode(".jpg", stamped_frame(n), [cv2.IMWRITE_JPEG_QUALITY, 50])
        assert read_stamp(cv2.imdecode(jpeg, cv2.IMREAD_COLOR)) == n
    stats = PipelineStats(lags=[0.010, 0.020, 0.030, 0.040, 0.100])
    assert stats.lag_ms() == pytest.approx({"median": 30.0, "p95": 88.0, "max": 100.0})
    assert all(np.isnan(v) for v in PipelineStats().lag_ms().values())


def test_stream_lag_example_shows_queue_mode_falling_behind(capsys):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "examples" / "stream_lag.py"
    spec = importlib.util.spec_from_file_location("example_stream_lag", path)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    queue_row, latest_row = example.main(["--seconds", "1.5", "--cost", "0.1", "--width", "320", "--height", "240"])
    assert (queue_row["mode"], latest_row["mode"]) == ("queue", "latest")
    assert queue_row["dropped"] == 0 and latest_row["dropped"] > latest_row["predicted"]
    # after 1.5 s the queue's last frame is ~1 s behind the source, latest mode's ~0.1 s
    assert queue_row["behind"]["max"] > 3 * latest_row["behind"]["max"]
    assert latest_row["behind"]["max"] < 1000 * (0.1 + 0.4)
    assert "latest" in capsys.readouterr().out
