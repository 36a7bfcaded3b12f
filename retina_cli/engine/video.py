"""The threaded predict pipeline: decode | network | draw + encode, overlapped, frames kept in order.

::

    reader thread --(bounded queue)--> main thread: batch, predict --(bounded queue)--> writer thread
    (decode)                           (pre-process, network, post-process)             (draw, encode)

One thread per stage and FIFO queues keep frames in their input order. The network runs in the
caller's thread, so Ctrl-C (KeyboardInterrupt) lands there: the reader is told to stop, the writer
finishes the frames already predicted and its ``close`` runs, so the video on disk is playable and
holds every frame that was done. Then the interrupt goes on up.

Live sources (webcams, streams) get ``latest=True``: the reader never waits for the network, it
keeps decoding as fast as the source delivers and leaves only the newest frame for the predictor;
frames the predictor did not take are dropped (counted in :class:`PipelineStats`). The output then
follows the source at the model's pace instead of falling further behind with every frame.
:func:`newest_frames` gives the same to a caller that pulls frames itself (the Python API), and
:class:`CapturePacer` keeps a video written from such frames on the source's clock.
"""

from __future__ import annotations

import dataclasses
import math
import queue
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator

import numpy as np

from retina_cli.engine.sources import Frame

STAGES = ("decode", "preprocess", "network", "postprocess", "draw", "encode")
_END = object()


@dataclass
class StageTimer:
    """Seconds spent per stage, summed over the run (stages in other threads overlap the network)."""

    seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    @contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            dt = time.perf_counter() - t0
            with self._lock:  # network streams time the same stage from several threads
                self.seconds[stage] = self.seconds.get(stage, 0.0) + dt

    def merge(self, other: dict[str, float]) -> None:
        for k, v in other.items():
            self.seconds[k] = self.seconds.get(k, 0.0) + v

    def per_frame_ms(self, frames: int) -> dict[str, float]:
        return {k: 1000.0 * v / max(frames, 1) for k, v in self.seconds.items()}


@dataclass
class PipelineStats:
    """What one run did with its frames, filled in while it runs.

    read: frames the reader decoded; predicted: frames through ``predict``; dropped: frames a newer
    one replaced before the predictor took them (latest mode only). At a normal end
    ``read == predicted + dropped``; a run stopped early may leave a few read but neither.
    lags: seconds from each frame's ``captured`` time to the end of its ``sink`` (draw + encode),
    in output order. The clock starts at decode: what waited before it (in a socket, in FFmpeg)
    is not seen, so a source that buffers lags more than this says.
    """

    read: int = 0
    predicted: int = 0
    dropped: int = 0
    lags: list[float] = field(default_factory=list)

    def lag_ms(self) -> dict[str, float]:
        """-> ``{"median", "p95", "max"}`` of ``lags`` in milliseconds (NaN when no frame came out)."""
        if not self.lags:
            return dict.fromkeys(("median", "p95", "max"), math.nan)
        ms = 1000.0 * np.asarray(self.lags)
        return {"median": float(np.median(ms)), "p95": float(np.percentile(ms, 95)), "max": float(ms.max())}


class _Failure:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


def _put(q: queue.Queue, item: Any, stop: threading.Event) -> bool:
    """Put unless ``stop`` is set first; False when stopped."""
    while not stop.is_set():
        try:
            q.put(item, timeout=0.1)
            return True
        except queue.Full:
            continue
    return False


class _Fifo:
    """Every frame, in order: the reader waits while the predictor is ``size`` frames behind."""

    def __init__(self, size: int, stop: threading.Event) -> None:
        self.q: queue.Queue = queue.Queue(maxsize=size)
        self.stop = stop

    def put(self, item: Any) -> bool:
        return _put(self.q, item, self.stop)

    def get(self) -> Any:
        return self.q.get()


