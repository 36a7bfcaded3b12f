"""ByteTrack (Zhang et al. 2022, "ByteTrack: Multi-Object Tracking by Associating Every Detection Box").

Our own small implementation of the official algorithm (github ifzhang/ByteTrack,
``yolox/tracker/byte_tracker.py`` and ``matching.py``), because every maintained package of it
requires the ``opencv-python`` GUI wheel, which clashes with our ``opencv-python-headless``.
One frame (:meth:`ByteTracker.update`):

1. predict every confirmed track (tracked and lost) one frame ahead with the Kalman filter;
2. match the high-score detections to them (IoU distance, times the score with ``fuse_score``);
3. match the low-score detections to the tracks still unmatched that were tracked, not lost,
   at IoU 0.5; tracked tracks left over become lost;
4. match the unconfirmed tracks (started on the previous frame) to the high detections left
   (distance 0.7); unconfirmed tracks left over are removed;
5. start a track from each high detection left whose score reaches ``new_track_thresh``
   (confirmed at once on the first frame only, otherwise when matched on the next frame);
6. remove tracks lost for more than the buffer, and the younger of a tracked / lost pair that
   overlap at IoU > 0.85.

The track table is a struct of arrays (:class:`_Tracks`), one row per live track, so each step is a
few array operations; only the assignment itself (scipy) is a solver call per step.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
from scipy.optimize import linear_sum_assignment

from retina_cli.errors import ConfigError
from retina_cli.tracking import kalman

SECOND_MATCH_DIST = 0.5  # official: low-score detections match at IoU >= 0.5, without the score
UNCONFIRMED_MATCH_DIST = 0.7  # official: a new track is confirmed at (fused) IoU >= 0.3
DUPLICATE_DIST = 0.15  # official: a tracked and a lost track at IoU > 0.85 are the same object


def pairwise_iou_np(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every xyxy box in ``a`` ``(M, 4)`` with every one in ``b`` ``(N, 4)`` -> ``(M, N)`` float64.

    The numpy twin of :func:`retina_cli.boxes.ops.pairwise_iou` (torch), so tracking needs no torch;
    equal to ``torchvision.ops.box_iou``; 0 where the union is empty.
    """
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    area_a = ((a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1]))[:, None]
    area_b = ((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]))[None, :]
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = np.clip(rb - lt, 0, None)
    inter = wh[..., 0] * wh[..., 1]
    union = area_a + area_b - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def linear_assignment(cost: np.ndarray, thresh: float) -> tuple[np.ndarray, np.ndarray]:
    """Minimum-cost matching of rows to columns of ``cost`` ``(M, N)`` where a pair may cost at most
    ``thresh`` -> (row indices ``(K,)``, column indices ``(K,)``), int64.

    Solves what the official code asks of ``lap.lapjv(cost, extend_cost=True, cost_limit=thresh)``:
    every row and column may also stay unmatched at ``thresh / 2``, so a pair is only made when it
    beats leaving both alone (plain Hungarian-then-filter can trade a good pair for two poor ones).
    """
    m, n = cost.shape
    if m == 0 or n == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    big = np.full((m + n, n + m), np.inf)
    big[:m, :n] = np.where(cost <= thresh, cost, np.inf)
    big[np.arange(m), n + np.arange(m)] = thresh / 2  # row i unmatched
    big[m + np.arange(n), np.arange(n)] = thresh / 2  # column j unmatched
    big[m:, n:] = 0
    rows, cols = linear_sum_assignment(big)
    real = (rows < m) & (cols < n)
    return rows[real].astype(np.int64), cols[real].astype(np.int64)


