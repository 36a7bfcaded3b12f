"""Reading image files: the pixel size from the header alone, and the pixels as RGB uint8.

The one reader of image files: every command that decodes an image goes through :func:`read_image`,
which checks the header's pixel count before anything is decoded.

Both apply the EXIF orientation tag, so sizes, pixels and boxes agree for phone photos.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from retina_cli.errors import DataError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")

# EXIF orientations 5..8 rotate by 90 degrees, so width and height swap
_SWAPS_SIDES = {5, 6, 7, 8}
_EXIF_ORIENTATION = 0x0112


class ImageUnreadable(DataError):
    """A missing or undecodable image; ``reason`` is the message without the path."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}; fix the path, or replace or remove the file")
        self.path = path
        self.reason = reason


def is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES


def pixel_limit() -> int | None:
    """The most pixels a header may claim: PIL's ``Image.MAX_IMAGE_PIXELS`` (None: no limit)."""
    return Image.MAX_IMAGE_PIXELS


def _refused(path: Path, w: int | None, h: int | None, limit: int | None, pil_error: Exception | None = None) -> ImageUnreadable:
    """The refusal of a header claiming ``w x h`` pixels (None: PIL refused it first, ``pil_error``)."""
    if w is not None and h is not None:
        size = f"{w * h} pixels ({w}x{h})"
    else:  # PIL's message: "Image size (N pixels) exceeds limit of ..."
        claimed = re.search(r"\((\d+) pixels\)", str(pil_error))
        size = f"{claimed.group(1)} pixels" if claimed else "more than twice that many pixels"
    return ImageUnreadable(
        path, f"refused: {size}, above the limit of {limit} (PIL.Image.MAX_IMAGE_PIXELS); not decoded, a decompression bomb?"
    )


def image_size(path: Path) -> tuple[int, int]:
    """``(width, height)`` after EXIF orientation, from the file header (pixels are not decoded).

    Raises DataError when the file is missing or not an image, or when the header claims more
    pixels than :func:`pixel_limit` (a decompression bomb).
    """
    path = Path(path)
    limit = pixel_limit()
    try:
        with warnings.catch_warnings():
            # PIL warns between the limit and twice it; here that is refused, so no warning line
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                w, h = img.size
                orientation = img.getexif().get(_EXIF_ORIENTATION, 1) if img.format in ("JPEG", "TIFF", "WEBP", "PNG") else 1
    except FileNotFoundError:
        raise ImageUnreadable(path, "image file not found") from None
    except Image.DecompressionBombError as exc:  # PIL's own refusal, above twice the limit
        raise _refused(path, None, None, limit, exc) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ImageUnreadable(path, f"not a readable image ({exc})") from None
    if limit and w * h > limit:
        raise _refused(path, w, h, limit)
    return (h, w) if orientation in _SWAPS_SIDES else (w, h)


def read_image(path: Path | str) -> np.ndarray:
    """Pixels of ``path`` -> ``(H, W, 3)`` uint8 RGB.

    EXIF orientation is applied; grey, RGBA/paletted and 16-bit images become 8-bit RGB (OpenCV's
    IMREAD_COLOR does all of that). Raises DataError on a missing or unreadable file. The header is
    read first (:func:`image_size`): a file PIL cannot identify, or one claiming more pixels than
    :func:`pixel_limit`, is refused before OpenCV decodes anything (OpenCV's own limit, 2^30
    pixels, lets a 900-megapixel PNG of a few KB through).
    """
    path = Path(path)
    image_size(path)
    bgr = _opencv_read(path)
    if bgr is None:
        if not path.exists():
            raise ImageUnreadable(path, "image file not found")
        bgr = _read_with_pil(path)
    return np.ascontiguousarray(bgr[:, :, ::-1])


def _opencv_read(path: Path) -> np.ndarray | None:
    """``cv2.imread(path, IMREAD_COLOR)``: ``(H, W, 3)`` uint8 BGR, or None when OpenCV cannot decode
    it (then PIL tries, and says why it cannot)."""
    name = str(path)
    try:
        try:
            name.encode("utf-8")
        except UnicodeEncodeError:
            # a non-UTF-8 file name (surrogate escapes): OpenCV's Python binding crashes the process
            # (SIGSEGV, OpenCV 5.0) on such a str, so Python reads the bytes and OpenCV decodes them
            try:
                data = np.fromfile(path, np.uint8)
            except OSError:
                return None
            return cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
        return cv2.imread(name, cv2.IMREAD_COLOR)
    except cv2.error:  # e.g. a header claiming more than CV_IO_MAX_IMAGE_PIXELS
        return None


def _read_with_pil(path: Path) -> np.ndarray:
    """Fallback for files OpenCV cannot decode (some GIF/TIFF variants) -> ``(H, W, 3)`` uint8 BGR."""
    from PIL import ImageOps

    try:
        with Image.open(path) as img:
            rgb = np.asarray(ImageOps.exif_transpose(img).convert("RGB"))
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ImageUnreadable(path, f"not a readable image ({exc})") from None
    except Image.DecompressionBombError as exc:  # a header claiming billions of pixels: not decoded
        raise _refused(path, None, None, pixel_limit(), exc) from None
    return np.ascontiguousarray(rgb[:, :, ::-1])
