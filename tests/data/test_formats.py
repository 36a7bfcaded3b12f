"""Every layout read from tiny folders: boxes in pixels, labels, ignore flags, splits, counts."""

from __future__ import annotations

import json

import numpy as np
import pytest

from retina_cli.data import load_dataset
from retina_cli.data.dataset import detect_format
from retina_cli.errors import DataError

from conftest import build_csv, build_voc, build_yolo, write_image


def by_name(ds):
    return {r.path.name: r for r in ds.records()}


def test_yolo_boxes_in_pixels_and_negatives(yolo_dir):
    ds = load_dataset(yolo_dir)
    assert (ds.format, ds.class_names) == ("yolo", ["cat", "dog"])
    assert "data.yaml" in ds.detected_by
    recs = by_name(ds)
    np.testing.assert_allclose(recs["a.jpg"].boxes, [[10, 7.5, 30, 22.5], [8, 4.5, 12, 10.5]], atol=1e-5)
    assert recs["a.jpg"].labels.tolist() == [0, 1]
    assert recs["a.jpg"].boxes.dtype == np.float32 and recs["a.jpg"].labels.dtype == np.int64
    assert (recs["a.jpg"].width, recs["a.jpg"].height) == (40, 30)
    r = ds.report
    assert (r.images, r.negatives, r.kept, r.clipped, r.dropped, len(r.problems)) == (3, 2, 2, 0, 0, 0)
    # 3 unsplit images, val_fraction 0.1 -> at least one held out
    assert (len(ds.splits["train"]), len(ds.splits["val"])) == (2, 1)


def test_yolo_classes_txt_and_folder_splits(tmp_path):
    root = build_yolo(tmp_path / "y", yaml=False)
    for split in ("train", "val"):
        write_image(root / "images" / split / "s.jpg")
        (root / "labels" / split).mkdir()
        (root / "labels" / split / "s.txt").write_text("1 0.5 0.5 1 1\n")
    ds = load_dataset(root)
    assert ds.class_names == ["cat", "dog"]
    assert [r.path.parent.name for r in ds.splits["val"]] == ["val"]
    np.testing.assert_allclose(ds.splits["val"][0].boxes, [[0, 0, 40, 30]])


def test_yolo_yaml_split_entries(tmp_path):
    root = build_yolo(tmp_path / "y")
    (root / "data.yaml").write_text("path: .\ntrain: images\nval: val.txt\nnames: [cat, dog]\n")
    (root / "val.txt").write_text("./images/a.jpg\n")
    ds = load_dataset(root)
    assert len(ds.splits["train"]) == 3 and [r.path.name for r in ds.splits["val"]] == ["a.jpg"]


def test_yolo_broken_lines_are_reported_with_line_numbers(tmp_path):
    root = build_yolo(tmp_path / "y")
    (root / "labels" / "a.txt").write_text(
        "0 0.5 0.5 0.5 0.5\n"  # 1 ok
        "5 0.5 0.5 0.1 0.1\n"  # 2 class out of range
        "0 0.5 0.5\n"  # 3 malformed
        "0 nan 0.5 0.1 0.1\n"  # 4 NaN
        "1 0.9 0.5 0.4 0.2\n"  # 5 x2 = 1.1 -> clipped to 40
        "1 1.2 0.5 0.1 0.1\n"  # 6 entirely right of the image -> degenerate after clipping
    )
    (root / "labels" / "zzz.txt").write_text("0 0.5 0.5 0.1 0.1\n")
    ds = load_dataset(root)
    a = by_name(ds)["a.jpg"]
    np.testing.assert_allclose(a.boxes, [[10, 7.5, 30, 22.5], [28, 12, 40, 18]], atol=1e-4)
    r = ds.report
    assert (r.kept, r.clipped, r.dropped) == (2, 1, 4)
    lines = sorted(p.line for p in r.problems if p.file.name == "a.txt")
    assert lines == [2, 3, 4, 5, 6]
    text = "\n".join(map(str, r.problems))
    assert "a.txt:2: class id 5 is out of range 0..1" in text
    assert "a.txt:3: malformed line" in text
    assert "a.txt:4: box has NaN/inf" in text
    assert "a.txt:6: degenerate box" in text
    assert "zzz.txt: label file without an image" in text
    with pytest.raises(DataError, match=r"a\.txt:3: malformed line"):
        load_dataset(root, strict=True)


def test_voc_difficult_is_ignore_and_splits(tmp_path):
    root = build_voc(tmp_path / "v", splits={"train": ["img0", "img1"], "val": ["img2"], "test": ["img3"]})
    ds = load_dataset(root)
    assert (ds.format, ds.class_names) == ("voc", ["cat", "dog"])
    assert [[r.path.name for r in ds.splits[s]] for s in ("train", "val", "test")] == [
        ["img0.jpg", "img1.jpg"], ["img2.jpg"], ["img3.jpg"]]
    img0 = ds.splits["train"][0]
    np.testing.assert_array_equal(img0.boxes, [[1, 2, 11, 12], [10, 5, 30, 25]])
    assert img0.labels.tolist() == [1, 0] and img0.ignore.tolist() == [True, False]