class _Newest:
    """Only the newest frame: the reader never waits; a frame not taken before the next one arrives
    is dropped. The end marker (or a failure) comes after the last frame, which is never dropped."""

    def __init__(self, stats: PipelineStats) -> None:
        self.cond = threading.Condition()
        self.frame: Frame | None = None
        self.final: Any = None  # _END or a _Failure
        self.stats = stats

    def put(self, item: Any) -> bool:
        with self.cond:
            if isinstance(item, Frame):
                if self.frame is not None:
                    self.stats.dropped += 1
                self.frame = item
            else:
                self.final = item
            self.cond.notify()
        return True

    def get(self) -> Any:
        with self.cond:
            while self.frame is None and self.final is None:
                self.cond.wait(timeout=0.1)  # a timeout keeps the wait interruptible everywhere
            if self.frame is None:
                return self.final
            frame, self.frame = self.frame, None
            return frame


def _read(frames: Iterable[Frame], hand: _Fifo | _Newest, stop: threading.Event, timer: StageTimer,
          stats: PipelineStats | None) -> None:
    it = iter(frames)
    try:
        while not stop.is_set():
            with timer("decode"):
                frame = next(it, _END)
            if stats is not None and frame is not _END:
                stats.read += 1
                if frame.captured is None:  # a source that does not stamp its frames: decoded now
                    frame = dataclasses.replace(frame, captured=time.perf_counter())
            if not hand.put(frame) or frame is _END:
                return
    except BaseException as exc:  # handed to the main thread, which raises it
        hand.put(_Failure(exc))
    finally:
        close = getattr(frames, "close", None) or getattr(it, "close", None)
        if close is not None and stop.is_set():
            close()


def _write(q: queue.Queue, sink: Callable[[Frame, Any], None], errors: list[BaseException],
           stats: PipelineStats | None) -> None:
    # drains the queue to the end marker even after a failure, so the main thread never blocks on put
    while True:
        item = q.get()
        if item is _END:
            return
        if not errors:
            try:
                sink(*item)
            except BaseException as exc:
                errors.append(exc)
                continue
            if stats is not None and item[0].captured is not None:
                stats.lags.append(time.perf_counter() - item[0].captured)


def run_pipeline(
    frames: Iterable[Frame],
    predict: Callable[[list[Frame]], list[Any]],
    sink: Callable[[Frame, Any], None],
    batch_size: int,
    timer: StageTimer,
    on_batch: Callable[[list[Frame], list[Any]], None] | None = None,
    queue_size: int = 8,
    latest: bool = False,
    stats: PipelineStats | None = None,
    streams: int = 1,
    ordered: Callable[[list[Frame], list[Any]], list[Any]] | None = None,
) -> int:
    """Run ``predict`` on batches of ``frames`` and ``sink(frame, result)`` every frame, in order.

    frames: iterated in a reader thread (timed as "decode"). predict: a list of up to
    ``batch_size`` frames -> one result per frame, in the calling thread. sink: in a writer thread
    (it times its own draw / encode). on_batch: called in the calling thread after each batch
    (results rows, progress). Returns the number of frames predicted. Exceptions from any thread
    are raised here; ``sink`` is not called again after it raised.

    streams: batches predicted at once, each in a thread of its own (``predict`` must be safe to
    call concurrently); results still come out in input order. On a CPU, two single-threaded
    network calls side by side outrun one two-threaded call, which waits for its slower thread at
    every layer (and for the draw and encode threads that take its cores). ordered: results ->
    results in the calling thread, in order, before ``sink`` and ``on_batch`` (tracking, which
    needs the frames in sequence). Live sources (``latest``) use one stream: the newest frame.

    latest: for live sources. The reader decodes as fast as the source delivers and the predictor
    takes only the newest frame; older ones are dropped. Each batch is that one frame, whatever
    ``batch_size`` says: a batch of frames waiting for each other is stale before it starts. The
    write queue holds one frame, so a slow ``sink`` slows the predictor (more frames are dropped)
    instead of building a backlog. Frames still come out in order. On a video file it would decode
    at full speed and drop most frames: give files ``latest=False``, which keeps every frame.
    stats: filled in with the frames read / predicted / dropped and each frame's lag.
    """
    stop = threading.Event()
    if latest and stats is None:
        stats = PipelineStats()  # _Newest counts its drops somewhere, read or not
    hand: _Fifo | _Newest = _Newest(stats) if latest else _Fifo(queue_size, stop)
    take = 1 if latest else batch_size
    write_q: queue.Queue = queue.Queue(maxsize=1 if latest else queue_size)
    write_errors: list[BaseException] = []
    reader = threading.Thread(target=_read, args=(frames, hand, stop, timer, stats), name="retina-decode", daemon=True)
    writer = threading.Thread(target=_write, args=(write_q, sink, write_errors, stats), name="retina-encode", daemon=True)
    streams = 1 if latest else max(1, streams)
    pool = ThreadPoolExecutor(streams - 1, thread_name_prefix="retina-network") if streams > 1 else None
    reader.start()
    writer.start()
    done = 0

    def deliver(batch: list[Frame], results: list[Any]) -> None:
        nonlocal done
        if ordered is not None:
            results = ordered(batch, results)
        for frame, result in zip(batch, results):
            write_q.put((frame, result))
        done += len(batch)
        if stats is not None:
            stats.predicted += len(batch)
        if on_batch is not None:
            on_batch(batch, results)

    try:
        ended = False
        while not ended and not write_errors:
            # up to ``streams`` batches at once: the first ones to the pool, the last in this thread
            group: list[list[Frame]] = []
            while len(group) < streams and not ended:
                batch: list[Frame] = []
                while len(batch) < take:
                    item = hand.get()
                    if item is _END:
                        ended = True
                        break
                    if isinstance(item, _Failure):
                        raise item.exc
                    batch.append(item)
                if batch:
                    group.append(batch)
            if not group:
                break
            futures = [pool.submit(predict, b) for b in group[:-1]] if pool is not None else []
            last = predict(group[-1])
            outputs = [f.result() for f in futures] + [last]
            for batch, results in zip(group, outputs):
                deliver(batch, results)
                if write_errors:
                    break
    finally:
        stop.set()
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
        write_q.put(_END)
        writer.join()
        reader.join(timeout=5.0)
    if write_errors:
        raise write_errors[0]
    return done


