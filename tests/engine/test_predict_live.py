"""Live sources in `retina predict` and the Python API: the newest frame by default, every frame with
--all-frames / all_frames=True; the annotated video of a live source stays on the source's clock."""

from __future__ import annotations

import json
import threading
import time

import cv2
from typer.testing import CliRunner

import retina_cli
from helpers import make_checkpoint
from mjpeg_server import MjpegServer, paced_frames, read_stamp
from retina_cli.cli.app import _register, app
from retina_cli.engine.video import CapturePacer, PipelineStats, newest_frames

_register()
runner = CliRunner()


def decode_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name == "retina-decode" and t.is_alive()]


def test_capture_pacer_holds_each_kept_frame_until_the_next_one_was_captured():
    pacer = CapturePacer(fps=10.0)
    # captured at 0 s, 0.1 s, 0.32 s (two source slots dropped before it), 0.33 s (same slot)
    assert [pacer.repeats(t) for t in (5.0, 5.1, 5.32, 5.33)] == [0, 1, 2, 1]
    assert pacer.close() == 1  # the last one: 5 output frames for 4 kept, none lost
    assert CapturePacer(10.0).close() == 0


def test_newest_frames_gives_a_slow_consumer_the_newest_frame_and_stops_its_thread():
    stats, got = PipelineStats(), []
    for frame in newest_frames(paced_frames(100.0, frames=40, width=256, height=48), stats):
        got.append(read_stamp(frame.image))
        time.sleep(0.05)  # 5 source frames per step
    assert got == sorted(set(got)) and got[-1] == 39  # in order, and the end of the source is reached
    assert stats.read == 40 and stats.predicted == len(got) < 20 and stats.read == stats.predicted + stats.dropped
    # a consumer that stops early closes the generator: the reader thread ends
    gen = newest_frames(paced_frames(100.0, width=256, height=48))
    next(gen)
    gen.close()
    assert decode_threads() == []


def test_predict_on_a_stream_keeps_the_newest_frame_and_reports_the_lag(tmp_path):
    ckpt, _ = make_checkpoint(tmp_path / "m.pt")
    with MjpegServer(fps=30.0, frames=45) as server:
        res = runner.invoke(app, ["predict", str(ckpt), server.url, "--device", "cpu", "--out", str(tmp_path / "live")],
                            env={"COLUMNS": "250", "NO_COLOR": "1"})
    assert res.exit_code == 0, res.output
    assert "live, kept the newest frame, dropped" in res.output and "output behind the source: median" in res.output
    rows = json.loads((tmp_path / "live" / "predictions.json").read_text())
    frames = sorted({r["frame"] for r in rows})
    assert frames and frames == sorted(frames)
    # the video holds at least one output frame per frame kept (a dropped frame's slot repeats the one before)
    (video,) = (tmp_path / "live").glob("stream*.mp4")
    cap = cv2.VideoCapture(str(video))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) >= len(frames)
    cap.release()

    with MjpegServer(fps=30.0, frames=30) as server:
        res = runner.invoke(app, ["predict", str(ckpt), server.url, "--device", "cpu", "--out", str(tmp_path / "all"),
                                  "--all-frames", "--no-save-media"], env={"COLUMNS": "250", "NO_COLOR": "1"})
    assert res.exit_code == 0, res.output
    assert "live, all" in res.output and "frames queued (--all-frames)" in res.output


def test_api_stream_gives_the_newest_frame_to_a_slow_loop(tmp_path):
    ckpt, _ = make_checkpoint(tmp_path / "m.pt")
    det = retina_cli.load(ckpt, device="cpu")
    with MjpegServer(fps=30.0, frames=40) as server:
        frames = []
        for r in det.predict(server.url, stream=True):
            frames.append(read_stamp(r.image))
            time.sleep(0.15)  # a slow loop: ~4 source frames per step
    assert frames == sorted(set(frames)) and len(frames) < 30 and frames[-1] >= 35
    assert decode_threads() == []
    with MjpegServer(fps=30.0, frames=20) as server:
        every = [read_stamp(r.image) for r in det.predict(server.url, stream=True, all_frames=True)]
    assert every == list(range(every[0], every[0] + len(every)))  # consecutive: nothing dropped
