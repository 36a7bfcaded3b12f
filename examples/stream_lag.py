"""How far the output of a slow model falls behind a live stream: queue mode against latest mode.

    python examples/stream_lag.py --seconds 10 --cost 0.1

Serves an MJPEG stream over HTTP on 127.0.0.1 at ``--fps`` (each frame stamped with its number),
reads it with OpenCV like `retina predict http://...` does, and runs the threaded pipeline with a
"model" that sleeps ``--cost`` seconds a frame, for ``--seconds`` in each mode. The sink draws and
JPEG-encodes each frame (a stand-in for the video writer). One line per mode:

    read / predicted / dropped   frames decoded, through the model, skipped for newer ones
    lag                          decode -> sink done (what PipelineStats measures), ms
    behind                       the server's capture of the frame -> sink done, ms: the lag a
                                 viewer sees, including what waited in the socket and FFmpeg
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from retina_cli.engine.sources import Frame, Source, VideoReader
from retina_cli.engine.video import PipelineStats, StageTimer, run_pipeline

# the stream server lives with the tests that use it (one copy); it is plain http.server + OpenCV
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from mjpeg_server import MjpegServer, read_stamp  # noqa: E402


class _TimeUp(Exception):
    """Raised after --seconds: the pipeline stops as on Ctrl-C and re-raises it."""


def measure(latest: bool, fps: float, seconds: float, cost: float, width: int, height: int) -> dict[str, object]:
    """One run on a fresh stream -> the row of the table."""
    stats, behind = PipelineStats(), []
    with MjpegServer(fps=fps, width=width, height=height) as server:
        reader = VideoReader(Source("stream", server.url))

        def predict(batch: list[Frame]) -> list[int]:
            time.sleep(cost * len(batch))
            return [read_stamp(f.image) for f in batch]

        def sink(frame: Frame, n: int) -> None:
            cv2.rectangle(frame.image, (20, 40), (120, 140), (40, 220, 250), 2)
            cv2.imencode(".jpg", frame.image)
            behind.append(time.perf_counter() - server.time_of(n))

        t0 = time.perf_counter()

        def on_batch(frames: list[Frame], results: list[int]) -> None:
            if time.perf_counter() - t0 > seconds:
                raise _TimeUp

        try:
            run_pipeline(reader, predict, sink, 1, StageTimer(), on_batch=on_batch, latest=latest, stats=stats)
        except _TimeUp:
            pass
    ms = 1000.0 * np.asarray(behind)
    return {"mode": "latest" if latest else "queue", "read": stats.read, "predicted": stats.predicted,
            "dropped": stats.dropped, "lag": stats.lag_ms(),
            "behind": {"median": float(np.median(ms)), "p95": float(np.percentile(ms, 95)), "max": float(ms.max())}}


def main(argv: list[str] | None = None) -> list[dict[str, object]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fps", type=float, default=30.0, help="frame rate of the stream")
    parser.add_argument("--seconds", type=float, default=10.0, help="run time of each mode")
    parser.add_argument("--cost", type=float, default=0.1, help="seconds the model takes per frame")
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)
    args = parser.parse_args(argv)
    print(f"{args.fps:g} fps MJPEG over HTTP, {args.width}x{args.height}, model {1000 * args.cost:.0f} ms/frame, "
          f"{args.seconds:g} s per mode")
    print(f"{'mode':<7} {'read':>5} {'predicted':>9} {'dropped':>7}   {'lag ms med / p95 / max':>24}   "
          f"{'behind ms med / p95 / max':>25}")
    rows = []
    for latest in (False, True):
        row = measure(latest, args.fps, args.seconds, args.cost, args.width, args.height)
        lag, behind = row["lag"], row["behind"]
        print(f"{row['mode']:<7} {row['read']:>5} {row['predicted']:>9} {row['dropped']:>7}   "
              f"{lag['median']:>8.0f} {lag['p95']:>7.0f} {lag['max']:>7.0f}   "
              f"{behind['median']:>9.0f} {behind['p95']:>7.0f} {behind['max']:>7.0f}")
        rows.append(row)
    return rows


if __name__ == "__main__":
    main()
