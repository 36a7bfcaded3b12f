"""The MOTChallenge text format: one line per box, ``frame,id,x,y,w,h,conf,x3d,y3d,z3d``.

Frames are 1-based, ``x, y`` the top-left corner, ``w, h`` the size, in pixels; tracker output
writes -1 for the three world coordinates. Ground-truth files use the same first six columns, then
``consider`` (0: ignore), class and visibility.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from retina_cli.errors import DataError

MIN_COLUMNS = 7  # frame, id, x, y, w, h, conf


def mot_rows(frame: int, track_ids: np.ndarray, boxes: np.ndarray, scores: np.ndarray) -> list[str]:
    """One frame's tracks -> MOT lines ``"frame,id,x,y,w,h,conf,-1,-1,-1"``.

    frame: 1-based; track_ids ``(T,)`` int; boxes ``(T, 4)`` xyxy pixels; scores ``(T,)``.
    """
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    xywh = np.concatenate((b[:, :2], b[:, 2:] - b[:, :2]), axis=1)  # (T, 4)
    return [f"{int(frame)},{int(t)},{x:.2f},{y:.2f},{w:.2f},{h:.2f},{s:.4f},-1,-1,-1"
            for t, (x, y, w, h), s in zip(np.asarray(track_ids).tolist(), xywh.tolist(), np.asarray(scores).tolist())]


def write_mot(path: Path, rows: list[str]) -> Path:
    """Write MOT lines (from :func:`mot_rows`) to ``path``, one per line; returns ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(r + "\n" for r in rows))
    return path


def read_mot(path: Path) -> np.ndarray:
    """A MOT file -> ``(N, C)`` float64 array, one row per line (blank lines skipped), C >= 7 the
    file's number of comma-separated columns. DataError names the file and line of a bad line."""
    path = Path(path)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: cannot read MOT file ({e})") from None
    rows: list[list[float]] = []
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = [float(v) for v in line.split(",")]
        except ValueError:
            row = []
        if len(row) < MIN_COLUMNS or not np.isfinite(row).all():
            raise DataError(f"{path}:{n}: expected at least {MIN_COLUMNS} comma-separated numbers "
                            f"(frame,id,x,y,w,h,conf,...), got {line.strip()[:60]!r}")
        if rows and len(row) != len(rows[0]):
            raise DataError(f"{path}:{n}: {len(row)} columns where the lines above have {len(rows[0])}")
        rows.append(row)
    return np.array(rows, dtype=np.float64) if rows else np.zeros((0, MIN_COLUMNS))
