"""A synthetic tracking clip: the shapes of :mod:`retina_cli.data.synthetic` moving at constant
velocity over a still background, bouncing off the borders, passing over each other (the one drawn
later hides the other) and behind a grey pillar, with MOTChallenge ground truth. And detections
simulated from that ground truth (misses, jitter, low scores, false positives) to test trackers
without a detector. Deterministic for a given seed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from retina_cli.data.synthetic import CLASSES, _background, draw_shape

PILLAR_COLOUR = (128, 128, 128)
MIN_VISIBLE = 0.5  # objects less visible than this are in the ground truth with consider = 0 (ignored)


@dataclass(frozen=True)
class TrackingClip:
    """video: the mp4; gt_path: its ``gt.txt``; gt: ``(N, 9)`` float64 MOT rows ``frame (1-based),
    id, x, y, w, h, consider, class (0-based, ``names[k]``), visibility``, as in the file (consider 0:
    less than MIN_VISIBLE of the object shows; scorers ignore it, neither a miss nor a false positive); names: class
    names; frames, size ``(H, W)``, fps: of the video; pillar: ``(x1, x2)`` columns of the occluder."""

    video: Path
    gt_path: Path
    gt: np.ndarray
    names: tuple[str, ...]
    frames: int
    size: tuple[int, int]
    fps: float
    pillar: tuple[int, int]


def _visibility(boxes: np.ndarray, pillar: tuple[int, int], h: int, w: int) -> np.ndarray:
    """``(O, 4)`` int xyxy boxes in drawing order -> ``(O,)`` fraction of each box not covered by the
    boxes drawn after it or by the pillar (box-level, as MOTChallenge's visibility)."""
    owner = np.full((h, w), -1, np.int64)
    for i, (x1, y1, x2, y2) in enumerate(boxes.tolist()):  # the few objects of a frame, painter's order
        owner[y1:y2, x1:x2] = i
    owner[:, pillar[0]:pillar[1]] = -1
    visible = np.bincount(owner[owner >= 0], minlength=len(boxes))
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return visible / area


def make_tracking_clip(path: Path, frames: int = 120, size: tuple[int, int] = (240, 320), objects: int = 6,
                       fps: float = 12.0, seed: int = 0) -> TrackingClip:
    """Write the clip to ``path`` (OpenCV ``mp4v``) and its ground truth to ``gt.txt`` next to it.

    size: (height, width). Objects are squares of 20-40 px (at most a quarter of the smaller side)
    moving 1.5-4 px per frame; a pillar a twelfth of the width wide stands right of the centre.
    """
    rng = np.random.default_rng(seed)
    h, w = size
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    background = _background(rng, h, w)
    side = rng.integers(min(20, min(h, w) // 4), min(40, min(h, w) // 4) + 1, size=objects)  # (O,)
    labels = rng.integers(0, len(CLASSES), size=objects)
    colours = rng.integers(0, 256, size=(objects, 3))
    room = np.stack((w - side, h - side), axis=1).astype(np.float64)  # (O, 2) largest top-left corner
    pos = rng.uniform(0, 1, size=(objects, 2)) * room
    speed, angle = rng.uniform(1.5, 4.0, size=objects), rng.uniform(0, 2 * np.pi, size=objects)
    vel = np.stack((speed * np.cos(angle), speed * np.sin(angle)), axis=1)  # (O, 2) px / frame
    pw = max(4, w // 12)
    pillar = (int(w * 0.6) - pw // 2, int(w * 0.6) - pw // 2 + pw)

    rows = []
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    try:
        for f in range(frames):
            corner = np.round(pos).astype(np.int64)  # (O, 2)
            boxes = np.concatenate((corner, corner + side[:, None]), axis=1)  # (O, 4) int xyxy
            img = background.copy()
            for i in range(objects):
                draw_shape(img, int(labels[i]), tuple(boxes[i].tolist()), tuple(int(c) for c in colours[i]))
            img[:, pillar[0]:pillar[1]] = PILLAR_COLOUR
            writer.write(cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
            vis = np.round(_visibility(boxes, pillar, h, w), 3)
            for i in np.flatnonzero(vis > 0):  # a wholly hidden object is in no row
                rows.append([f + 1, i + 1, *corner[i], side[i], side[i], int(vis[i] >= MIN_VISIBLE), labels[i], vis[i]])
            pos, vel = _step(pos, vel, room)
    finally:
        writer.release()
    gt = np.array(rows, dtype=np.float64).reshape(-1, 9)
    gt_path = path.parent / "gt.txt"
    gt_path.write_text("".join(f"{int(r[0])},{int(r[1])},{int(r[2])},{int(r[3])},{int(r[4])},{int(r[5])},{int(r[6])},"
                               f"{int(r[7])},{r[8]:.3f}\n" for r in gt))
    return TrackingClip(path, gt_path, gt, CLASSES, frames, (h, w), fps, pillar)


def _step(pos: np.ndarray, vel: np.ndarray, room: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Move corners ``(O, 2)`` by ``vel`` ``(O, 2)``, reflecting off ``[0, room]`` -> (pos, vel)."""
    pos = pos + vel
    low, high = pos < 0, pos > room
    pos = np.where(low, -pos, np.where(high, 2 * room - pos, pos))
    vel = np.where(low | high, -vel, vel)
    return pos, vel


def simulate_detections(gt: np.ndarray, rng: np.random.Generator, drop: float = 0.1, jitter: float = 2.0,
                        false_positives: float = 0.05, score_range: tuple[float, float] = (0.5, 0.95),
                        low_range: tuple[float, float] = (0.1, 0.25), low_fraction: float = 0.1,
                        occluded_below: float = 0.8, frames: int | None = None, size: tuple[int, int] = (240, 320),
                        classes: int = len(CLASSES)) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """What a detector might see of the ground truth ``gt`` (MOT rows ``(N, 9)`` as in TrackingClip).

    Each considered true box (consider != 0) is missed with probability ``drop``, else moved by ``jitter`` px (normal std) per
    side, scored uniformly in ``score_range``, or in ``low_range`` (below ByteTrack's high
    threshold) with probability ``low_fraction`` and always when its visibility is below
    ``occluded_below``, as a partly hidden object often scores. About ``false_positives`` per true box
    random boxes (10-40 px, any class, scores from low_range[0] to score_range[1]) are added inside
    ``size`` (H, W). Returns one ``(boxes (D, 4) float32 xyxy, scores (D,) float32, labels (D,)
    int64)`` per frame, frames 1..``frames`` (default: the last frame of gt).
    """
    frames = int(gt[:, 0].max()) if frames is None else frames
    gt = gt[gt[:, 6] != 0]  # objects under MIN_VISIBLE are not detected
    gt = gt[rng.random(len(gt)) >= drop]
    xyxy = np.concatenate((gt[:, 2:4], gt[:, 2:4] + gt[:, 4:6]), axis=1) + rng.normal(0, jitter, size=(len(gt), 4))
    scores = rng.uniform(*score_range, size=len(gt))
    low = (rng.random(len(gt)) < low_fraction) | (gt[:, 8] < occluded_below)
    scores[low] = rng.uniform(*low_range, size=int(low.sum()))

    n_fp = rng.poisson(false_positives * len(gt))
    h, w = size
    fp_side = rng.uniform(10, 40, size=(n_fp, 2))
    fp_corner = rng.uniform(0, 1, size=(n_fp, 2)) * (np.array([w, h]) - fp_side)
    fp_boxes = np.concatenate((fp_corner, fp_corner + fp_side), axis=1)

    frame = np.concatenate((gt[:, 0].astype(np.int64), rng.integers(1, frames + 1, size=n_fp)))
    boxes = np.concatenate((xyxy, fp_boxes)).astype(np.float32)
    scores = np.concatenate((scores, rng.uniform(low_range[0], score_range[1], size=n_fp))).astype(np.float32)
    labels = np.concatenate((gt[:, 7].astype(np.int64), rng.integers(0, classes, size=n_fp)))
    order = np.argsort(frame, kind="stable")
    cuts = np.searchsorted(frame[order], np.arange(2, frames + 1))  # where frames 2..F start
    return [(b, s, k) for b, s, k in zip(np.split(boxes[order], cuts), np.split(scores[order], cuts),
                                          np.split(labels[order], cuts))]
