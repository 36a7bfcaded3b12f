"""One video's (or image sequence's) tracking: detections -> tracked Results, line counts, trails, MOT rows.

The one tracking path of ``retina predict --track`` and :meth:`retina_cli.Detector.track`: a
:class:`TrackSession` per source feeds each frame's :class:`~retina_cli.engine.results.Result` to a
:class:`~retina_cli.tracking.bytetrack.ByteTracker`, keeps the detections that are on a track (with
their ids), updates the line counters and remembers the rows of the MOTChallenge file. Frames must
come in order; the session runs in the thread that predicts, and hands the drawing thread an
immutable :class:`Overlay` snapshot per frame (trails and counts as they were at that frame).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from retina_cli.engine.results import Result
from retina_cli.tracking.bytetrack import ByteTracker, TrackerConfig
from retina_cli.tracking.counting import CountLine, LineCounter
from retina_cli.tracking.mot import mot_rows

TRAIL = 30  # centres kept per track for the drawn trail


@dataclass(frozen=True)
class Overlay:
    """What to draw on one frame besides its boxes.

    trails: ``(track_id, class_id, points (P, 2) float32)`` per track on this frame, oldest point first.
    lines: ``(line, total_in, total_out)`` per count line, the counts up to and including this frame.
    """

    trails: tuple[tuple[int, int, np.ndarray], ...] = ()
    lines: tuple[tuple[CountLine, int, int], ...] = ()


class TrackSession:
    """Track one source. names: the model's class names. frame_rate: the video's (scales the lost-track
    buffer as ByteTrack does). lines: count lines (none: no counting). trail: centres per drawn trail."""

    def __init__(self, names: Sequence[str], cfg: TrackerConfig = TrackerConfig(), frame_rate: float = 30.0,
                 lines: Sequence[CountLine] = (), trail: int = TRAIL) -> None:
        self.names = tuple(names)
        self.tracker = ByteTracker(cfg, frame_rate)
        self.counter = LineCounter(list(lines), self.names) if lines else None
        self.trail = trail
        self.forget_after = max(1, self.tracker.max_time_lost) + 1
        self._trails: dict[int, deque] = {}
        self._seen: dict[int, int] = {}
        self.steps = 0
        self.mot: list[str] = []
        self.track_ids: set[int] = set()

    def step(self, res: Result, sequence: bool = False) -> tuple[Result, Overlay]:
        """One frame's detections (in order) -> (the detections on a track, with ``track_ids``; the overlay).

        sequence: the frames are images of a sequence (their ``frame`` is 0): MOT frame numbers and
        counting use the position in the sequence instead of ``res.frame``.
        """
        ids = self.tracker.update(res.boxes, res.scores, res.class_ids)  # (D,) int64, -1 off-track
        keep = np.flatnonzero(ids >= 0)
        tracked = res.select(keep).with_tracks(ids[keep])
        frame = self.steps if sequence else res.frame
        self.steps += 1
        self.mot.extend(mot_rows(frame + 1, tracked.track_ids, tracked.boxes, tracked.scores))
        self.track_ids.update(tracked.track_ids.tolist())
        if self.counter is not None:
            self.counter.update(frame, tracked.track_ids, tracked.boxes, tracked.class_ids)
        return tracked, self._overlay(tracked)

    def _overlay(self, tracked: Result) -> Overlay:
        centres = (tracked.boxes[:, :2] + tracked.boxes[:, 2:]) / 2  # (T, 2)
        # a dict of short deques per track: tens of tracks per frame, drawing-side bookkeeping
        for tid, c in zip(tracked.track_ids.tolist(), centres):
            self._trails.setdefault(tid, deque(maxlen=self.trail)).append(c)
            self._seen[tid] = self.steps
        for tid in [t for t, s in self._seen.items() if self.steps - s > self.forget_after]:
            del self._trails[tid], self._seen[tid]
        trails = tuple((tid, int(k), np.array(self._trails[tid], np.float32))
                       for tid, k in zip(tracked.track_ids.tolist(), tracked.class_ids.tolist()))
        lines: tuple = ()
        if self.counter is not None:
            lines = tuple((line, c["total_in"], c["total_out"]) for line, c in zip(self.counter.lines, self.counter.counts()))
        return Overlay(trails, lines)

    def summary(self) -> dict[str, Any]:
        """``{"frames", "tracks", "lines": [...], "crossings": [...]}`` (counts only with count lines)."""
        out: dict[str, Any] = {"frames": self.steps, "tracks": len(self.track_ids)}
        if self.counter is not None:
            out.update(self.counter.to_dict())
        return out
