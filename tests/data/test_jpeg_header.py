"""The JPEG header reader behind ``image_size`` gives PIL's size and EXIF orientation, and hands
every file it is not sure of to PIL."""

from __future__ import annotations

import io

import cv2
import numpy as np
import pytest
from PIL import Image

from retina_cli.data import images
from retina_cli.data.images import image_size, jpeg_header


def pixels(w: int = 40, h: int = 30) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 255, (h, w, 3), dtype=np.uint8)


def pil_size(path, monkeypatch) -> tuple[int, int]:
    """``image_size`` with the header reader switched off: PIL alone, as before it existed."""
    with monkeypatch.context() as m:
        m.setattr(images, "jpeg_header", lambda p: None)
        return image_size(path)


def save_pil(path, exif_orientation: int | None = None, **kw) -> None:
    img = Image.fromarray(pixels())
    if exif_orientation is not None:
        exif = Image.Exif()
        exif[0x0112] = exif_orientation
        kw["exif"] = exif.tobytes()
    img.save(path, **kw)


@pytest.mark.parametrize("orientation, size", [(None, (40, 30)), (1, (40, 30)), (3, (40, 30)), (6, (30, 40)), (8, (30, 40))])
def test_exif_orientation_as_pil(tmp_path, monkeypatch, orientation, size):
    path = tmp_path / "a.jpg"
    save_pil(path, orientation, quality=90)
    assert jpeg_header(path) == (40, 30, orientation or 1)
    assert image_size(path) == pil_size(path, monkeypatch) == size


@pytest.mark.parametrize("kind", ["opencv", "progressive", "grey", "cmyk", "icc", "comment", "big-endian exif"])
def test_jpeg_variants_as_pil(tmp_path, monkeypatch, kind):
    path = tmp_path / "a.jpg"
    if kind == "opencv":
        cv2.imwrite(str(path), pixels(64, 48))
    elif kind == "progressive":
        Image.fromarray(pixels(64, 48)).save(path, progressive=True, quality=80)
        assert Image.open(path).info.get("progressive")
    elif kind == "grey":
        Image.fromarray(pixels(64, 48)[:, :, 0]).save(path)
    elif kind == "cmyk":
        Image.fromarray(pixels(64, 48)).convert("CMYK").save(path)  # Adobe APP14, 4 layers
    elif kind == "icc":
        Image.fromarray(pixels(64, 48)).save(path, icc_profile=b"\0" * 300)
    elif kind == "comment":
        Image.fromarray(pixels(64, 48)).save(path, comment=b"made by a test")
    else:  # a hand-made big-endian EXIF block: one IFD entry, orientation 6
        tiff = b"MM\0*" + (8).to_bytes(4, "big") + (1).to_bytes(2, "big")
        tiff += (0x0112).to_bytes(2, "big") + (3).to_bytes(2, "big") + (1).to_bytes(4, "big") + (6).to_bytes(2, "big") + b"\0\0"
        tiff += bytes(4)
        Image.fromarray(pixels(64, 48)).save(path, exif=b"Exif\0\0" + tiff)
    assert jpeg_header(path) is not None
    with Image.open(path) as img:
        w, h = img.size
        expected = (h, w) if img.getexif().get(0x0112, 1) in (5, 6, 7, 8) else (w, h)
    assert image_size(path) == pil_size(path, monkeypatch) == expected
    assert cv2.imread(str(path), cv2.IMREAD_UNCHANGED).shape[:2][::-1] in ((64, 48), (48, 64))


@pytest.mark.parametrize("suffix", [".png", ".bmp"])
def test_png_and_bmp_go_to_pil(tmp_path, suffix):
    path = tmp_path / f"a{suffix}"
    cv2.imwrite(str(path), pixels(50, 20))
    assert jpeg_header(path) is None
    assert image_size(path) == (50, 20)


@pytest.mark.filterwarnings("ignore:Image appears to be a malformed MPO file")
def test_odd_headers_go_to_pil(tmp_path, monkeypatch):
    """XMP, a second APP1, MPF, fill bytes, a cut header, a broken EXIF block: PIL decides."""
    good = io.BytesIO()
    Image.fromarray(pixels()).save(good, "JPEG")
    data = good.getvalue()

    def seg(marker: int, body: bytes) -> bytes:
        return bytes([0xFF, marker]) + (len(body) + 2).to_bytes(2, "big") + body

    odd = {
        "xmp": data[:2] + seg(0xE1, b"http://ns.adobe.com/xap/1.0/\0<x tiff:Orientation=\"6\"/>") + data[2:],
        "two-exif": data[:2] + seg(0xE1, b"Exif\0\0II*\0\x08\0\0\0\0\0\0\0\0\0") * 2 + data[2:],
        "mpf": data[:2] + seg(0xE2, b"MPF\0" + bytes(20)) + data[2:],
        "fill": data[:2] + b"\xff" + data[2:],
        "cut": data[:40],
        "bad-exif": data[:2] + seg(0xE1, b"Exif\0\0XX*\0") + data[2:],
    }
    for name, body in odd.items():
        path = tmp_path / f"{name}.jpg"
        path.write_bytes(body)
        assert jpeg_header(path) is None, name
        try:
            expected = pil_size(path, monkeypatch)
        except Exception as exc:  # the same error either way
            with pytest.raises(type(exc), match=str(exc).split(":")[0]):
                image_size(path)
        else:
            assert image_size(path) == expected, name


def test_a_jpeg_claiming_too_many_pixels_is_refused_as_before(tmp_path, monkeypatch):
    path = tmp_path / "big.jpg"
    Image.fromarray(pixels()).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 40 x 30 = 1200 > 1000
    with pytest.raises(images.ImageUnreadable, match=r"refused: 1200 pixels \(40x30\)"):
        image_size(path)