@dataclass(frozen=True)
class TrackerConfig:
    """ByteTrack's settings (defaults: ultralytics' bytetrack.yaml, which follows the paper)."""

    high_thresh: float = 0.25  # detections >= this go to the first association (ultralytics' track_high_thresh)
    low_thresh: float = 0.1  # detections in [low, high) go to the second association
    new_track_thresh: float = 0.25  # an unmatched high detection >= this starts a track
    match_iou: float = 0.2  # minimum IoU to match in the first association (ByteTrack's match_thresh 0.8 as a distance)
    buffer: int = 30  # frames a lost track is kept, at 30 fps (scaled by frame_rate / 30 as ByteTrack does)
    fuse_score: bool = True  # first association cost uses IoU * detection score (ByteTrack's default off MOT20)
    per_class: bool = True  # a detection only matches a track of its class

    @classmethod
    def from_flags(cls, conf: float | None = None, track_low: float = 0.1, track_new: float | None = None,
                   track_buffer: int = 30, track_iou: float = 0.2) -> "TrackerConfig":
        """``retina predict --track``'s flags (and ``Detector.track``'s arguments) -> the config: ``--conf``
        is the high threshold (None: 0.25), ``--track-low`` is capped at it, ``--track-new`` defaults to it."""
        high = cls.high_thresh if conf is None else conf
        return cls(high_thresh=high, low_thresh=min(track_low, high), new_track_thresh=high if track_new is None else track_new,
                   buffer=track_buffer, match_iou=track_iou)

    def __post_init__(self) -> None:
        for name in ("high_thresh", "low_thresh", "new_track_thresh", "match_iou"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= 1:
                raise ConfigError(f"tracker {name} must be a number in [0, 1], got {v!r}")
        if self.match_iou == 0:
            raise ConfigError("tracker match_iou must be above 0 (IoU 0 would match boxes that do not touch)")
        if self.low_thresh > self.high_thresh:
            raise ConfigError(f"tracker low_thresh {self.low_thresh} is above high_thresh {self.high_thresh}")
        if isinstance(self.buffer, bool) or not isinstance(self.buffer, int) or self.buffer < 0:
            raise ConfigError(f"tracker buffer must be a whole number of frames >= 0, got {self.buffer!r}")
        for name in ("fuse_score", "per_class"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"tracker {name} must be true or false, got {getattr(self, name)!r}")


@dataclass(frozen=True)
class _Dets:
    """One frame's detections: boxes ``(D, 4)`` float64 xyxy, scores ``(D,)`` float64, labels ``(D,)`` int64."""

    boxes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray


@dataclass
class _Tracks:
    """The live tracks, one row each (N rows): a removed track's row is dropped.

    ids ``(N,)`` int64; labels ``(N,)`` int64 class of the last matched detection; scores ``(N,)``
    its score; mean ``(N, 8)`` / cov ``(N, 8, 8)`` Kalman state; confirmed ``(N,)`` bool (the
    official ``is_activated``); lost ``(N,)`` bool (otherwise tracked); start / last ``(N,)`` int64
    frame of the first / latest match; det ``(N,)`` int64 index of this frame's matched detection, -1.
    """

    ids: np.ndarray
    labels: np.ndarray
    scores: np.ndarray
    mean: np.ndarray
    cov: np.ndarray
    confirmed: np.ndarray
    lost: np.ndarray
    start: np.ndarray
    last: np.ndarray
    det: np.ndarray

    @classmethod
    def empty(cls) -> _Tracks:
        i, f, b = np.zeros(0, np.int64), np.zeros(0), np.zeros(0, bool)
        return cls(i, i, f, np.zeros((0, 8)), np.zeros((0, 8, 8)), b, b, i, i, i)

    def __len__(self) -> int:
        return len(self.ids)

    def keep(self, mask: np.ndarray) -> _Tracks:
        return _Tracks(**{f.name: getattr(self, f.name)[mask] for f in fields(self)})

    def extend(self, other: _Tracks) -> _Tracks:
        return _Tracks(**{f.name: np.concatenate((getattr(self, f.name), getattr(other, f.name))) for f in fields(self)})

    def boxes(self, rows: np.ndarray) -> np.ndarray:
        """xyxy ``(len(rows), 4)`` of the Kalman means."""
        return kalman.xyah_to_xyxy(self.mean[rows, :4])


class ByteTracker:
    """Tracks of one video: call :meth:`update` once per frame, in order.

    frame_rate: the video's frames per second; a lost track is kept ``int(buffer * frame_rate / 30)``
    frames, as the official code does.
    """

    def __init__(self, cfg: TrackerConfig = TrackerConfig(), frame_rate: float = 30.0) -> None:
        if isinstance(frame_rate, bool) or not isinstance(frame_rate, (int, float)) or not 0 < frame_rate < float("inf"):
            raise ConfigError(f"tracker frame_rate must be a number above 0, got {frame_rate!r}")
        self.cfg = cfg
        self.max_time_lost = int(frame_rate / 30.0 * cfg.buffer)
        self.reset()

    def reset(self) -> None:
        """Forget every track and start again at frame 1 and id 1 (a new video)."""
        self.frame = 0
        self._next_id = 1
        self._t = _Tracks.empty()

    def update(self, boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """One frame: boxes (D,4) float xyxy pixels, scores (D,), labels (D,) int -> (D,) int64 track id per
        detection, -1 where the detection is not on an active track this frame. Ids start at 1 and are never reused.

        A track started after the first frame shows its id from its second frame on; one not seen
        again is dropped with the id it took, so the ids shown can have gaps (as in the official
        code). Boxes with no area (or not finite) are never tracked.
        """
        cfg = self.cfg
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        scores = np.asarray(scores, dtype=np.float64).reshape(-1)
        labels = np.asarray(labels).astype(np.int64).reshape(-1)
        frame_dets = _Dets(boxes, scores, labels)
        self.frame += 1
        t = self._t
        t.det[:] = -1
        was_lost = t.lost.copy()
        usable = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1]) & np.isfinite(boxes).all(1)
        high = np.flatnonzero(usable & (scores >= cfg.high_thresh))
        low = np.flatnonzero(usable & (scores >= cfg.low_thresh) & (scores < cfg.high_thresh))

        # 1. predict the confirmed tracks (tracked and lost); unconfirmed ones are not, as in the official code
        pool = np.flatnonzero(t.confirmed)
        mean = t.mean[pool]
        mean[t.lost[pool], 7] = 0  # official: a lost track's height stops changing
        t.mean[pool], t.cov[pool] = kalman.predict(mean, t.cov[pool])

        # 2. high detections with tracked and lost tracks
        rows, dets, rest, high = self._associate(pool, high, frame_dets, 1 - cfg.match_iou, cfg.fuse_score)
        self._apply(rows, dets, frame_dets)
        # 3. low detections with the tracks left that were tracked (not lost) before this frame
        rows, dets, rest, _ = self._associate(rest[~t.lost[rest]], low, frame_dets, SECOND_MATCH_DIST, False)
        self._apply(rows, dets, frame_dets)
        t.lost[rest] = True
        # 4. unconfirmed tracks with the high detections left
        unconfirmed = np.flatnonzero(~t.confirmed)
        rows, dets, rest, high = self._associate(unconfirmed, high, frame_dets, UNCONFIRMED_MATCH_DIST, cfg.fuse_score)
        self._apply(rows, dets, frame_dets)
        remove = np.zeros(len(t), bool)
        remove[rest] = True
        remove |= was_lost & t.lost & (self.frame - t.last > self.max_time_lost)
        t = t.keep(~remove)
        # 5. new tracks
        new = high[scores[high] >= cfg.new_track_thresh]
        t = t.extend(self._start(new, frame_dets))
        # 6. duplicates
        self._t = t = t.keep(~self._duplicates(t))

        out = np.full(len(boxes), -1, np.int64)
        on = t.confirmed & ~t.lost & (t.det >= 0)
        out[t.det[on]] = t.ids[on]
        return out

    def _associate(self, rows: np.ndarray, dets: np.ndarray, frame_dets: _Dets, thresh: float, fuse: bool):
        """Match track rows ``(R,)`` to detection indices ``(K,)`` -> (matched rows, their detections,
        unmatched rows, unmatched detections), each an int64 index array."""
        t = self._t
        if len(rows) == 0 or len(dets) == 0:
            return rows[:0], dets[:0], rows, dets
        cost = 1 - pairwise_iou_np(t.boxes(rows), frame_dets.boxes[dets])  # (R, K)
        if fuse:
            cost = 1 - (1 - cost) * frame_dets.scores[dets][None, :]
        if self.cfg.per_class:  # distance 1 is above every threshold (match_iou > 0): never a pair
            cost[t.labels[rows][:, None] != frame_dets.labels[dets][None, :]] = 1.0
        i, j = linear_assignment(cost, thresh)
        un_i = np.ones(len(rows), bool)
        un_i[i] = False
        un_j = np.ones(len(dets), bool)
        un_j[j] = False
        return rows[i], dets[j], rows[un_i], dets[un_j]

    def _apply(self, rows: np.ndarray, dets: np.ndarray, frame_dets: _Dets) -> None:
        """Kalman-update track rows with their matched detections; they become tracked and confirmed."""
        if len(rows) == 0:
            return
        t = self._t
        t.mean[rows], t.cov[rows] = kalman.update(t.mean[rows], t.cov[rows], kalman.xyxy_to_xyah(frame_dets.boxes[dets]))
        t.lost[rows] = False
        t.confirmed[rows] = True
        t.last[rows] = self.frame
        t.scores[rows] = frame_dets.scores[dets]
        t.labels[rows] = frame_dets.labels[dets]
        t.det[rows] = dets

    def _start(self, dets: np.ndarray, frame_dets: _Dets) -> _Tracks:
        """New tracks from detection indices ``(K,)``: fresh ids, confirmed only on the first frame."""
        n = len(dets)
        mean, cov = kalman.initiate(kalman.xyxy_to_xyah(frame_dets.boxes[dets]))
        ids = np.arange(self._next_id, self._next_id + n, dtype=np.int64)
        self._next_id += n
        frame = np.full(n, self.frame, np.int64)
        return _Tracks(ids, frame_dets.labels[dets].copy(), frame_dets.scores[dets].copy(), mean, cov,
                       np.full(n, self.frame == 1), np.zeros(n, bool), frame, frame.copy(), dets.astype(np.int64))

    def _duplicates(self, t: _Tracks) -> np.ndarray:
        """``(N,)`` bool: the rows to drop as duplicates. Of a tracked / lost pair at IoU > 0.85 (of the
        same class with per_class), the one tracked for the shorter time goes (the tracked one on a tie)."""
        tracked, lost = np.flatnonzero(~t.lost), np.flatnonzero(t.lost)
        drop = np.zeros(len(t), bool)
        if len(tracked) == 0 or len(lost) == 0:
            return drop
        dup = 1 - pairwise_iou_np(t.boxes(tracked), t.boxes(lost)) < DUPLICATE_DIST  # (P, Q)
        if self.cfg.per_class:
            dup &= t.labels[tracked][:, None] == t.labels[lost][None, :]
        p, q = np.nonzero(dup)
        age = t.last - t.start
        older = age[tracked[p]] > age[lost[q]]
        drop[lost[q[older]]] = True
        drop[tracked[p[~older]]] = True
        return drop
