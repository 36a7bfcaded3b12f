"""A folder holding two layouts: the one used is said, with counts of what is ignored and the
``--format`` that picks it; an explicit ``--format`` reads only that layout, without the warning."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from retina_cli.cli import app as app_module
from retina_cli.data import load_dataset
from retina_cli.errors import DataError

from conftest import build_coco, build_csv, build_voc, build_yolo


def mixing_warnings(ds) -> list[str]:
    return [p.message for p in ds.report.problems if p.message.startswith("found ")]


def test_voc_beside_yolo_uses_voc_and_says_so_with_counts(tmp_path):
    root = build_voc(build_yolo(tmp_path / "mixed"))  # 4 VOC xml files, 2 YOLO label files (a.txt, c.txt)
    ds = load_dataset(root)
    assert ds.format == "voc"
    first = ds.report.problems[0]
    assert first.file == root and first.line is None
    assert first.message == (
        "found 4 Pascal VOC XML files and 2 YOLO label files; using Pascal VOC, ignoring the 2 YOLO label files; "
        "pass --format yolo to use those instead (or --format voc to keep this choice without this warning)"
    )
    assert "also found YOLO files, ignored" in ds.detected_by
    assert sorted(r.path.name for r in ds.records()) == ["img0.jpg", "img1.jpg", "img2.jpg", "img3.jpg"]


@pytest.mark.parametrize("fmt, names", [("yolo", ["a.jpg", "b.jpg", "c.jpg"]),
                                        ("voc", ["img0.jpg", "img1.jpg", "img2.jpg", "img3.jpg"])])
def test_an_explicit_format_reads_that_layout_without_the_warning(tmp_path, fmt, names):
    root = build_voc(build_yolo(tmp_path / "mixed"))
    ds = load_dataset(root, format=fmt)
    assert ds.format == fmt and ds.detected_by == "forced with --format"
    assert mixing_warnings(ds) == [] and ds.report.problems == []
    assert sorted(r.path.name for r in ds.records()) == names


def test_coco_json_beside_yolo_txt_names_the_json_files(tmp_path):
    root = build_yolo(build_coco(tmp_path / "mixed"))
    ds = load_dataset(root)
    assert ds.format == "yolo"
    (msg,) = mixing_warnings(ds)
    assert msg.startswith("found 2 YOLO label files and 2 COCO json files (instances_train2017.json, "
                          "instances_val2017.json); using YOLO, ignoring the 2 COCO json files")
    assert "pass --format coco to use those instead" in msg
    coco = load_dataset(root, format="coco")
    assert mixing_warnings(coco) == [] and sorted(r.image_id for r in coco.records()) == [1, 2, 5]


def test_three_layouts_name_every_ignored_one(tmp_path):
    root = build_csv(build_voc(build_yolo(tmp_path / "mixed")))
    (msg,) = mixing_warnings(load_dataset(root))
    assert msg.startswith("found 4 Pascal VOC XML files, 2 YOLO label files and 1 annotation CSV file; using Pascal "
                          "VOC, ignoring the 2 YOLO label files and 1 annotation CSV file; "
                          "pass --format yolo or --format csv to use those instead")


def test_strict_mode_refuses_a_mixed_folder_naming_the_flag(tmp_path):
    root = build_voc(build_yolo(tmp_path / "mixed"))
    with pytest.raises(DataError, match=r"found 4 Pascal VOC XML files and 2 YOLO label files.*--format yolo"):
        load_dataset(root, strict=True)
    assert load_dataset(root, format="voc", strict=True).format == "voc"


def test_one_layout_is_not_warned_about(yolo_dir, voc_dir):
    for root in (yolo_dir, voc_dir):
        assert mixing_warnings(load_dataset(root)) == []
        assert "also found" not in load_dataset(root).detected_by


def test_data_info_prints_the_mixing_warning(tmp_path):
    app_module._register()
    root = build_voc(build_yolo(tmp_path / "mixed"))
    res = CliRunner().invoke(app_module.app, ["data", "info", str(root)], env={"COLUMNS": "400"})
    assert res.exit_code == 0, res.output
    out = " ".join(res.output.split())
    assert "format voc (found Annotations/*.xml (Pascal VOC); also found YOLO files, ignored" in out
    assert "warning: " in out and "ignoring the 2 YOLO label files; pass --format yolo" in out
    res = CliRunner().invoke(app_module.app, ["data", "info", str(root), "--format", "yolo"], env={"COLUMNS": "400"})
    assert res.exit_code == 0 and "ignoring" not in res.output