def newest_frames(frames: Iterable[Frame], stats: PipelineStats | None = None) -> Iterator[Frame]:
    """``frames`` of a live source, decoded in a thread; each ``next`` returns the newest frame
    decoded since the previous one and drops the older ones (counted in ``stats.dropped``).

    For a caller that pulls frames at its own pace (``for r in detector.predict(0, stream=True)``):
    the source is read as fast as it delivers, so what the caller gets is never older than its own
    processing time. Closing the generator (or dropping it) stops and joins the reader thread.
    Exceptions of the reader are raised here.
    """
    stats = stats if stats is not None else PipelineStats()
    stop = threading.Event()
    hand = _Newest(stats)
    reader = threading.Thread(target=_read, args=(frames, hand, stop, StageTimer(), stats), name="retina-decode", daemon=True)
    reader.start()
    try:
        while True:
            item = hand.get()
            if item is _END:
                return
            if isinstance(item, _Failure):
                raise item.exc
            stats.predicted += 1
            yield item
    finally:
        stop.set()
        reader.join(timeout=5.0)


class CapturePacer:
    """How many times to write each frame so that a video of a live source's kept frames plays on
    the source's clock: frame ``k`` of the output video shows the newest frame captured by
    ``k / fps`` seconds after the first one (a dropped frame's slot holds the frame before it).

    ``repeats(captured)`` for each kept frame in order -> how many times to write the *previous*
    kept frame now (0 for the first call); ``close()`` -> the last frame's count (1, or 0 when none
    came). Every kept frame is written at least once, so frames that come faster than ``fps`` make
    the video run longer than the source did.
    """

    def __init__(self, fps: float) -> None:
        self.fps = fps
        self.t0: float | None = None
        self.written = 0  # output frames so far, the held one not included

    def repeats(self, captured: float) -> int:
        if self.t0 is None:
            self.t0 = captured
            return 0
        slot = int(round((captured - self.t0) * self.fps))
        n = max(1, slot - self.written)
        self.written += n
        return n

    def close(self) -> int:
        return 0 if self.t0 is None else 1
