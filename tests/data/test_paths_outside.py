"""One rule for every layout: a path taken from the dataset (image, label file, list line, yaml
entry, COCO file_name, CSV path) is resolved, symlinks included, and must lie inside the dataset
folder. Outside it is refused and reported per item (skipped, counted); links inside are followed.

Every test puts a real, readable image (and label file) outside the dataset, so that a refusal
cannot be mistaken for "file not found".
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from retina_cli.data import load_dataset
from retina_cli.data.validate import inside_root
from retina_cli.errors import DataError

from conftest import build_coco, build_csv, build_voc, build_yolo, write_image


@pytest.fixture
def outside(tmp_path):
    """Files next to (not inside) every dataset: an image, a YOLO label, a VOC xml, a json."""
    d = tmp_path / "outside"
    write_image(d / "secret.jpg", 20, 20)
    (d / "secret.txt").write_text("0 0.5 0.5 0.5 0.5\n")
    (d / "secret.xml").write_text("<annotation><filename>secret.jpg</filename><object><name>cat</name><bndbox>"
                                  "<xmin>1</xmin><ymin>1</ymin><xmax>9</xmax><ymax>9</ymax></bndbox></object></annotation>")
    return d


def names(ds) -> list[str]:
    return sorted(r.path.name for r in ds.records())


def problems(ds) -> str:
    return "\n".join(map(str, ds.report.problems))


def no_secret(ds) -> None:
    assert all("outside" not in r.path.resolve().parts for r in ds.records())


# ---- the rule itself -------------------------------------------------------------------------

def test_inside_root_resolves_links_and_keeps_the_name(tmp_path, outside):
    root = tmp_path / "ds"
    write_image(root / "a.jpg")
    (root / "in.jpg").symlink_to(root / "a.jpg")
    (root / "out.jpg").symlink_to(outside / "secret.jpg")
    assert inside_root(root, "in.jpg") == root / "in.jpg"  # followed, but the dataset's own name is kept
    assert inside_root(root, str(root / "a.jpg")) == root / "a.jpg"  # absolute inside: fine
    assert inside_root(root, "out.jpg") is None
    assert inside_root(root, "../outside/secret.jpg") is None
    assert inside_root(root, str(outside / "secret.jpg")) is None
    assert inside_root(root, "sub/../a.jpg") == root / "a.jpg"
    assert inside_root(root, "a.jpg\x00") == root / "a.jpg\x00"  # unreadable, but not outside: "not found" later
    (tmp_path / "link_to_ds").symlink_to(root)  # the root given through a link is resolved too
    assert inside_root(tmp_path / "link_to_ds", "a.jpg") == tmp_path / "link_to_ds" / "a.jpg"


# ---- YOLO ------------------------------------------------------------------------------------

def yolo_with_list(tmp_path, lines: list[str]) -> Path:
    root = build_yolo(tmp_path / "yolo")
    (root / "list.txt").write_text("".join(f"{ln}\n" for ln in lines))
    (root / "data.yaml").write_text("names: [cat, dog]\ntrain: list.txt\nval: images\n")
    return root


def test_yolo_list_lines_leaving_the_dataset_are_skipped(tmp_path, outside):
    root = yolo_with_list(tmp_path, ["images/a.jpg", "../outside/secret.jpg", str(outside / "secret.jpg"), "/etc/passwd"])
    ds = load_dataset(root)
    no_secret(ds)
    text = problems(ds)
    for line, path in ((2, "../outside/secret.jpg"), (3, str(outside / "secret.jpg")), (4, "/etc/passwd")):
        assert f"list.txt:{line}: image path {path!r} leaves the dataset folder {root} (a path or link" in text
    assert ds.report.skipped_images == 3
    assert [r.path.name for r in ds.splits["train"]] == ["a.jpg"]


def test_yolo_yaml_entries_leaving_the_dataset_are_errors(tmp_path, outside):
    root = build_yolo(tmp_path / "yolo")
    for entry in ("../outside", str(outside)):
        (root / "data.yaml").write_text(f"names: [cat, dog]\ntrain: {entry}\n")
        with pytest.raises(DataError, match=rf"data\.yaml: train: '{entry}' leaves the dataset folder .*set 'path:'"):
            load_dataset(root)


def test_yolo_path_key_makes_its_folder_the_root(tmp_path):
    """ultralytics yamls often name their dataset with an absolute ``path:``: that folder is the root."""
    data = build_yolo(tmp_path / "elsewhere" / "data")
    (data / "data.yaml").unlink()
    cfg = tmp_path / "configs"
    cfg.mkdir()
    (cfg / "data.yaml").write_text(f"path: {data}\ntrain: images\nval: images\nnames: [cat, dog]\n")
    ds = load_dataset(cfg / "data.yaml")
    assert ds.root == data and f"dataset root {data}" in ds.detected_by
    assert sorted({r.path.name for r in ds.records()}) == ["a.jpg", "b.jpg", "c.jpg"]
    (cfg / "data.yaml").write_text(f"path: {data}\ntrain: ../../configs\nnames: [cat, dog]\n")  # leaves the declared root
    with pytest.raises(DataError, match="leaves the dataset folder"):
        load_dataset(cfg / "data.yaml")


def test_yolo_roboflow_parent_entries_are_read_inside(tmp_path):
    """Roboflow exports say ``train: ../train/images`` next to train/; like ultralytics, it is read as train/images."""
    root = tmp_path / "rf"
    for split in ("train", "valid"):
        write_image(root / split / "images" / f"{split}.jpg")
        (root / split / "labels").mkdir(parents=True)
        (root / split / "labels" / f"{split}.txt").write_text("0 0.5 0.5 0.5 0.5\n")
    (root / "data.yaml").write_text("names: [cat]\ntrain: ../train/images\nval: ../valid/images\n")
    ds = load_dataset(root)
    assert [r.path.name for r in ds.splits["train"]] == ["train.jpg"] and ds.splits["train"][0].num_boxes == 1
    assert [r.path.name for r in ds.splits["val"]] == ["valid.jpg"]


def test_yolo_symlinked_image_and_label_outside_are_refused(tmp_path, outside):
    root = build_yolo(tmp_path / "yolo")
    (root / "images" / "x.jpg").symlink_to(outside / "secret.jpg")
    (root / "labels" / "a.txt").unlink()
    (root / "labels" / "a.txt").symlink_to(outside / "secret.txt")
    ds = load_dataset(root)
    no_secret(ds)
    assert names(ds) == ["b.jpg", "c.jpg"]
    text = problems(ds)
    assert f"{root / 'images' / 'x.jpg'}: image 'x.jpg' leaves the dataset folder {root}" in text
    assert f"{root / 'labels' / 'a.txt'}: label file of 'a.jpg' leaves the dataset folder {root}" in text
    assert ds.report.skipped_images == 2


def test_yolo_symlinked_image_folder_outside_is_refused(tmp_path, outside):
    root = build_yolo(tmp_path / "yolo", yaml=False)  # splits from images/<split>/ folders
    (root / "images" / "train").mkdir()
    for n in "abc":
        os.replace(root / "images" / f"{n}.jpg", root / "images" / "train" / f"{n}.jpg")
    (root / "images" / "val").symlink_to(outside, target_is_directory=True)
    ds = load_dataset(root)
    no_secret(ds)
    assert f"{root / 'images' / 'val' / 'secret.jpg'}: image 'secret.jpg' leaves the dataset folder {root}" in problems(ds)
    (root / "data.yaml").write_text("names: [cat, dog]\ntrain: images/train\nval: images/val\n")
    with pytest.raises(DataError, match=r"data\.yaml: val: 'images/val' leaves the dataset folder"):
        load_dataset(root)


def test_yolo_symlinks_inside_are_followed(tmp_path):
    root = build_yolo(tmp_path / "yolo")
    write_image(root / "store" / "y.jpg")
    (root / "store" / "y.txt").write_text("1 0.5 0.5 0.5 0.5\n")
    (root / "images" / "y.jpg").symlink_to(root / "store" / "y.jpg")
    (root / "labels" / "y.txt").symlink_to(Path("..") / "store" / "y.txt")  # a relative link too
    ds = load_dataset(root)
    y = {r.path.name: r for r in ds.records()}["y.jpg"]
    assert y.path == root / "images" / "y.jpg" and y.labels.tolist() == [1]
    assert ds.report.problems == []


# ---- Pascal VOC ------------------------------------------------------------------------------

def test_voc_list_ids_leaving_the_dataset_are_skipped(tmp_path, outside):
    root = build_voc(tmp_path / "voc", splits={"val": ["img0"]})
    (root / "ImageSets" / "Main" / "train.txt").write_text(f"img1\n../../../outside/secret\n{outside / 'secret'}\n")
    ds = load_dataset(root)
    no_secret(ds)
    text = problems(ds)
    assert f"train.txt:2: annotation '../../../outside/secret.xml' leaves the dataset folder {root}" in text
    assert f"train.txt:3: annotation '{outside / 'secret.xml'}' leaves the dataset folder {root}" in text
    assert [r.path.name for r in ds.splits["train"]] == ["img1.jpg"]
    assert ds.report.skipped_images == 2


def test_voc_symlinked_xml_and_image_outside_are_refused(tmp_path, outside):
    root = build_voc(tmp_path / "voc")
    (root / "Annotations" / "img9.xml").symlink_to(outside / "secret.xml")
    (root / "JPEGImages" / "img1.jpg").unlink()
    (root / "JPEGImages" / "img1.jpg").symlink_to(outside / "secret.jpg")
    ds = load_dataset(root)
    no_secret(ds)
    assert names(ds) == ["img0.jpg", "img2.jpg", "img3.jpg"]
    text = problems(ds)
    assert f"{root / 'Annotations' / 'img9.xml'}: annotation 'img9.xml' leaves the dataset folder {root}" in text
    assert f"{root / 'Annotations' / 'img1.xml'}: image 'img1.jpg' leaves the dataset folder {root}" in text
    assert (ds.report.skipped_images, ds.report.dropped) == (2, 1)  # img1's one box dropped with it


def test_voc_filename_with_a_path_is_not_followed(tmp_path, outside):
    root = build_voc(tmp_path / "voc")
    xml = root / "Annotations" / "img2.xml"
    for filename in ("../../outside/secret.jpg", str(outside / "secret.jpg")):
        xml.write_text(xml.read_text().split("</filename>", 1)[0].split("<filename>")[0]
                       + f"<filename>{filename}</filename>" + xml.read_text().split("</filename>", 1)[1])
        ds = load_dataset(root)
        no_secret(ds)
        img2 = {r.path.name: r for r in ds.records()}["img2.jpg"]  # found by the xml's stem, inside
        assert img2.path == root / "JPEGImages" / "img2.jpg"


def test_voc_list_file_linked_outside_is_an_error(tmp_path, outside):
    root = build_voc(tmp_path / "voc", splits={"val": ["img0"]})
    (outside / "train.txt").write_text("img1\n")
    (root / "ImageSets" / "Main" / "train.txt").symlink_to(outside / "train.txt")
    with pytest.raises(DataError, match=r"train\.txt: leaves the dataset folder"):
        load_dataset(root)


def test_voc_symlinks_inside_are_followed(tmp_path):
    root = build_voc(tmp_path / "voc")
    (root / "store").mkdir()
    os.replace(root / "JPEGImages" / "img1.jpg", root / "store" / "img1.jpg")
    (root / "JPEGImages" / "img1.jpg").symlink_to(root / "store" / "img1.jpg")
    (root / "Annotations" / "img4.xml").symlink_to(root / "Annotations" / "img0.xml")  # same boxes, img0.jpg
    ds = load_dataset(root)
    assert ds.report.problems == []
    assert sorted(r.path.name for r in ds.records()) == ["img0.jpg", "img0.jpg", "img1.jpg", "img2.jpg", "img3.jpg"]


# ---- COCO ------------------------------------------------------------------------------------

def coco_with_val_images(root: Path, file_names: list[str]) -> Path:
    f = root / "annotations" / "instances_val2017.json"
    doc = json.loads(f.read_text())
    doc["images"] = [{"id": 5 + k, "file_name": n, "width": 40, "height": 30} for k, n in enumerate(file_names)]
    doc["annotations"] = [{"id": 1, "image_id": 6, "category_id": 3, "bbox": [1, 1, 5, 5]}]
    f.write_text(json.dumps(doc))
    return f


def test_coco_file_names_leaving_the_dataset_are_skipped(tmp_path, outside):
    root = build_coco(tmp_path / "coco")
    f = coco_with_val_images(root, ["v1.jpg", "../../outside/secret.jpg", str(outside / "secret.jpg"), "link.jpg"])
    (root / "val2017" / "link.jpg").symlink_to(outside / "secret.jpg")
    ds = load_dataset(root)
    no_secret(ds)
    text = problems(ds)
    assert f"{f}: image '../../outside/secret.jpg' (id 6) leaves the dataset folder {root}" in text
    assert f"{f}: image {str(outside / 'secret.jpg')!r} (id 7) leaves the dataset folder {root}" in text
    assert f"{f}: image 'link.jpg' (id 8) leaves the dataset folder {root}" in text
    assert [r.path.name for r in ds.splits["val"]] == ["v1.jpg"]
    assert ds.report.skipped_images == 3 and ds.report.dropped == 1  # id 6's annotation


def test_coco_json_linked_outside_is_an_error_unless_named(tmp_path, outside):
    root = build_coco(tmp_path / "coco")
    f = root / "annotations" / "instances_val2017.json"
    os.replace(f, outside / "instances_val2017.json")
    f.symlink_to(outside / "instances_val2017.json")
    with pytest.raises(DataError, match=r"instances_val2017\.json: leaves the dataset folder"):
        load_dataset(root)
    assert [r.path.name for r in load_dataset(f).records()] == ["v1.jpg"]  # the file given is taken as given


def test_coco_symlinks_inside_are_followed(tmp_path):
    root = build_coco(tmp_path / "coco")
    coco_with_val_images(root, ["v1.jpg", "again.jpg"])
    (root / "val2017" / "again.jpg").symlink_to(root / "train2017" / "t1.jpg")
    ds = load_dataset(root)
    assert [(r.path.name, r.num_boxes) for r in ds.splits["val"]] == [("v1.jpg", 0), ("again.jpg", 1)]
    assert "leaves" not in problems(ds)


# ---- keras-retinanet CSV ---------------------------------------------------------------------

def test_csv_paths_and_links_leaving_the_dataset_are_skipped(tmp_path, outside):
    root = tmp_path / "csv"
    rows = (f"imgs/a.png,1,2,11,12,cat\n../outside/secret.jpg,1,1,5,5,cat\n{outside / 'secret.jpg'},1,1,5,5,cat\n"
            f"imgs/link.jpg,1,1,5,5,cat\nimgs/inside.png,1,1,5,5,dog\n")
    build_csv(root, rows)
    (root / "imgs" / "link.jpg").symlink_to(outside / "secret.jpg")
    (root / "imgs" / "inside.png").symlink_to(root / "imgs" / "c.png")
    ds = load_dataset(root)
    no_secret(ds)
    text = problems(ds)
    for line, path in ((2, "../outside/secret.jpg"), (3, str(outside / "secret.jpg")), (4, "imgs/link.jpg")):
        assert f"annotations.csv:{line}: image path {path!r} leaves the dataset folder {root}" in text
    assert names(ds) == ["a.png", "inside.png"]  # the link inside is followed
    assert ds.report.skipped_images == 3


def test_csv_annotation_file_linked_outside_is_an_error(tmp_path, outside):
    root = build_csv(tmp_path / "csv")
    os.replace(root / "annotations.csv", outside / "annotations.csv")
    (root / "annotations.csv").symlink_to(outside / "annotations.csv")
    with pytest.raises(DataError, match=r"annotations\.csv: leaves the dataset folder"):
        load_dataset(root)
