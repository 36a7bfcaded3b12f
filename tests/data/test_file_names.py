"""File names with spaces and with bytes that are not UTF-8 (Linux: held as surrogate escapes,
see os.fsdecode), in every layout: the images are found, their boxes read, and problems about
them print on a strict UTF-8 console."""

from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from retina_cli.data import load_dataset
from retina_cli.drawing.boxes import write_png
from retina_cli.data.images import image_size, read_image
from retina_cli.errors import DataError

SPACED = "my cat 1"
LATIN1 = os.fsdecode(b"caf\xe9")  # "caf\udce9": not valid UTF-8 on disk


def write(path: Path, w: int = 40, h: int = 30) -> None:
    """A grey image written through Python (cv2.imwrite cannot take a non-UTF-8 name)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(cv2.imencode(path.suffix, np.full((h, w, 3), 90, np.uint8))[1].tobytes())


def build(layout: str, root: Path) -> Path:
    """Three 40x30 images: ``plain`` (cat [0, 0, 20, 15]), SPACED (cat [10, 7.5, 30, 22.5]) and
    LATIN1 (dog [10, 7.5, 30, 22.5] plus one box of an unknown class: a problem naming the file)."""
    stems = ("plain", SPACED, LATIN1)
    if layout == "yolo":
        for s in stems:
            write(root / "images" / f"{s}.jpg")
        (root / "labels").mkdir()
        (root / "labels" / "plain.txt").write_text("0 0.25 0.25 0.5 0.5\n")
        (root / "labels" / f"{SPACED}.txt").write_text("0 0.5 0.5 0.5 0.5\n")
        (root / "labels" / f"{LATIN1}.txt").write_text("1 0.5 0.5 0.5 0.5\n7 0.5 0.5 0.1 0.1\n")
        (root / "classes.txt").write_text("cat\ndog\n")
    elif layout == "voc":
        obj = "<object><name>{}</name><bndbox><xmin>{}</xmin><ymin>{}</ymin><xmax>{}</xmax><ymax>{}</ymax></bndbox></object>"
        objs = {"plain": obj.format("cat", 0, 0, 20, 15), SPACED: obj.format("cat", 10, 7.5, 30, 22.5),
                LATIN1: obj.format("dog", 10, 7.5, 30, 22.5) + obj.format("bird", 1, 1, 5, 5)}
        (root / "Annotations").mkdir(parents=True)
        for s, body in objs.items():
            write(root / "JPEGImages" / f"{s}.jpg")
            # <filename> cannot spell a non-UTF-8 name: the image is found by the xml's stem
            shown = "café.jpg" if s == LATIN1 else f"{s}.jpg"
            (root / "Annotations" / f"{s}.xml").write_text(f"<annotation><filename>{shown}</filename>{body}</annotation>")
        (root / "classes.txt").write_text("cat\ndog\n")
        (root / "ImageSets" / "Main").mkdir(parents=True)
        (root / "ImageSets" / "Main" / "train.txt").write_bytes(f"{SPACED}\n".encode() + b"caf\xe9\n")
        (root / "ImageSets" / "Main" / "val.txt").write_text("plain\n")
    elif layout == "coco":
        for s in stems:
            write(root / "images" / f"{s}.jpg")
        doc = {
            # json.dumps writes the surrogate as "\udce9", which reads back to the same file name
            "images": [{"id": i, "file_name": f"{s}.jpg", "width": 40, "height": 30} for i, s in enumerate(stems)],
            "annotations": [
                {"id": 1, "image_id": 0, "category_id": 1, "bbox": [0, 0, 20, 15]},
                {"id": 2, "image_id": 1, "category_id": 1, "bbox": [10, 7.5, 20, 15]},
                {"id": 3, "image_id": 2, "category_id": 2, "bbox": [10, 7.5, 20, 15]},
                {"id": 4, "image_id": 2, "category_id": 9, "bbox": [1, 1, 4, 4]},
            ],
            "categories": [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}],
        }
        (root / "annotations").mkdir(parents=True)
        (root / "annotations" / "data.json").write_text(json.dumps(doc))
    elif layout == "csv":
        for s in stems:
            write(root / "imgs" / f"{s}.png")
        (root / "classes.csv").write_text("cat,0\ndog,1\n")
        (root / "annotations.csv").write_bytes(
            b"imgs/plain.png,0,0,20,15,cat\n"
            + f"imgs/{SPACED}.png,10,7.5,30,22.5,cat\n".encode()
            + b"imgs/caf\xe9.png,10,7.5,30,22.5,dog\nimgs/caf\xe9.png,1,1,5,5,bird\n"
        )
    return root


@pytest.mark.parametrize("layout", ["yolo", "voc", "coco", "csv"])
def test_spaces_and_non_utf8_names_load(tmp_path, layout):
    ds = load_dataset(build(layout, tmp_path / layout))
    assert ds.format == layout
    recs = {r.path.stem: r for r in ds.records()}
    assert sorted(recs) == sorted(["plain", SPACED, LATIN1])
    np.testing.assert_allclose(recs[SPACED].boxes, [[10, 7.5, 30, 22.5]])
    np.testing.assert_allclose(recs[LATIN1].boxes, [[10, 7.5, 30, 22.5]])
    assert recs[SPACED].labels.tolist() == [0] and recs[LATIN1].labels.tolist() == [1]
    assert os.fsencode(recs[LATIN1].path).endswith(b"caf\xe9" + os.fsencode(recs[LATIN1].path.suffix))
    # the pixels behind the records are readable (OpenCV alone crashes on the non-UTF-8 name)
    assert read_image(recs[LATIN1].path).shape == (30, 40, 3) and image_size(recs[SPACED].path) == (40, 30)
    # one problem (the unknown class), printable on a strict UTF-8 console, naming the file by its bytes
    (problem,) = ds.report.problems
    text = str(problem)
    text.encode("utf-8")  # no surrogates left
    if layout in ("yolo", "voc"):
        assert "caf\\xe9" in text  # the label file is named after the image
    else:
        assert "annotation 4" in text or "annotations.csv:4" in text


def test_spaces_in_voc_split_lists_keep_the_per_class_flag_format(tmp_path):
    root = build("voc", tmp_path / "voc")
    # "id flag" lines of the per-class lists still split on the space
    (root / "ImageSets" / "Main" / "val.txt").write_text("plain  1\n")
    ds = load_dataset(root)
    assert [r.path.stem for r in ds.splits["val"]] == ["plain"]
    assert sorted(r.path.stem for r in ds.splits["train"]) == sorted([SPACED, LATIN1])


def test_a_coco_json_that_is_not_utf8_is_a_clear_error(tmp_path):
    root = build("coco", tmp_path / "coco")
    f = root / "annotations" / "data.json"
    f.write_bytes(f.read_bytes().replace(b"\\udce9", b"\xe9"))  # latin-1 bytes in the json
    with pytest.raises(DataError, match=r"data\.json:1: not UTF-8 text \(byte 0xe9\)"):
        load_dataset(root)


def test_write_png_to_a_non_utf8_name(tmp_path):
    out = write_png(tmp_path / f"{LATIN1}.png", np.full((4, 6, 3), 7, np.uint8))
    assert os.fsencode(out.name) == b"caf\xe9.png"
    assert read_image(out).shape == (4, 6, 3) and (read_image(out) == 7).all()
