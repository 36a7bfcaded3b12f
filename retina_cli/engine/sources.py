"""What `retina predict` reads: a SOURCE string -> a list of :class:`Source`, and frames out of them.

A SOURCE is an image, a folder (its images and videos, sorted, not recursive), a glob, a video
file, a webcam index (``0``) or a stream URL (``rtsp://...``: whatever OpenCV opens). Frames are
``(H, W, 3)`` uint8 **BGR** (OpenCV's order, used for drawing and encoding); the predictor flips
them to RGB for the network.
"""

from __future__ import annotations

import glob
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import cv2
import numpy as np

from retina_cli.data.images import IMAGE_SUFFIXES, read_image
from retina_cli.errors import DataError

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv", ".ts")
# consecutive failed reads before a video is taken as ended (a truncated file, a dead stream)
MAX_BAD_READS = 8


class SourceError(DataError):
    """A SOURCE that names nothing readable, or a video / stream OpenCV cannot open."""


@dataclass(frozen=True)
class Source:
    """One input: ``kind`` is "image", "video" (a file) or "stream" (webcam index or URL).

    index: position in the run's full source list (stable across torchrun ranks; it is the
    ``image_id`` of the JSON results).
    """

    kind: str
    spec: str
    index: int = 0

    @property
    def is_video(self) -> bool:
        return self.kind in ("video", "stream")

    @property
    def stem(self) -> str:
        if self.kind == "stream":
            return "stream" + "".join(c if c.isalnum() else "_" for c in self.spec)[-40:]
        return Path(self.spec).stem


@dataclass
class Frame:
    """A decoded picture: ``image`` ``(H, W, 3)`` uint8 BGR, ``index`` its frame number (0 for images).

    captured: when it was decoded, or captured where the source knows (``time.perf_counter()``
    seconds); None when unknown. The pipeline measures each frame's lag from it.
    """

    source: Source
    index: int
    image: np.ndarray
    captured: float | None = None


def _kind_of(path: Path) -> str | None:
    suffix = path.suffix.lower()
    if suffix in IMAGE_SUFFIXES:
        return "image"
    if suffix in VIDEO_SUFFIXES:
        return "video"
    return None


def resolve_sources(spec: str) -> list[Source]:
    """SOURCE string -> sources in a stable order (sorted within a folder or glob)."""
    spec = str(spec)
    if spec.isdigit() or "://" in spec:
        return [Source("stream", spec, 0)]
    path = Path(spec)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and _kind_of(p))
        if not files:
            raise SourceError(f"{path}: no images or videos in this folder (known suffixes: {', '.join(IMAGE_SUFFIXES + VIDEO_SUFFIXES)})")
    elif path.is_file():
        if _kind_of(path) is None:
            raise SourceError(f"{path}: not an image or video file (known suffixes: {', '.join(IMAGE_SUFFIXES + VIDEO_SUFFIXES)})")
        files = [path]
    elif any(c in spec for c in "*?["):
        files = sorted(Path(p) for p in glob.glob(spec, recursive=True) if Path(p).is_file() and _kind_of(Path(p)))
        if not files:
            raise SourceError(f"{spec}: the glob matches no image or video files")
    else:
        raise SourceError(f"{spec}: no such file or folder (give an image, folder, glob, video, webcam index or URL)")
    return [Source(_kind_of(p) or "image", str(p), i) for i, p in enumerate(files)]


def read_image_bgr(path: str) -> np.ndarray:
    """Image file -> ``(H, W, 3)`` uint8 BGR, EXIF orientation applied; DataError naming the file."""
    if Path(path).is_file() and Path(path).stat().st_size == 0:
        raise SourceError(f"{path}: empty file (0 bytes); replace or remove it")
    return np.ascontiguousarray(read_image(path)[:, :, ::-1])


def iter_images(sources: list[Source], warn: Callable[[str], None]) -> Iterator[Frame]:
    """Frames of the image sources; unreadable files are skipped with ``warn`` (message names the file)."""
    for src in sources:
        try:
            yield Frame(src, 0, read_image_bgr(src.spec))
        except DataError as exc:
            warn(str(exc))


@dataclass(frozen=True)
class VideoInfo:
    width: int
    height: int
    fps: float
    frames: int | None  # None when the container (or a live stream) does not say


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class VideoReader:
    """Frames of a video file or stream, in order, through OpenCV.

    A failed read before the container's frame count is a damaged frame: it is skipped and counted
    in ``bad_frames`` (its frame number is not reused, so results keep the input's numbering).
    ``MAX_BAD_READS`` failures in a row end the video (and are not counted as damaged).
    """

    def __init__(self, source: Source) -> None:
        self.source = source
        target: str | int = int(source.spec) if source.spec.isdigit() else source.spec
        if source.kind == "video" and Path(source.spec).is_file() and Path(source.spec).stat().st_size == 0:
            raise SourceError(f"{source.spec}: empty video file (0 bytes); replace or remove it")
        if isinstance(target, str) and not _utf8(target):
            # OpenCV's binding crashes the process (SIGSEGV) on such a str instead of failing
            raise SourceError(f"{source.spec!r}: the video's file name is not valid UTF-8; rename it to read it")
        self.cap = cv2.VideoCapture(target)
        if not self.cap.isOpened():
            raise SourceError(f"{source.spec}: cannot open this video or stream (missing, damaged or an unsupported codec)")
        if source.kind == "stream":
            # a driver's queue of old frames is lag; backends that do not support it (FFmpeg) return False
            self.cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)
        fps = float(self.cap.get(cv2.CAP_PROP_FPS) or 0.0)
        count = int(self.cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        w, h = int(self.cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(self.cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        self.info = VideoInfo(w, h, fps if fps > 0 and math.isfinite(fps) else 30.0, count if count > 0 and source.kind == "video" else None)
        self.bad_frames = 0

    def __iter__(self) -> Iterator[Frame]:
        index, misses = 0, 0
        try:
            while True:
                ok, image = self.cap.read()
                if ok and image is not None:
                    misses = 0
                    yield Frame(self.source, index, image, time.perf_counter())
                    index += 1
                    continue
                misses += 1
                if self.info.frames is None or index >= self.info.frames:
                    break
                if misses >= MAX_BAD_READS:  # the container's count was too high: the file ends here
                    self.bad_frames -= misses - 1
                    break
                self.bad_frames += 1
                index += 1
        finally:
            self.cap.release()
