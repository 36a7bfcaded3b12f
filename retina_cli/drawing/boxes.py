"""Drawing ground truth, predictions and anchors with OpenCV; images are RGB uint8 here."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from retina_cli.errors import DataError

# distinct, colour-blind-friendly-ish RGB palette; class k always gets PALETTE[k % len(PALETTE)]
PALETTE = (
    (31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
    (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207),
    (174, 199, 232), (255, 187, 120), (152, 223, 138), (255, 152, 150), (197, 176, 213),
)
FONT = cv2.FONT_HERSHEY_SIMPLEX


def class_color(label: int) -> tuple[int, int, int]:
    return PALETTE[int(label) % len(PALETTE)]


def line_width(image: np.ndarray) -> int:
    h, w = image.shape[:2]
    return max(1, round((h + w) / 600))


def put_label(image: np.ndarray, text: str, x: int, y: int, color: tuple[int, int, int], lw: int) -> None:
    """Text on a filled box of ``color`` whose bottom-left corner is at (x, y), kept inside the image."""
    scale = max(0.35, lw / 3)
    thick = max(1, lw // 2)
    (tw, th), base = cv2.getTextSize(text, FONT, scale, thick)
    h, w = image.shape[:2]
    x = int(min(max(x, 0), max(w - tw - 2, 0)))
    top = y - th - base - 2
    if top < 0:  # no room above the box: put the label inside it
        top, y = y, y + th + base + 2
    y = int(min(y, h))
    cv2.rectangle(image, (x, int(top)), (x + tw + 2, y), color, -1, cv2.LINE_AA)
    ink = (0, 0, 0) if sum(c * k for c, k in zip(color, (0.299, 0.587, 0.114))) > 140 else (255, 255, 255)
    cv2.putText(image, text, (x + 1, y - base - 1), FONT, scale, ink, thick, cv2.LINE_AA)


def draw_boxes(
    image: np.ndarray,
    boxes: np.ndarray,
    labels: np.ndarray,
    names: Sequence[str],
    scores: np.ndarray | None = None,
    ignore: np.ndarray | None = None,
    lw: int | None = None,
    show_labels: bool = True,
    ids: np.ndarray | None = None,
) -> np.ndarray:
    """Draw ``(n, 4)`` xyxy pixel boxes with ``(n,)`` labels (and scores) on a copy of ``(H, W, 3)``
    uint8 RGB ``image``; ignored (difficult/crowd) boxes are drawn thin and marked "(ign)".
    ids: ``(n,)`` track ids, written first in the label ("#7 car 0.91")."""
    out = np.ascontiguousarray(image).copy()
    lw = lw or line_width(out)
    pts = np.round(np.asarray(boxes, np.float64)).astype(np.int64).reshape(-1, 4)
    # one OpenCV call per box: OpenCV has no batched rectangle, and this is not a training path
    for i, (x1, y1, x2, y2) in enumerate(pts.tolist()):
        lab = int(labels[i])
        color = class_color(lab)
        ign = ignore is not None and bool(ignore[i])
        cv2.rectangle(out, (x1, y1), (x2, y2), color, max(1, lw // 2) if ign else lw, cv2.LINE_AA)
        if show_labels:
            text = names[lab] if 0 <= lab < len(names) else f"class {lab}"
            if ids is not None:
                text = f"#{int(ids[i])} {text}"
            if scores is not None:
                text += f" {float(scores[i]):.2f}"
            if ign:
                text += " (ign)"
            put_label(out, text, x1, y1, color, lw)
    return out


def draw_title(image: np.ndarray, text: str) -> np.ndarray:
    """A dark band with ``text`` on top of a copy of ``image``."""
    lw = line_width(image)
    scale = max(0.4, lw / 2.5)
    (_, th), base = cv2.getTextSize(text, FONT, scale, 1)
    band = np.full((th + base + 8, image.shape[1], 3), 30, np.uint8)
    cv2.putText(band, text, (4, th + 4), FONT, scale, (255, 255, 255), 1, cv2.LINE_AA)
    return np.concatenate([band, image], axis=0)


def fit(image: np.ndarray, size: int) -> np.ndarray:
    """Letterbox ``image`` into a ``size x size`` tile (black border) for mosaics."""
    h, w = image.shape[:2]
    s = size / max(h, w)
    nw, nh = max(1, round(w * s)), max(1, round(h * s))
    tile = np.zeros((size, size, 3), np.uint8)
    y0, x0 = (size - nh) // 2, (size - nw) // 2
    tile[y0 : y0 + nh, x0 : x0 + nw] = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_AREA)
    return tile


def mosaic(images: Sequence[np.ndarray], tile: int = 320) -> np.ndarray:
    """Images in a near-square grid of ``tile x tile`` cells -> ``(rows*tile, cols*tile, 3)`` uint8."""
    cols = math.ceil(math.sqrt(len(images)))
    rows = math.ceil(len(images) / cols)
    grid = np.zeros((rows * tile, cols * tile, 3), np.uint8)
    for k, img in enumerate(images):
        r, c = divmod(k, cols)
        grid[r * tile : (r + 1) * tile, c * tile : (c + 1) * tile] = fit(img, tile)
    return grid


def side_by_side(left: np.ndarray, right: np.ndarray, gap: int = 8) -> np.ndarray:
    h = max(left.shape[0], right.shape[0])
    pad = lambda im: np.pad(im, ((0, h - im.shape[0]), (0, 0), (0, 0)))  # noqa: E731
    return np.concatenate([pad(left), np.full((h, gap, 3), 255, np.uint8), pad(right)], axis=1)


def write_png(path: Path, image: np.ndarray) -> Path:
    """Write ``(H, W, 3)`` uint8 RGB as PNG."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # encoded here and written by Python: cv2.imwrite crashes on a non-UTF-8 file name (see images.py)
    ok, png = cv2.imencode(".png", np.ascontiguousarray(image[:, :, ::-1]))
    try:
        if not ok:
            raise OSError("PNG encoding failed")
        path.write_bytes(png.tobytes())
    except OSError as exc:
        raise DataError(f"{path}: could not write the image ({exc}); check the folder is writable") from None
    return path
