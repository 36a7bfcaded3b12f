"""Reading image files: the pixel size from the header alone, and the pixels as RGB uint8.

The one reader of image files: every command that decodes an image goes through :func:`read_image`,
which checks the header's pixel count before anything is decoded.

Both apply the EXIF orientation tag, so sizes, pixels and boxes agree for phone photos.

:func:`image_size` reads plain JPEG headers itself (:func:`jpeg_header`: a few hundred bytes,
about 20 times faster than ``PIL.Image.open`` and the deciding cost of indexing a large dataset);
every other file, and every JPEG with anything unusual in its header, goes to PIL, so sizes and
errors are PIL's. PNGs always go to PIL: its EXIF lookup decodes the whole file (the eXIf chunk may
follow the pixels), which is also what reports a cut-off PNG at load time.
"""

from __future__ import annotations

import re
import struct
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
    return is_image_name(path.name)


def is_image_name(name: str) -> bool:
    """:func:`is_image` of a file name (``Path(name).suffix``, without building a Path)."""
    i = name.rfind(".")
    return 0 < i < len(name) - 1 and name[i:].lower() in IMAGE_SUFFIXES


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
    header = jpeg_header(path)
    if header is not None and not (limit and header[0] * header[1] > limit):
        w, h, orientation = header
        return (h, w) if orientation in _SWAPS_SIDES else (w, h)
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


# JPEG markers (the byte after 0xFF) whose segments PIL only reads past or stores
_SKIPPED = {0xC4, 0xCC, 0xDC, 0xDD, 0xDF, 0xFE} | set(range(0xE3, 0xED)) | {0xEF}
_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF, 0xDE}
_SOS, _DQT, _APP0, _APP1, _APP2, _APP13, _APP14 = 0xDA, 0xDB, 0xE0, 0xE1, 0xE2, 0xED, 0xEE


def jpeg_header(path: Path | str) -> tuple[int, int, int] | None:
    """``(width, height, EXIF orientation)`` of a JPEG as stored (before orientation), read from
    its header segments up to the start of scan; None when the file is not a JPEG or its header
    holds anything PIL would treat specially (XMP or a second APP1, MPO, Photoshop or short Adobe
    and JFIF segments, fill bytes, an EXIF block this does not parse exactly, ...): the caller then
    asks PIL, which gives the same answer or the error.
    """
    try:
        with open(path, "rb") as f:
            data = f.read(4096)
            if not data.startswith(b"\xff\xd8\xff"):
                return None
            pos, size, orientation, app1 = 2, None, 1, 0
            while True:
                if pos + 4 > len(data):
                    data += f.read(pos + 65536 - len(data))
                    if pos + 4 > len(data):
                        return None
                if data[pos] != 0xFF:
                    return None
                marker = data[pos + 1]
                n = (data[pos + 2] << 8 | data[pos + 3]) - 2
                start, pos = pos + 4, pos + 4 + n
                if n < 0:
                    return None
                if pos > len(data):
                    data += f.read(pos + 4 - len(data))
                    if pos > len(data):
                        return None
                seg = data[start:pos]
                if marker == _SOS:
                    return None if size is None else (*size, orientation)
                if marker in _SOF:
                    if n < 6 or seg[0] != 8 or seg[5] not in (1, 3, 4):
                        return None
                    size = (seg[3] << 8 | seg[4], seg[1] << 8 | seg[2])
                    if not size[0] or not size[1]:
                        return None
                elif marker == _DQT:
                    if not _dqt_ok(seg):
                        return None
                elif marker == _APP0:
                    if seg.startswith(b"JFIF") and n < 7:
                        return None
                elif marker == _APP1:
                    app1 += 1
                    if app1 > 1 or not seg.startswith(b"Exif\0\0"):
                        return None
                    orientation = _exif_orientation(seg[6:])
                    if orientation is None:
                        return None
                elif marker == _APP2:
                    if not (seg.startswith(b"ICC_PROFILE\0") and n >= 14):
                        return None
                elif marker == _APP13:
                    if seg.startswith(b"Photoshop 3.0\x00"):
                        return None
                elif marker == _APP14:
                    if seg.startswith(b"Adobe") and n < 7:
                        return None
                elif marker not in _SKIPPED:
                    return None
    except (OSError, ValueError):
        return None


def _dqt_ok(seg: bytes) -> bool:
    """PIL's check of a DQT segment: whole tables of 64 one- or two-byte entries."""
    pos = 0
    while pos < len(seg):
        pos += 1 + 64 * (1 if seg[pos] < 16 else 2)
    return pos == len(seg)


def _exif_orientation(tiff: bytes) -> int | None:
    """The orientation tag of an EXIF block's first IFD (1 when absent), or None when the block is
    anything but a plain, whole little- or big-endian TIFF header and IFD (PIL then decides)."""
    from PIL import TiffImagePlugin

    order = {b"II*\0": "<", b"MM\0*": ">"}.get(tiff[:4])
    if order is None or tiff.startswith(b"Exif\0\0") or len(tiff) < 8:
        return None
    (ifd,) = struct.unpack_from(order + "L", tiff, 4)
    if ifd < 8 or ifd + 2 > len(tiff):
        return None
    (count,) = struct.unpack_from(order + "H", tiff, ifd)
    if ifd + 2 + 12 * count + 4 > len(tiff):
        return None
    units = TiffImagePlugin.ImageFileDirectory_v2._load_dispatch
    orientation, stored, total = 1, set(), 0
    for tag, typ, n, value in struct.iter_unpack(order + "HHL4s", tiff[ifd + 2 : ifd + 2 + 12 * count]):
        if typ not in units or tag in stored:  # PIL skips unknown types and keeps a tag's first entry
            continue
        size = n * units[typ][0]
        if size == 0:
            return None
        if size > 4:  # stored elsewhere: PIL warns and skips a tag running past the block
            total += size
            (offset,) = struct.unpack(order + "L", value)
            if offset + size > len(tiff) or total > len(tiff):
                return None
        stored.add(tag)
        if tag == _EXIF_ORIENTATION:
            if typ != 3 or n != 1:
                return None
            (orientation,) = struct.unpack(order + "H", value[:2])
    return orientation


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
