"""The windows an image is cut into for sliced inference (:class:`SliceConfig` holds their settings)."""

from __future__ import annotations

import numpy as np

from retina_cli.slicing.config import MERGE_METHODS, SliceConfig

__all__ = ["MERGE_METHODS", "SliceConfig", "tile_windows"]


def _stride(size: int, overlap: float) -> int:
    stride = round(size * (1.0 - overlap))
    if size < 1 or not 0.0 <= overlap < 1.0 or stride < 1:
        raise ValueError(f"tile_windows: size {size}, overlap {overlap} give no forward stride")
    return stride


def _starts(length: int, size: int, stride: int) -> np.ndarray:
    """Window starts along one axis: every ``stride`` from 0, the last one moved back so that its
    window ends on the border (none sticks out, none is a sliver) -> ``(n,)`` int64."""
    if length <= size:
        return np.zeros(1, dtype=np.int64)
    return np.append(np.arange(0, length - size, stride, dtype=np.int64), length - size)


def tile_windows(height: int, width: int, size: int, overlap: float) -> np.ndarray:
    """The windows covering a ``height x width`` image -> ``(T, 4)`` int64 xyxy, row by row (top to bottom,
    left to right in a row).

    Each window is ``size x size``, or the whole side where the image is not larger than ``size``
    (an image within ``size`` on both sides is one window, the image itself). Neighbours start
    ``round(size * (1 - overlap))`` apart; the last row and column are aligned to the bottom and
    right borders, so they may overlap their neighbour more than ``overlap``.
    """
    stride = _stride(size, overlap)
    xs = _starts(width, size, stride)
    ys = _starts(height, size, stride)
    y0, x0 = (a.ravel() for a in np.meshgrid(ys, xs, indexing="ij"))
    return np.stack([x0, y0, x0 + min(size, width), y0 + min(size, height)], axis=1)
