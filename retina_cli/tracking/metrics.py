"""Scoring tracks against ground truth with the CLEAR MOT and identity metrics (MOTA, IDF1, ID
switches, ...), computed by py-motmetrics (the ``track-eval`` extra) from our own IoU matrices."""

from __future__ import annotations

from typing import Any

import numpy as np

from retina_cli.engine.results import MissingExtraError
from retina_cli.tracking.bytetrack import pairwise_iou_np

# motmetrics' name -> ours
_METRICS = {
    "mota": "mota", "motp": "motp", "idf1": "idf1", "idp": "idp", "idr": "idr",
    "precision": "precision", "recall": "recall", "num_switches": "id_switches",
    "num_fragmentations": "fragmentations", "num_false_positives": "false_positives",
    "num_misses": "misses", "mostly_tracked": "mostly_tracked", "partially_tracked": "partially_tracked",
    "mostly_lost": "mostly_lost", "num_frames": "num_frames", "num_objects": "num_objects",
    "num_predictions": "num_predictions", "num_unique_objects": "num_gt_tracks",
}


def _by_frame(rows: np.ndarray) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """MOT rows ``(N, >=6)`` -> {frame: (ids (n,) int64, boxes (n, 4) xyxy)}."""
    rows = rows[np.argsort(rows[:, 0], kind="stable")]
    frames, starts = np.unique(rows[:, 0].astype(np.int64), return_index=True)
    out = {}
    for f, part in zip(frames.tolist(), np.split(rows, starts[1:])):
        out[f] = (part[:, 1].astype(np.int64), _xyxy(part))
    return out


def _xyxy(rows: np.ndarray) -> np.ndarray:
    """MOT rows ``(N, >=6)`` -> their boxes ``(N, 4)`` xyxy."""
    return np.concatenate((rows[:, 2:4], rows[:, 2:4] + rows[:, 4:6]), axis=1)


def _drop_ignored(gt: np.ndarray, ignored: np.ndarray, pred: np.ndarray, iou: float) -> np.ndarray:
    """MOT rows gt ``(G, 6)`` with ``ignored`` ``(G,)`` bool, pred ``(P, 6)`` -> pred without the rows
    that their frame's maximum-IoU one-to-one matching to all gt boxes (IoU >= ``iou``) pairs with
    an ignored box."""
    if not ignored.any() or not len(pred):
        return pred
    from scipy.optimize import linear_sum_assignment

    keep = np.ones(len(pred), bool)
    gf, pf = gt[:, 0].astype(np.int64), pred[:, 0].astype(np.int64)
    for f in np.unique(gf[ignored]).tolist():  # only the frames with an ignore region
        gi, pi = np.flatnonzero(gf == f), np.flatnonzero(pf == f)
        if not len(pi):
            continue
        overlap = pairwise_iou_np(_xyxy(gt[gi]), _xyxy(pred[pi]))  # (g, p)
        overlap[overlap < iou] = 0.0
        r, c = linear_sum_assignment(overlap, maximize=True)
        on_ignored = (overlap[r, c] > 0) & ignored[gi[r]]
        keep[pi[c[on_ignored]]] = False
    return pred[keep]


def mot_metrics(gt: np.ndarray, pred: np.ndarray, iou: float = 0.5) -> dict[str, Any]:
    """Score predicted tracks against ground truth.

    gt, pred: MOT rows ``(N, >=6)`` (frame, id, x, y, w, h, ...), e.g. from
    :func:`~retina_cli.tracking.mot.read_mot`; gt rows whose 7th column (MOTChallenge's "consider")
    is 0 are ignore regions, as TrackEval treats them: a prediction that the frame's one-to-one
    matching (IoU >= ``iou``, over all gt boxes) pairs with such a box is removed before scoring,
    so following a barely visible object is neither rewarded nor counted as a false positive.
    iou: the least IoU of a true match. Returns floats ``mota``, ``motp`` (mean IoU of the
    matches, as MOTChallenge reports it), ``idf1``, ``idp``, ``idr``, ``precision``, ``recall`` and ints ``id_switches``, ``fragmentations``, ``false_positives``, ``misses``,
    ``mostly_tracked``, ``partially_tracked``, ``mostly_lost``, ``num_frames``, ``num_objects`` (gt
    boxes), ``num_predictions``, ``num_gt_tracks``.
    """
    try:
        import motmetrics as mm
    except ImportError:
        raise MissingExtraError("mot_metrics needs py-motmetrics: pip install 'retina-cli[track-eval]'") from None
    gt = np.asarray(gt, dtype=np.float64).reshape(len(gt), -1)
    pred = np.asarray(pred, dtype=np.float64).reshape(len(pred), -1)
    ignored = gt[:, 6] == 0 if gt.shape[1] >= 7 else np.zeros(len(gt), bool)
    pred = _drop_ignored(gt[:, :6], ignored, pred[:, :6], iou)
    g, p = _by_frame(gt[~ignored, :6]), _by_frame(pred)
    empty = (np.zeros(0, np.int64), np.zeros((0, 4)))
    acc = mm.MOTAccumulator(auto_id=False)
    for f in sorted(set(g) | set(p)):  # one accumulator step per frame, as motmetrics works
        (gi, gb), (pi, pb) = g.get(f, empty), p.get(f, empty)
        dist = 1 - pairwise_iou_np(gb, pb)  # (G, P)
        dist[dist > 1 - iou] = np.nan  # motmetrics: nan = may not match
        acc.update(gi, pi, dist, frameid=f)
    summary = mm.metrics.create().compute(acc, metrics=list(_METRICS), name="all")
    out: dict[str, Any] = {}
    for theirs, ours in _METRICS.items():
        v = summary[theirs].iloc[0]
        out[ours] = float(v) if isinstance(v, (float, np.floating)) else int(v)
    out["motp"] = 1 - out["motp"] if np.isfinite(out["motp"]) else float("nan")
    return out
