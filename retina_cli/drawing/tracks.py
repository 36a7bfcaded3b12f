"""Drawing what tracking adds to a frame: each track's trail and the count lines with their counts.

Unlike the rest of :mod:`retina_cli.drawing` (RGB), these draw on the BGR frames of the video
writer, in place; colours are the class palette of :func:`~retina_cli.drawing.boxes.class_color`
flipped to BGR, so a trail has its box's colour.
"""

from __future__ import annotations

import cv2
import numpy as np

from retina_cli.drawing.boxes import class_color, line_width, put_label

LINE_COLOR = (0, 215, 255)  # BGR amber: count lines stand out from the class palette


def draw_trails(image: np.ndarray, trails, lw: int | None = None) -> np.ndarray:
    """``(H, W, 3)`` uint8 BGR image, in place; trails: ``(track_id, class_id, points (P, 2))`` each."""
    lw = lw or line_width(image)
    for _, label, points in trails:
        if len(points) < 2:
            continue
        bgr = class_color(label)[::-1]
        cv2.polylines(image, [np.round(points).astype(np.int32).reshape(-1, 1, 2)], False, bgr, max(1, lw), cv2.LINE_AA)
    return image


def draw_count_lines(image: np.ndarray, lines, lw: int | None = None) -> np.ndarray:
    """``(H, W, 3)`` uint8 BGR image, in place; lines: ``(CountLine, total_in, total_out)`` each, drawn
    with "in N | out M" at the line's start (the "in" side is the right of the direction it is drawn in)."""
    lw = lw or line_width(image)
    for line, n_in, n_out in lines:
        p1, p2 = (int(round(line.x1)), int(round(line.y1))), (int(round(line.x2)), int(round(line.y2)))
        cv2.line(image, p1, p2, LINE_COLOR, max(2, lw + 1), cv2.LINE_AA)
        cv2.circle(image, p1, max(3, 2 * lw), LINE_COLOR, -1, cv2.LINE_AA)  # marks the start: the direction
        put_label(image, f"in {n_in} | out {n_out}", p1[0], p1[1], LINE_COLOR, max(lw, 2))
    return image
