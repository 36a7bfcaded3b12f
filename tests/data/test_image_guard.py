"""The one guarded image reader: a header claiming too many pixels is refused before OpenCV decodes
anything, in `retina predict` (single image and folder), the API and int8 calibration."""

from __future__ import annotations

import struct
import warnings
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from helpers import make_checkpoint
from retina_cli.cli.app import main
from retina_cli.data import images
from retina_cli.data.images import ImageUnreadable, image_size, read_image
from retina_cli.errors import DataError


def png_bomb(path: Path, w: int, h: int) -> Path:
    """A valid 1-bit grey PNG of ``w x h`` zero pixels: a few hundred KB at most on disk, ``w * h``
    pixels (``3 w h`` bytes as RGB) once decoded. Rows are compressed one by one: little memory."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    z = zlib.compressobj(9)
    row = b"\x00" + bytes((w + 7) // 8)  # filter byte 0, then the packed bits
    idat = b"".join(z.compress(row) for _ in range(h)) + z.flush()
    ihdr = struct.pack(">IIBBBBB", w, h, 1, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b""))
    return path


@pytest.fixture(scope="module")
def bomb(tmp_path_factory) -> Path:
    """30000 x 30000: 900 megapixels (2.7 GB as RGB) in ~110 KB: what the tester fed `retina predict`."""
    return png_bomb(tmp_path_factory.mktemp("bomb") / "bomb.png", 30000, 30000)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "m.pt")[0]


@pytest.fixture
def no_opencv_decode(monkeypatch):
    """Fail the test if OpenCV is asked to decode anything through the reader."""

    def refuse(*args, **kwargs):
        raise AssertionError("OpenCV decoded an image the header check should have refused")

    monkeypatch.setattr(images.cv2, "imread", refuse)
    monkeypatch.setattr(images.cv2, "imdecode", refuse)


def write_ok(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.full((60, 80, 3), 120, np.uint8))
    return path


def test_a_bomb_is_refused_before_opencv_decodes(bomb, no_opencv_decode):
    assert bomb.stat().st_size < 200_000
    with pytest.raises(ImageUnreadable, match=r"bomb\.png: refused: 900000000 pixels, above the limit of 89478485") as err:
        read_image(bomb)
    assert "decompression bomb" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(ImageUnreadable, match=r"refused: 900000000 pixels"):
        image_size(bomb)


def test_between_the_limit_and_twice_it_is_refused_too_without_a_warning(tmp_path, no_opencv_decode):
    # PIL only warns up to twice MAX_IMAGE_PIXELS; the reader refuses at the limit itself
    big = png_bomb(tmp_path / "big.png", 10000, 10000)  # 10^8 > 89478485
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a DecompressionBombWarning would fail here
        for read in (read_image, image_size):
            with pytest.raises(DataError, match=r"big\.png: refused: 100000000 pixels \(10000x10000\), above the limit of 89478485"):
                read(big)


def test_the_limit_is_pils_max_image_pixels(tmp_path, monkeypatch):
    small = write_ok(tmp_path / "small.png")  # 80 x 60 = 4800 pixels
    assert read_image(small).shape == (60, 80, 3)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 4000)
    with pytest.raises(DataError, match=r"small\.png: refused: 4800 pixels \(80x60\), above the limit of 4000"):
        read_image(small)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)  # PIL's "no limit"
    assert read_image(small).shape == (60, 80, 3)


def test_predict_on_a_single_bomb_is_a_one_line_error_and_leaves_no_folder(bomb, ckpt, tmp_path, capsys, no_opencv_decode):
    with pytest.raises(SystemExit) as exc:
        main(["predict", str(ckpt), str(bomb), "--device", "cpu", "--project", str(tmp_path / "runs")])
    assert exc.value.code == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err  # no warning line before the error
    assert "bomb.png: refused: 900000000 pixels" in err
    assert not (tmp_path / "runs").exists()  # the run folder it made (and --project) are taken back


def test_predict_on_a_folder_skips_the_bomb_and_predicts_the_others(bomb, ckpt, tmp_path, capsys):
    src = tmp_path / "imgs"
    write_ok(src / "a.png")
    (src / "bomb.png").write_bytes(bomb.read_bytes())
    write_ok(src / "c.png")
    main(["predict", str(ckpt), str(src), "--device", "cpu", "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert "bomb.png: refused: 900000000 pixels" in err
    assert sorted(p.name for p in (tmp_path / "out").glob("*.png")) == ["a.png", "c.png"]
    import json

    rows = json.loads((tmp_path / "out" / "predictions.json").read_text())
    assert {Path(r["file_name"]).name for r in rows} <= {"a.png", "c.png"} and rows


def test_api_predict_refuses_a_bomb_alone_and_skips_it_in_a_folder(bomb, ckpt, tmp_path):
    from retina_cli.api.detector import load

    det = load(ckpt, device="cpu")
    with pytest.raises(DataError, match=r"bomb\.png: refused: 900000000 pixels"):
        det.predict(str(bomb))
    with pytest.raises(DataError, match=r"bomb\.png: refused"):  # a file named in a list is strict too
        det.predict([str(write_ok(tmp_path / "one" / "a.png")), str(bomb)])
    src = tmp_path / "imgs"
    write_ok(src / "a.png")
    (src / "bomb.png").write_bytes(bomb.read_bytes())
    with pytest.warns(RuntimeWarning, match=r"bomb\.png: refused: 900000000 pixels"):
        results = det.predict(str(src))
    assert [Path(r.path).name for r in results] == ["a.png"]


def test_no_other_module_decodes_image_files():
    """Every image read goes through data/images.py's guarded reader: no other module calls
    OpenCV's or PIL's file decoders (video capture is not an image read)."""
    import retina_cli

    root = Path(retina_cli.__file__).parent
    offenders = []
    for path in root.rglob("*.py"):
        if path == root / "data" / "images.py":
            continue
        text = path.read_text(encoding="utf-8")
        for needle in ("cv2.imread(", "cv2.imdecode(", "Image.open("):
            if needle in text:
                offenders.append(f"{path.relative_to(root)}: {needle}")
    assert offenders == []
