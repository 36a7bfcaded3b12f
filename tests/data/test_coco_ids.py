"""COCO ids that do not match one to one are reported, never silently merged or dropped."""

from __future__ import annotations

import json

import pytest

from retina_cli.data import load_dataset
from retina_cli.errors import DataError

from conftest import write_image

CATS = [{"id": 3, "name": "cat"}, {"id": 7, "name": "dog"}]


def coco(tmp_path, images, anns, cats=CATS):
    """A COCO folder: images/{a,b,c}.jpg (40x30) and annotations/instances_train.json."""
    root = tmp_path / "coco"
    for n in "abc":
        write_image(root / "images" / f"{n}.jpg")
    (root / "annotations").mkdir(parents=True)
    f = root / "annotations" / "instances_train.json"
    f.write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}))
    return root, f


def ann(aid, image_id, cat=3, bbox=(1, 1, 10, 10)):
    return {"id": aid, "image_id": image_id, "category_id": cat, "bbox": list(bbox), "iscrowd": 0}


def texts(ds):
    return [str(p) for p in ds.report.problems]


def test_a_duplicate_image_id_drops_both_images_and_their_annotations(tmp_path):
    images = [{"id": 1, "file_name": "a.jpg"}, {"id": 1, "file_name": "b.jpg"}, {"id": 2, "file_name": "c.jpg"}]
    root, f = coco(tmp_path, images, [ann(10, 1), ann(11, 2)])
    ds = load_dataset(root)
    assert [r.path.name for r in ds.records()] == ["c.jpg"]  # the annotation of id 1 is on no image
    assert texts(ds) == [f"{f}: duplicate image id 1: used by 'a.jpg' and 'b.jpg'; its annotations cannot be told "
                         f"apart, so these 2 images and 1 annotations are dropped"]
    r = ds.report
    assert (r.images, r.skipped_images, r.kept, r.dropped) == (1, 2, 1, 1)
    with pytest.raises(DataError, match=r"instances_train\.json: duplicate image id 1: used by 'a\.jpg' and 'b\.jpg'"):
        load_dataset(root, strict=True)


def test_the_same_image_listed_twice_under_one_id_is_kept_once(tmp_path):
    images = [{"id": 1, "file_name": "a.jpg"}, {"id": 1, "file_name": "a.jpg"}]
    root, f = coco(tmp_path, images, [ann(10, 1)])
    ds = load_dataset(root, val_fraction=0.0)
    assert [(r.path.name, r.num_boxes) for r in ds.records()] == [("a.jpg", 1)]
    assert texts(ds) == [f"{f}: image id 1 ('a.jpg') is listed twice; the later entry is ignored; image skipped"]
    assert (ds.report.skipped_images, ds.report.dropped) == (1, 0)


def test_one_file_under_two_ids_keeps_the_first(tmp_path):
    images = [{"id": 1, "file_name": "a.jpg"}, {"id": 2, "file_name": "a.jpg"}, {"id": 3, "file_name": "b.jpg"}]
    root, f = coco(tmp_path, images, [ann(10, 1), ann(11, 2), ann(12, 2)])
    ds = load_dataset(root)
    assert sorted((r.image_id, r.num_boxes) for r in ds.records()) == [(1, 1), (3, 0)]
    assert texts(ds) == [f"{f}: image 'a.jpg' is listed under ids 1 and 2; the entry with id 2 is ignored; "
                         f"image skipped, its 2 annotations dropped"]
    assert (ds.report.skipped_images, ds.report.dropped) == (1, 2)


def test_duplicate_annotation_ids(tmp_path):
    images = [{"id": 1, "file_name": "a.jpg"}, {"id": 2, "file_name": "b.jpg"}]
    copy, other = ann(10, 1), ann(10, 2, bbox=(5, 5, 10, 10))
    root, f = coco(tmp_path, images, [ann(10, 1), copy, other])
    ds = load_dataset(root)
    boxes = {r.image_id: r.num_boxes for r in ds.records()}
    assert boxes == {1: 1, 2: 1}  # the exact copy dropped, the different annotation kept
    assert texts(ds) == [
        f"{f}: duplicate annotation id 10: the same box is listed twice; the copy is dropped",
        f"{f}: duplicate annotation id 10: used by two different annotations (image_id 1 and 2); both kept, "
        f"give each a unique id",
    ]
    assert (ds.report.kept, ds.report.dropped) == (2, 1)


def test_missing_image_id_unknown_category_and_no_file_name(tmp_path):
    images = [{"id": 1, "file_name": "a.jpg"}, {"id": 2}, {"id": 3, "file_name": 17}, {"id": 4, "file_name": "b.jpg"}]
    anns = [ann(10, 1), ann(11, 1, cat=99), ann(12, 2), ann(13, 9), ann(14, 9), ann(15, 4)]
    root, f = coco(tmp_path, images, anns)
    ds = load_dataset(root)
    assert sorted((r.image_id, r.num_boxes) for r in ds.records()) == [(1, 1), (4, 1)]
    assert sorted(texts(ds)) == sorted([
        f"{f}: 2 annotations refer to image_id 9 which is not in 'images'; dropped",
        f"{f}: image id 2 has no 'file_name' (got None); image skipped, its 1 annotations dropped",
        f"{f}: image id 3 has no 'file_name' (got 17); image skipped",
        f"{f}: annotation 11: category_id 99 is not in 'categories'; dropped",
    ])
    r = ds.report
    assert (r.skipped_images, r.kept, r.dropped) == (2, 2, 4)


def test_a_category_id_listed_with_two_names(tmp_path):
    cats = CATS + [{"id": 3, "name": "kitten"}]
    root, f = coco(tmp_path, [{"id": 1, "file_name": "a.jpg"}], [ann(10, 1)], cats=cats)
    ds = load_dataset(root)
    assert ds.class_names == ["cat", "dog"]
    assert texts(ds) == [f"{f}: category id 3 is listed as 'cat' and as 'kitten'; using 'cat'"]


def test_string_image_ids_are_checked_the_same_way(tmp_path):
    images = [{"id": "x", "file_name": "a.jpg"}, {"id": "x", "file_name": "b.jpg"}, {"id": "y", "file_name": "c.jpg"}]
    root, f = coco(tmp_path, images, [ann(10, "x"), ann(11, "y")])
    ds = load_dataset(root)
    assert [r.path.name for r in ds.records()] == ["c.jpg"]
    assert "duplicate image id 'x': used by 'a.jpg' and 'b.jpg'" in texts(ds)[0]


def test_an_entry_without_file_name_beside_a_named_one_of_its_id_drops_nothing_twice(tmp_path):
    images = [{"id": 1, "file_name": "a.jpg"}, {"id": 1, "file_name": ""}]
    root, f = coco(tmp_path, images, [ann(10, 1)])
    ds = load_dataset(root, val_fraction=0.0)
    assert [(r.path.name, r.num_boxes) for r in ds.records()] == [("a.jpg", 1)]
    assert texts(ds) == [f"{f}: image id 1 has no 'file_name' (got ''); image skipped"]
    assert (ds.report.skipped_images, ds.report.kept, ds.report.dropped) == (1, 1, 0)
