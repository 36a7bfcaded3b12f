"""Damaged image files inside a dataset: what is skipped at load time and what still decodes."""

from __future__ import annotations

import struct
import zlib

import cv2
import numpy as np
import pytest

from retina_cli.data import load_dataset
from retina_cli.data.images import image_size, read_image
from retina_cli.errors import DataError


def png_header_only(w: int, h: int) -> bytes:
    """A PNG signature, an IHDR claiming ``w x h`` pixels and an empty IDAT: a header, no pixels."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)) + chunk(b"IDAT", b"")


def test_damaged_images_in_a_dataset(tmp_path):
    root = tmp_path / "y"
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    (root / "classes.txt").write_text("cat\n")
    img = np.random.default_rng(0).integers(0, 255, (30, 40, 3), dtype=np.uint8)
    png, jpg = (cv2.imencode(s, img)[1].tobytes() for s in (".png", ".jpg"))
    files = {
        "good.png": png,
        "zero.png": b"",
        "cut.png": png[: len(png) // 2],
        "truncated.jpg": jpg[: len(jpg) // 2],
        "corrupt.jpg": jpg[:300] + bytes(200) + jpg[500:],  # garbage in the middle of the scan data
        "bomb.png": png_header_only(100_000, 100_000),  # 10^10 pixels claimed
    }
    for name, data in files.items():
        (root / "images" / name).write_bytes(data)
        (root / "labels" / name).with_suffix(".txt").write_text("0 0.5 0.5 0.5 0.5\n")
    ds = load_dataset(root)
    kept = sorted(r.path.name for r in ds.records())
    # skipped at load time, each with a problem naming the image: no pixels, cut-off PNG, absurd size
    assert kept == ["corrupt.jpg", "good.png", "truncated.jpg"]
    problems = {p.file.name: p.message for p in ds.report.problems}
    assert set(problems) == {"zero.txt", "cut.txt", "bomb.txt"}
    assert "not a readable image" in problems["zero.txt"] and "zero.png" in problems["zero.txt"]
    assert "cut.png" in problems["cut.txt"] and "truncated" in problems["cut.txt"]
    assert "refused" in problems["bomb.txt"] and "decompression bomb" in problems["bomb.txt"]
    assert (ds.report.skipped_images, ds.report.dropped) == (3, 3)
    # a damaged JPEG decodes as far as it goes (libjpeg fills the rest): full-size pixels for training
    for name in ("truncated.jpg", "corrupt.jpg"):
        assert image_size(root / "images" / name) == (40, 30)
        assert read_image(root / "images" / name).shape == (30, 40, 3)


def test_reading_a_decompression_bomb_is_refused(tmp_path):
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png_header_only(100_000, 100_000))
    for read in (image_size, read_image):
        with pytest.raises(DataError, match=r"bomb\.png: refused: .*decompression bomb"):
            read(bomb)
