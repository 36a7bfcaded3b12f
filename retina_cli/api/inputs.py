"""What :meth:`Detector.predict` accepts as ``source`` -> decoded frames, through engine.sources' readers.

Accepted: a path or SOURCE string (image, folder, glob, video, stream URL: exactly what
``retina predict`` takes, resolved by :func:`~retina_cli.engine.sources.resolve_sources`), an int
webcam index, a numpy array ``(H, W, 3)`` uint8 (BGR unless ``channels="rgb"``; ``(H, W)``
greyscale too), a PIL image (any mode, taken as RGB), or a list / tuple of these. Every frame comes
out as :class:`~retina_cli.engine.sources.Frame` with a BGR ``(H, W, 3)`` uint8 image, which is
what the Predictor takes.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from retina_cli.engine.video import newest_frames
from retina_cli.engine.sources import Frame, Source, SourceError, VideoReader, iter_images, read_image_bgr, resolve_sources

CHANNELS = ("bgr", "rgb")


def _is_pil(obj: Any) -> bool:
    pil = sys.modules.get("PIL.Image")  # a PIL image exists only if PIL was imported: no import here
    return pil is not None and isinstance(obj, pil.Image)


def _array_bgr(image: np.ndarray, channels: str, what: str) -> np.ndarray:
    """A user's picture -> ``(H, W, 3)`` uint8 BGR, contiguous (a view when it already is one)."""
    if image.dtype != np.uint8:
        raise SourceError(f"{what}: dtype {image.dtype}, expected uint8 pixels 0..255 (e.g. image.astype(np.uint8))")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim == 2:
        return np.ascontiguousarray(np.repeat(image[:, :, None], 3, axis=2))
    if image.ndim != 3 or image.shape[2] != 3 or 0 in image.shape:
        raise SourceError(f"{what}: shape {image.shape}, expected (H, W, 3) colour or (H, W) greyscale")
    return np.ascontiguousarray(image if channels == "bgr" else image[:, :, ::-1])


class _Item:
    """One element of the source, resolved up front (so a bad source fails at the call, not mid-stream)."""

    def __init__(self, frames: Callable[[], Iterator[Frame]]) -> None:
        self.frames = frames


def _resolve(item: Any, channels: str, index: int, all_frames: bool) -> list[_Item]:
    if isinstance(item, bool):  # bool is an int: not a webcam
        raise SourceError(f"source {item!r} (bool): expected a path, webcam index, numpy array, PIL image or a list of them")
    if isinstance(item, int):
        return [_video(Source("stream", str(item), index), all_frames)]
    if isinstance(item, (str, Path)):
        sources = [Source(s.kind, s.spec, index + s.index) for s in resolve_sources(str(item))]
        single = len(sources) == 1
        return [_video(s, all_frames) if s.is_video else _image_file(s, strict=single) for s in sources]
    if isinstance(item, np.ndarray):
        image = _array_bgr(item, channels, f"source #{index} (numpy array)")
        return [_Item(lambda: iter([Frame(Source("array", "", index), 0, image)]))]
    if _is_pil(item):
        rgb = np.asarray(item.convert("RGB"))
        image = _array_bgr(rgb, "rgb", f"source #{index} (PIL image)")
        return [_Item(lambda: iter([Frame(Source("array", "", index), 0, image)]))]
    raise SourceError(
        f"source {type(item).__module__}.{type(item).__qualname__} ({item!r:.60}): expected a path, glob, video, "
        "webcam index (int), numpy array (H, W, 3) uint8, PIL image, or a list of them"
    )


def _video(source: Source, all_frames: bool) -> _Item:
    if source.kind == "stream" and not all_frames:  # live: the newest frame at each pull, never a backlog
        return _Item(lambda: newest_frames(VideoReader(source)))
    return _Item(lambda: iter(VideoReader(source)))


def _image_file(source: Source, strict: bool) -> _Item:
    if strict:  # the only input: an unreadable file is the error (as in `retina predict`)
        return _Item(lambda: iter([Frame(source, 0, read_image_bgr(source.spec))]))
    # one of a folder / glob: skipped with a warning, like `retina predict` does
    return _Item(lambda: iter_images([source], lambda msg: warnings.warn(msg, RuntimeWarning, stacklevel=4)))


def open_frames(source: Any, channels: str = "bgr", all_frames: bool = False) -> Iterator[Frame]:
    """``source`` (see the module docstring) -> its frames in order: list items in list order, a
    folder's files sorted, a video's frames in order. A webcam or stream URL gives the newest frame
    at each pull (older ones are dropped; :func:`~retina_cli.engine.video.newest_frames`) unless
    ``all_frames``. Type and path errors raise here, at once;
    a video that cannot be opened raises when its turn comes."""
    if channels not in CHANNELS:
        raise SourceError(f"channels {channels!r}: expected 'bgr' (OpenCV arrays) or 'rgb'")
    items: list[_Item] = []
    for item in source if isinstance(source, (list, tuple)) else [source]:
        items.extend(_resolve(item, channels, len(items), all_frames))
    if not items:
        raise SourceError("source: an empty list, nothing to predict on")
    return (frame for item in items for frame in item.frames())