def test_voc_trainval_is_carved_deterministically(tmp_path):
    root = build_voc(tmp_path / "v", splits={"trainval": ["img0", "img1", "img2"], "test": ["img3"]})
    a = load_dataset(root, val_fraction=0.34, seed=3)
    b = load_dataset(root, val_fraction=0.34, seed=3)
    assert (len(a.splits["train"]), len(a.splits["val"]), len(a.splits["test"])) == (2, 1, 1)
    assert [r.path for r in a.splits["val"]] == [r.path for r in b.splits["val"]]
    assert {r.path.name for r in a.splits["train"] + a.splits["val"]} == {"img0.jpg", "img1.jpg", "img2.jpg"}


def test_voc_missing_image_and_unknown_class(tmp_path):
    root = build_voc(tmp_path / "v")
    (root / "JPEGImages" / "img2.jpg").unlink()
    (root / "classes.txt").write_text("cat\n")
    ds = load_dataset(root)
    r = ds.report
    # img2 skipped (its cat dropped), img0's dog unknown (dropped)
    assert (r.images, r.skipped_images, r.kept, r.dropped) == (3, 1, 3, 2)
    text = "\n".join(map(str, r.problems))
    assert "img2.xml: image img2.jpg not found" in text
    assert "img0.xml: class 'dog' is not in the class list" in text


def test_coco_ids_crowd_and_split_names(coco_dir):
    ds = load_dataset(coco_dir)
    assert (ds.format, ds.class_names, ds.category_ids) == ("coco", ["cat", "dog"], [3, 7])
    t1, t2 = ds.splits["train"]
    np.testing.assert_array_equal(t1.boxes, [[1, 2, 11, 10], [0, 0, 40, 30]])
    assert t1.labels.tolist() == [1, 0] and t1.ignore.tolist() == [False, True] and t1.image_id == 1
    assert t2.num_boxes == 0
    (v1,) = ds.splits["val"]
    np.testing.assert_array_equal(v1.boxes, [[30, 20, 40, 30]])  # clipped from 50x40
    r = ds.report
    assert (r.images, r.negatives, r.kept, r.clipped, r.dropped) == (3, 1, 3, 1, 0)


def test_coco_missing_image_and_bad_annotation(coco_dir):
    f = coco_dir / "annotations" / "instances_train2017.json"
    doc = json.loads(f.read_text())
    doc["images"].append({"id": 9, "file_name": "gone.jpg", "width": 40, "height": 30})
    doc["annotations"].append({"id": 50, "image_id": 2, "category_id": 99, "bbox": [1, 1, 5, 5]})
    doc["annotations"].append({"id": 51, "image_id": 2, "category_id": 3, "bbox": [1, 1, 5]})
    f.write_text(json.dumps(doc))
    r = load_dataset(coco_dir).report
    text = "\n".join(map(str, r.problems))
    assert "image 'gone.jpg' (id 9) not found" in text
    assert "annotation 50: category_id 99" in text and "annotation 51: bbox must be" in text
    assert (r.skipped_images, r.dropped) == (1, 2)


def test_csv_rows_negatives_and_class_map(csv_dir):
    ds = load_dataset(csv_dir)
    assert (ds.format, ds.class_names) == ("csv", ["cat", "dog"])
    recs = by_name(ds)
    np.testing.assert_array_equal(recs["a.png"].boxes, [[1, 2, 11, 12], [5, 5, 20, 25]])
    assert recs["a.png"].labels.tolist() == [0, 1]
    assert recs["b.png"].num_boxes == 0
    assert (ds.report.images, ds.report.negatives, ds.report.kept) == (3, 1, 3)


def test_csv_broken_rows(tmp_path):
    rows = (
        "imgs/a.png,1,2,11,12,cat\n"  # 1 ok
        "../../etc/passwd,1,1,5,5,cat\n"  # 2 escapes the root
        "imgs/a.png,1,2,x,12,cat\n"  # 3 not a number
        "imgs/missing.png,1,1,5,5,cat\n"  # 4 missing image
        "imgs/a.png,1,2,11,12,bird\n"  # 5 unknown class
        "imgs/c.png,1,2\n"  # 6 wrong field count
        "imgs/c.png,3,3,3,9,dog\n"  # 7 degenerate
    )
    root = build_csv(tmp_path / "c", rows)
    ds = load_dataset(root)
    text = "\n".join(map(str, ds.report.problems))
    for needle in (
        "annotations.csv:2: image path '../../etc/passwd' leaves the dataset folder",
        "annotations.csv:3: malformed row",
        "annotations.csv:4: image file not found",
        "annotations.csv:5: class 'bird' is not in classes.csv",
        "annotations.csv:6: malformed row: expected",
        "annotations.csv:7: degenerate box",
    ):
        assert needle in text
    assert all("passwd" not in str(r.path) for r in ds.records())
    assert sorted(by_name(ds)) == ["a.png", "c.png"]  # c.png kept as a negative (its only box was degenerate)
    with pytest.raises(DataError, match=r"annotations\.csv:2: image path"):
        load_dataset(root, strict=True)


def test_detect_and_errors(tmp_path, voc_dir, csv_dir, coco_dir):
    assert detect_format(voc_dir)[0] == "voc" and detect_format(csv_dir)[0] == "csv"
    assert detect_format(coco_dir)[0] == "coco"
    assert load_dataset(coco_dir / "annotations" / "instances_val2017.json").format == "coco"
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="cannot tell the dataset format"):
        load_dataset(tmp_path / "empty")
    with pytest.raises(DataError, match="no such file"):
        load_dataset(tmp_path / "nope")
    with pytest.raises(DataError, match="unknown dataset format 'pascal'"):
        load_dataset(voc_dir, format="pascal")
