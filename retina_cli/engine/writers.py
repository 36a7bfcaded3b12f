"""What `retina predict` writes: detections as COCO-results JSON, CSV and YOLO txt; annotated videos.

Rows are COCO results (``bbox`` = ``[x, y, w, h]`` original pixels) plus ``file_name``, ``frame``
and ``category_name``. ``image_id`` is the source's position in the run's source list (all frames
of a video share it; ``frame`` tells them apart) and ``category_id`` is the 0-based class id.
The CSV holds the same detections as ``source,frame,x1,y1,x2,y2,score,class_id,class_name``.
Tracked runs (``--track``) add ``track_id`` to every JSON row and as the CSV's last column.
"""

from __future__ import annotations

import csv
import json
import os
from fractions import Fraction
from pathlib import Path
from typing import Any, Sequence

import cv2
import numpy as np

from retina_cli.errors import ConfigError

CSV_HEADER = ("source", "frame", "x1", "y1", "x2", "y2", "score", "class_id", "class_name")
CODECS = ("mp4v", "h264")


def class_name(names: Sequence[str], label: int) -> str:
    return names[label] if 0 <= label < len(names) else str(label)


def detection_rows(
    image_id: int, file_name: str, frame: int, boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray,
    names: Sequence[str], track_ids: np.ndarray | None = None,
) -> list[dict[str, Any]]:
    """One frame's detections -> COCO result dicts. boxes ``(D, 4)`` xyxy original pixels, scores ``(D,)``,
    labels ``(D,)``; track_ids ``(D,)`` adds a ``track_id`` to each row."""
    xywh = np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1).astype(np.float64).round(4).tolist()
    rows = [
        {"image_id": image_id, "file_name": file_name, "frame": frame, "category_id": int(lab),
         "category_name": class_name(names, int(lab)), "bbox": b, "score": round(float(s), 5)}
        for b, s, lab in zip(xywh, scores.tolist(), labels.tolist())
    ]
    if track_ids is not None:
        for row, t in zip(rows, track_ids.tolist()):
            row["track_id"] = int(t)
    return rows


def sort_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Source order, then frame order; a frame's detections keep their (score) order (stable sort)."""
    return sorted(rows, key=lambda r: (r["image_id"], r["frame"]))


def write_json(rows: list[dict[str, Any]], path: Path) -> None:
    path.write_text(json.dumps(rows))


def write_csv(rows: list[dict[str, Any]], path: Path, tracked: bool = False) -> None:
    """The rows as CSV (:data:`CSV_HEADER`, plus a ``track_id`` column when ``tracked``)."""
    # surrogateescape: a file name that is not UTF-8 is written back as the bytes it was read from
    with path.open("w", newline="", encoding="utf-8", errors="surrogateescape") as f:
        out = csv.writer(f)
        out.writerow(CSV_HEADER + (("track_id",) if tracked else ()))
        for r in rows:
            x, y, w, h = r["bbox"]
            out.writerow((r["file_name"], r["frame"], x, y, round(x + w, 4), round(y + h, 4), r["score"], r["category_id"], r["category_name"])
                         + ((r["track_id"],) if tracked else ()))


def write_yolo_txt(path: Path, boxes: np.ndarray, labels: np.ndarray, width: int, height: int) -> None:
    """``class cx cy w h`` normalised to the image, one line per box; boxes ``(D, 4)`` xyxy pixels."""
    wh = np.array([width, height], np.float64)
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2 / wh
    size = (boxes[:, 2:] - boxes[:, :2]) / wh
    table = np.concatenate([labels[:, None].astype(np.float64), centre, size], axis=1)
    path.write_text("".join(f"{int(r[0])} {r[1]:.6f} {r[2]:.6f} {r[3]:.6f} {r[4]:.6f}\n" for r in table.tolist()))


def write_image(path: Path, bgr: np.ndarray) -> None:
    """``(H, W, 3)`` uint8 BGR -> an image file in the format of ``path``'s suffix.

    Encoded by OpenCV, written by Python: ``cv2.imwrite`` crashes the process on a file name that
    is not valid UTF-8 (a source named so gives such an output name).
    """
    ok, data = cv2.imencode(path.suffix or ".jpg", bgr)
    try:
        if not ok:
            raise OSError(f"OpenCV cannot encode {path.suffix or '.jpg'} images")
        path.write_bytes(data.tobytes())
    except OSError as exc:
        raise ConfigError(f"{path}: could not write the annotated image ({exc})") from None


class VideoWriter:
    """Annotated frames ``(H, W, 3)`` uint8 BGR -> a video file of the given size and fps.

    codec "mp4v": OpenCV's MPEG-4 Part 2 writer; "h264": libx264 through PyAV (``pip install av``),
    which browsers play. ``close`` finalises the container, so a run stopped early still leaves a
    playable file.
    """

    def __init__(self, path: Path, fps: float, width: int, height: int, codec: str = "mp4v") -> None:
        if codec not in CODECS:
            raise ConfigError(f"--codec {codec!r}: expected one of {', '.join(CODECS)}")
        self.path, self.codec, self.frames = path, codec, 0
        if codec == "mp4v":
            self._cv = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
            if not self._cv.isOpened():
                raise ConfigError(f"{path}: OpenCV cannot write an mp4v video here")
            return
        try:
            import av
        except ImportError:
            raise ConfigError("--codec h264 needs PyAV: pip install 'retina-cli[video]' (or use --codec mp4v)") from None
        if width % 2 or height % 2:
            raise ConfigError(f"{path}: --codec h264 needs an even frame size, the video is {width}x{height} (use --codec mp4v)")
        self._av = av.open(str(path), "w")
        self._stream = self._av.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
        self._stream.width, self._stream.height, self._stream.pix_fmt = width, height, "yuv420p"
        self._stream.options = {"crf": "23", "preset": "veryfast"}
        self._av_frame = av.VideoFrame

    def write(self, image: np.ndarray) -> None:
        if self.codec == "mp4v":
            self._cv.write(image)
        else:
            for packet in self._stream.encode(self._av_frame.from_ndarray(image, format="bgr24")):
                self._av.mux(packet)
        self.frames += 1

    def close(self) -> None:
        if self.codec == "mp4v":
            self._cv.release()
        else:
            for packet in self._stream.encode():
                self._av.mux(packet)
            self._av.close()


def unique_path(folder: Path, name: str, taken: set[str]) -> Path:
    """``folder / name``, with ``_2``, ``_3``... before the suffix when a source of the run already used it."""
    stem, suffix = os.path.splitext(name)
    candidate, i = name, 2
    while candidate in taken:
        candidate, i = f"{stem}_{i}{suffix}", i + 1
    taken.add(candidate)
    return folder / candidate
