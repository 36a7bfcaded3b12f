"""Counting tracks that cross lines, per class and direction.

A track's anchor is its box centre. It crosses a line when the segment from its previous anchor
to the current one properly intersects the line segment (touching it is not crossing). The
previous anchor is the last one seen strictly off that line, so a track that stops exactly on the
line and then goes on is counted once it is past it, and one that touches it and turns back is not.

Direction, in image coordinates (x right, y down), for the directed line ``P1 = (x1, y1) -> P2 =
(x2, y2)`` and a point ``Q``: ``side(Q) = (x2 - x1) * (Qy - y1) - (y2 - y1) * (Qx - x1)``. ``side > 0``
is the right of the line as drawn (for a line drawn left to right, below it), ``side < 0`` its left.
A crossing is ``"in"`` from left to right (side < 0 then > 0) and ``"out"`` from right to left.

Each track is counted at most once per line, by its first crossing (as ultralytics' ObjectCounter
keeps its counted ids): crossing back and forth counts once. The ids counted stay remembered; the
anchors of tracks unseen for more than ``forget_after`` frames are dropped, so memory is bounded
by the tracks seen recently plus the ids counted.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from retina_cli.errors import ConfigError

FORGET_AFTER = 10_000  # frames a track may be unseen before its anchors are dropped


@dataclass(frozen=True)
class CountLine:
    """A count line segment from ``(x1, y1)`` to ``(x2, y2)`` in pixels; its direction defines "in"."""

    x1: float
    y1: float
    x2: float
    y2: float

    @classmethod
    def parse(cls, text: str) -> CountLine:
        """``"X1,Y1,X2,Y2"`` (pixels) -> CountLine; ConfigError when it is not four numbers or has no length."""
        parts = str(text).split(",")
        try:
            values = [float(p) for p in parts]
        except ValueError:
            values = []
        if len(values) != 4 or not all(math.isfinite(v) for v in values):
            raise ConfigError(f"count line {text!r}: expected X1,Y1,X2,Y2 (four numbers in pixels), e.g. 0,240,640,240")
        line = cls(*values)
        if line.x1 == line.x2 and line.y1 == line.y2:
            raise ConfigError(f"count line {text!r} has zero length: give two different end points")
        return line

    def as_list(self) -> list[float]:
        return [self.x1, self.y1, self.x2, self.y2]

    def side(self, points: np.ndarray) -> np.ndarray:
        """``(..., 2)`` points -> ``(...)`` cross product ``side(Q)`` of the module docstring (> 0: right)."""
        return (self.x2 - self.x1) * (points[..., 1] - self.y1) - (self.y2 - self.y1) * (points[..., 0] - self.x1)


@dataclass(frozen=True)
class Crossing:
    """Track ``track_id`` of class ``class_id`` crossed line number ``line`` on ``frame``, ``"in"`` or ``"out"``."""

    frame: int
    line: int
    track_id: int
    class_id: int
    direction: str


def _cross(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """2-D cross products of ``(..., 2)`` vectors -> ``(...)``."""
    return u[..., 0] * v[..., 1] - u[..., 1] * v[..., 0]


class LineCounter:
    """Counts crossings of ``lines`` by the tracks fed to :meth:`update`, frame by frame, in order.
    names: class names (``names[k]`` is class ``k``) for :meth:`counts`."""

    def __init__(self, lines: Sequence[CountLine], names: Sequence[str], forget_after: int = FORGET_AFTER) -> None:
        self.lines = list(lines)
        self.names = tuple(names)
        self.forget_after = forget_after
        n = len(self.lines)
        self._ids = np.zeros(0, np.int64)  # (M,) sorted ids of the tracks remembered
        self._seen = np.zeros(0, np.int64)  # (M,) frame each was last seen
        self._anchor = np.zeros((0, n, 2))  # (M, L, 2) last anchor strictly off each line; nan: none yet
        self._counted = [np.zeros(0, np.int64) for _ in range(n)]  # per line, sorted ids already counted
        self._counts = [{"in": Counter(), "out": Counter()} for _ in range(n)]  # per line: class id -> n
        self.crossings: list[Crossing] = []

    def update(self, frame: int, track_ids: np.ndarray, boxes: np.ndarray, labels: np.ndarray) -> list[Crossing]:
        """One frame's tracks: ids ``(T,)`` int (unique), boxes ``(T, 4)`` xyxy pixels, labels ``(T,)``
        int -> the crossings they made since they were last seen (also added to :attr:`crossings`)."""
        ids = np.asarray(track_ids, dtype=np.int64).reshape(-1)
        centres = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        centres = (centres[:, :2] + centres[:, 2:]) / 2  # (T, 2)
        labels = np.asarray(labels, dtype=np.int64).reshape(-1)
        pos = np.searchsorted(self._ids, ids)
        known = pos < len(self._ids)
        known[known] = self._ids[pos[known]] == ids[known]
        prev = np.full((len(ids), len(self.lines), 2), np.nan)  # (T, L, 2)
        prev[known] = self._anchor[pos[known]]
        anchor = prev.copy()
        new: list[Crossing] = []
        for k, line in enumerate(self.lines):
            p = prev[:, k]  # (T, 2)
            s0, s1 = line.side(p), line.side(centres)
            move = centres - p
            ends = _cross(move, np.array([line.x1, line.y1]) - p) * _cross(move, np.array([line.x2, line.y2]) - p)
            crossed = (s0 * s1 < 0) & (ends < 0) & ~np.isin(ids, self._counted[k])  # nan compares False
            for i in np.flatnonzero(crossed):  # the crossing events only, a few per frame
                c = Crossing(int(frame), k, int(ids[i]), int(labels[i]), "in" if s1[i] > 0 else "out")
                self._counts[k][c.direction][c.class_id] += 1
                new.append(c)
            self._counted[k] = np.union1d(self._counted[k], ids[crossed])
            anchor[:, k] = np.where((s1 != 0)[:, None], centres, p)
        self._remember(frame, ids, known, pos, anchor)
        self.crossings.extend(new)
        return new

    def _remember(self, frame: int, ids: np.ndarray, known: np.ndarray, pos: np.ndarray, anchor: np.ndarray) -> None:
        """Store this frame's anchors ``(T, L, 2)``, add the new ids, drop the ids unseen for too long."""
        self._anchor[pos[known]] = anchor[known]
        self._seen[pos[known]] = frame
        all_ids = np.concatenate((self._ids, ids[~known]))
        seen = np.concatenate((self._seen, np.full(int((~known).sum()), frame, np.int64)))
        anchors = np.concatenate((self._anchor, anchor[~known]))
        order = np.argsort(all_ids, kind="stable")
        keep = order[frame - seen[order] <= self.forget_after]
        self._ids, self._seen, self._anchor = all_ids[keep], seen[keep], anchors[keep]

    def _name(self, k: int) -> str:
        return self.names[k] if 0 <= k < len(self.names) else str(k)

    def counts(self) -> list[dict[str, Any]]:
        """Per line: ``{"line": [x1, y1, x2, y2], "in": {class_name: n}, "out": {...}, "total_in": n,
        "total_out": n}``; the per-class dicts hold the classes counted, in class order."""
        out = []
        for line, c in zip(self.lines, self._counts):
            per = {d: {self._name(k): c[d][k] for k in sorted(c[d])} for d in ("in", "out")}
            out.append({"line": line.as_list(), **per, "total_in": sum(c["in"].values()), "total_out": sum(c["out"].values())})
        return out

    def to_dict(self) -> dict[str, Any]:
        """``{"lines": counts(), "crossings": [{"frame", "line", "track_id", "class_id", "class", "direction"}]}``."""
        crossings = [{"frame": c.frame, "line": c.line, "track_id": c.track_id, "class_id": c.class_id,
                      "class": self._name(c.class_id), "direction": c.direction} for c in self.crossings]
        return {"lines": self.counts(), "crossings": crossings}
