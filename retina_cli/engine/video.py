"""The threaded predict pipeline: decode | network | draw + encode, overlapped, frames kept in order.

::

    reader thread --(bounded queue)--> main thread: batch, predict --(bounded queue)--> writer thread
    (decode)                           (pre-process, network, post-process)             (draw, encode)

One thread per stage and FIFO queues keep frames in their input order. The network runs in the
caller's thread, so Ctrl-C (KeyboardInterrupt) lands there: the reader is told to stop, the writer
finishes the frames already predicted and its ``close`` runs, so the video on disk is playable and
holds every frame that was done. Then the interrupt goes on up.
"""

from __future__ import annotations

import queue
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator

from retina_cli.engine.sources import Frame

STAGES = ("decode", "preprocess", "network", "postprocess", "draw", "encode")
_END = object()


@dataclass
class StageTimer:
    """Seconds spent per stage, summed over the run (stages in other threads overlap the network)."""

    seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))

    @contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[stage] += time.perf_counter() - t0

    def merge(self, other: dict[str, float]) -> None:
        for k, v in other.items():
            self.seconds[k] = self.seconds.get(k, 0.0) + v

    def per_frame_ms(self, frames: int) -> dict[str, float]:
        return {k: 1000.0 * v / max(frames, 1) for k, v in self.seconds.items()}


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


def _read(frames: Iterable[Frame], q: queue.Queue, stop: threading.Event, timer: StageTimer) -> None:
    it = iter(frames)
    try:
        while not stop.is_set():
            with timer("decode"):
                frame = next(it, _END)
            if not _put(q, frame, stop) or frame is _END:
                return
    except BaseException as exc:  # handed to the main thread, which raises it
        _put(q, _Failure(exc), stop)
    finally:
        close = getattr(frames, "close", None) or getattr(it, "close", None)
        if close is not None and stop.is_set():
            close()


def _write(q: queue.Queue, sink: Callable[[Frame, Any], None], errors: list[BaseException]) -> None:
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


def run_pipeline(
    frames: Iterable[Frame],
    predict: Callable[[list[Frame]], list[Any]],
    sink: Callable[[Frame, Any], None],
    batch_size: int,
    timer: StageTimer,
    on_batch: Callable[[list[Frame], list[Any]], None] | None = None,
    queue_size: int = 8,
) -> int:
    """Run ``predict`` on batches of ``frames`` and ``sink(frame, result)`` every frame, in order.

    frames: iterated in a reader thread (timed as "decode"). predict: a list of up to
    ``batch_size`` frames -> one result per frame, in the calling thread. sink: in a writer thread
    (it times its own draw / encode). on_batch: called in the calling thread after each batch
    (results rows, progress). Returns the number of frames predicted. Exceptions from any thread
    are raised here; ``sink`` is not called again after it raised.
    """
    stop = threading.Event()
    read_q: queue.Queue = queue.Queue(maxsize=queue_size)
    write_q: queue.Queue = queue.Queue(maxsize=queue_size)
    write_errors: list[BaseException] = []
    reader = threading.Thread(target=_read, args=(frames, read_q, stop, timer), name="retina-decode", daemon=True)
    writer = threading.Thread(target=_write, args=(write_q, sink, write_errors), name="retina-encode", daemon=True)
    reader.start()
    writer.start()
    done = 0
    try:
        ended = False
        while not ended:
            batch: list[Frame] = []
            while len(batch) < batch_size:
                item = read_q.get()
                if item is _END:
                    ended = True
                    break
                if isinstance(item, _Failure):
                    raise item.exc
                batch.append(item)
            if not batch:
                break
            results = predict(batch)
            for frame, result in zip(batch, results):
                write_q.put((frame, result))
            done += len(batch)
            if on_batch is not None:
                on_batch(batch, results)
            if write_errors:
                break
    finally:
        stop.set()
        write_q.put(_END)
        writer.join()
        reader.join(timeout=5.0)
    if write_errors:
        raise write_errors[0]
    return done
