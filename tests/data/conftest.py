"""Tiny datasets in every supported layout, written to tmp_path by the tests."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest


def write_image(path: Path, w: int = 40, h: int = 30, value: int = 50) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.full((h, w, 3), value, np.uint8))
    return path


def build_yolo(root: Path, yaml: bool = True) -> Path:
    """a.jpg: 2 boxes, b.jpg: negative (no label file), c.jpg: empty label file; 40x30 images."""
    for name in ("a", "b", "c"):
        write_image(root / "images" / f"{name}.jpg")
    (root / "labels").mkdir(parents=True)
    (root / "labels" / "a.txt").write_text("0 0.5 0.5 0.5 0.5\n1 0.25 0.25 0.1 0.2\n")
    (root / "labels" / "c.txt").write_text("")
    if yaml:
        (root / "data.yaml").write_text("names:\n  0: cat\n  1: dog\n")
    else:
        (root / "classes.txt").write_text("cat\ndog\n")
    return root


VOC_XML = """<annotation><filename>{name}.jpg</filename><size><width>40</width><height>30</height></size>
{objects}</annotation>"""
VOC_OBJ = "<object><name>{cls}</name><difficult>{d}</difficult><bndbox><xmin>{x1}</xmin><ymin>{y1}</ymin><xmax>{x2}</xmax><ymax>{y2}</ymax></bndbox></object>"


def build_voc(root: Path, splits: dict[str, list[str]] | None = None) -> Path:
    """img0..img3 (40x30); img0: dog (difficult) + cat; img1: cat; img2/img3: cat each."""
    objs = {
        "img0": [("dog", 1, 1, 2, 11, 12), ("cat", 0, 10, 5, 30, 25)],
        "img1": [("cat", 0, 0, 0, 40, 30)],
        "img2": [("cat", 0, 5, 5, 15, 15)],
        "img3": [("cat", 0, 6, 6, 16, 16)],
    }
    (root / "Annotations").mkdir(parents=True)
    for name, boxes in objs.items():
        write_image(root / "JPEGImages" / f"{name}.jpg")
        body = "".join(VOC_OBJ.format(cls=c, d=d, x1=a, y1=b, x2=x, y2=y) for c, d, a, b, x, y in boxes)
        (root / "Annotations" / f"{name}.xml").write_text(VOC_XML.format(name=name, objects=body))
    if splits:
        main = root / "ImageSets" / "Main"
        main.mkdir(parents=True)
        for split, names in splits.items():
            (main / f"{split}.txt").write_text("\n".join(names) + "\n")
    return root


def build_coco(root: Path) -> Path:
    """train2017: 2 images (one crowd box, one negative); val2017: 1 image; category ids 3 and 7."""
    cats = [{"id": 7, "name": "dog"}, {"id": 3, "name": "cat"}]
    ann_dir = root / "annotations"
    ann_dir.mkdir(parents=True)
    for split, images, anns in (
        ("train2017", [(1, "t1.jpg"), (2, "t2.jpg")], [(1, 7, [1, 2, 10, 8], 0), (1, 3, [0, 0, 40, 30], 1)]),
        ("val2017", [(5, "v1.jpg")], [(5, 3, [30, 20, 20, 20], 0)]),
    ):
        for _, fn in images:
            write_image(root / split / fn)
        doc = {
            "images": [{"id": i, "file_name": fn, "width": 40, "height": 30} for i, fn in images],
            "annotations": [
                {"id": k, "image_id": i, "category_id": c, "bbox": b, "iscrowd": cr, "area": b[2] * b[3]}
                for k, (i, c, b, cr) in enumerate(anns)
            ],
            "categories": cats,
        }
        (ann_dir / f"instances_{split}.json").write_text(json.dumps(doc))
    return root


def build_csv(root: Path, rows: str | None = None) -> Path:
    for name in ("a", "b", "c"):
        write_image(root / "imgs" / f"{name}.png")
    (root / "classes.csv").write_text("cat,0\ndog,1\n")
    (root / "annotations.csv").write_text(
        rows
        if rows is not None
        else "imgs/a.png,1,2,11,12,cat\nimgs/a.png,5,5,20,25,dog\nimgs/b.png,,,,,\nimgs/c.png,0,0,10,10,dog\n"
    )
    return root


@pytest.fixture
def yolo_dir(tmp_path):
    return build_yolo(tmp_path / "yolo")


@pytest.fixture
def voc_dir(tmp_path):
    return build_voc(tmp_path / "voc")


@pytest.fixture
def coco_dir(tmp_path):
    return build_coco(tmp_path / "coco")


@pytest.fixture
def csv_dir(tmp_path):
    return build_csv(tmp_path / "csv")
