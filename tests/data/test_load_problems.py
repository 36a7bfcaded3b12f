"""The YOLO reader reports every kind of problem exactly as the per-image reader it replaced did:
the same messages, files, lines, order and counts, read serially or by the process pool."""

from __future__ import annotations

import multiprocessing
import os
from pathlib import Path

import numpy as np
import pytest

from retina_cli.data import load_dataset
from retina_cli.data.formats import read_text, yolo
from retina_cli.data.images import is_image
from retina_cli.data.report import ValidationReport
from retina_cli.data.validate import inside_root, is_dir, is_file, make_record, skip_outside
from retina_cli.errors import DataError
from conftest import write_image

A_TXT = """0 0.5 0.5 0.2 0.2
0 0.5 0.5
1 x 0.5 0.2 0.2
1.5 0.5 0.5 0.2 0.2
-1 0.5 0.5 0.2 0.2

7 0.5 0.5 0.2 0.2
0 nan 0.5 0.2 0.2
0 1.7 0.5 0.1 0.1
1 0.95 0.5 0.2 0.2
0 0.1 0.1 0.3 0.1 0.3 0.3
"""

LINK = "image 'link.jpg' leaves the dataset folder {root} (a path or link to a file outside it); skipped"
A_PROBLEMS = [
    ("labels/a.txt", 2, "malformed line: expected 'class cx cy w h' (5 numbers), got 3 fields; line skipped"),
    ("labels/a.txt", 3, "malformed line: not numbers: '1 x 0.5 0.2 0.2'; line skipped"),
    ("labels/a.txt", 4, "malformed line: class id '1.5' is not an integer; line skipped"),
    ("labels/a.txt", 5, "class id '-1' is out of range; line skipped"),
    ("labels/a.txt", 8, "box has NaN/inf coordinates [nan, 12.0, nan, 18.0]; box dropped"),
    ("labels/a.txt", 7, "class id 7 is out of range 0..1; box dropped (fix the id or the class list)"),
    ("labels/a.txt", 9, "degenerate box [66, 13.5, 70, 16.5] (x1 >= x2 or y1 >= y2 after clipping to 40x30); box dropped"),
    ("labels/a.txt", 10, "box [34, 12, 42, 18] extends outside the 40x30 image; clipped"),
    ("labels/c.txt", None, "label file of 'c.jpg' leaves the dataset folder {root} (a path or link to a file outside it); skipped"),
    ("labels/zero.txt", 1, "not a readable image (cannot identify image file '{root}/images/zero.jpg'): {root}/images/zero.jpg; image skipped"),
]
ORPHAN = "label file without an image (expected the same name under images/); labels ignored"


def build(tmp_path: Path) -> Path:
    """Every problem the YOLO reader reports, in a data.yaml whose train and val are one folder."""
    root = tmp_path / "y"
    for name in "abcdefg":
        write_image(root / "images" / f"{name}.jpg")
    (root / "images" / "zero.jpg").write_bytes(b"")  # unreadable
    labels = root / "labels"
    (labels / "sub").mkdir(parents=True)
    (labels / "zero.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    (labels / "a.txt").write_text(A_TXT)  # broken lines, bad classes, NaN, degenerate, clipped, polygon
    (labels / "b.txt").write_text("1 0.5 0.5 0.4 0.4\n")
    os.symlink(labels / "b.txt", labels / "d.txt")  # a link inside the root: followed
    (labels / "orphan.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    (labels / "sub" / "deep.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    (tmp_path / "outside.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    os.symlink(tmp_path / "outside.txt", labels / "c.txt")  # a label file outside the root
    write_image(tmp_path / "out.jpg")
    os.symlink(tmp_path / "out.jpg", root / "images" / "link.jpg")  # an image outside the root
    (root / "data.yaml").write_text("train: images\nval: images\nnames: [cat, dog]\n")
    return root


def old_reader(root: Path) -> tuple[ValidationReport, list]:
    """The reader before the batched one (an image at a time, Paths, rglob), for train and val =
    images/: the reference the new one must match."""
    report = ValidationReport()
    splits = []
    for _ in ("train", "val"):
        out = []
        for p in sorted(p for p in (root / "images").rglob("*") if is_image(p) and p.is_file()):
            if inside_root(root, p) is None:
                skip_outside(report, p, None, f"image {p.name!r}", root)
            else:
                out.append(p)
        splits.append(out)
    records, expected = [], set()
    for images in splits:
        for image in images:
            lab = yolo.label_path(image)
            expected.add(lab)
            has = is_file(lab)
            if has and inside_root(root, lab) is None:
                skip_outside(report, lab, None, f"label file of {image.name!r}", root)
                continue
            boxes, labels, lines = [], [], []
            for lineno, text in enumerate(read_text(lab, errors="replace").splitlines() if has else [], start=1):
                if not text.split():
                    continue
                parsed = yolo._parse_line(text.split())
                if isinstance(parsed, str):
                    report.warn(lab, lineno, f"{parsed}; line skipped")
                    report.dropped += 1
                    continue
                boxes.append(parsed[1])
                labels.append(parsed[0])
                lines.append(lineno)
            rec = make_record(image, np.asarray(boxes, np.float64).reshape(-1, 4), np.asarray(labels, np.int64),
                              np.zeros(len(labels), bool), 2, report, label_file=lab if has else image, lines=lines,
                              normalized=True)
            if rec is not None:
                records.append(rec)
    labels_dir = root / "labels"
    if is_dir(labels_dir):
        for lab in sorted(labels_dir.rglob("*.txt")):
            if lab not in expected and lab.name != "classes.txt":
                report.warn(lab, None, ORPHAN)
    return report, records


@pytest.fixture(params=["serial", "pool"])
def mode(request, monkeypatch):
    if request.param == "pool":  # tiny chunks, so that images of one folder land in several workers
        monkeypatch.setattr(yolo, "POOL_FROM", 0)
        monkeypatch.setattr(yolo, "CHUNK", 2)
    return request.param


def test_every_problem_is_reported_as_before(tmp_path, mode):
    root = build(tmp_path)
    ds = load_dataset(root)
    got = [(str(p.file.relative_to(root)), p.line, p.message) for p in ds.report.problems]
    once = [(f, line, m.format(root=root)) for f, line, m in [("images/link.jpg", None, LINK)]]
    per_split = [(f, line, m.format(root=root)) for f, line, m in A_PROBLEMS]
    orphans = [("labels/orphan.txt", None, ORPHAN), ("labels/sub/deep.txt", None, ORPHAN)]
    # train and val are the same folder: everything but the orphans is reported for each split
    assert got == once * 2 + per_split * 2 + orphans
    assert ds.report.summary_rows() == [
        ("images", 12), ("negative images (no boxes)", 6), ("skipped images", 6), ("boxes kept", 10),
        ("boxes clipped to the image", 2), ("boxes dropped", 16), ("problems", 24),
    ]
    ref, ref_records = old_reader(root)
    assert ds.report == ref
    records = ds.splits["train"] + ds.splits["val"]
    assert [r.path for r in records] == [r.path for r in ref_records]
    for r, old in zip(records, ref_records):
        assert (r.width, r.height) == (old.width, old.height) == (40, 30)
        np.testing.assert_array_equal(r.boxes, old.boxes)
        np.testing.assert_array_equal(r.labels, old.labels)
        assert r.boxes.dtype == np.float32 and r.labels.dtype == np.int64 and r.ignore.dtype == bool
    a = next(r for r in records if r.path.name == "a.jpg")
    np.testing.assert_allclose(a.boxes, [[16, 12, 24, 18], [34, 12, 40, 18], [4, 3, 12, 9]], rtol=1e-6)
    assert a.labels.tolist() == [0, 1, 0]
    assert ds.splits["train"][0] is not ds.splits["val"][0]  # one record per split, as before


def test_strict_stops_at_the_first_problem(tmp_path, mode):
    root = build(tmp_path)
    (root / "images" / "link.jpg").unlink()
    with pytest.raises(DataError) as err:
        load_dataset(root, strict=True)
    assert str(err.value) == (f"{root}/labels/a.txt:2: malformed line: expected 'class cx cy w h' (5 numbers), got 3 "
                              f"fields; line skipped (strict mode: fix it, or run without --strict to skip it)")


def test_a_label_file_that_cannot_be_read_fails_in_its_turn(tmp_path, mode, monkeypatch):
    """The error of an unreadable label file comes after the problems of the images before it
    (strict mode stops there first), whichever worker read it."""
    root = build(tmp_path)
    (root / "images" / "link.jpg").unlink()
    (root / "labels" / "e.txt").write_text("0 0.5 0.5 0.2 0.2\n")

    def read(path, errors="strict"):  # as read_text says of a file it may not open
        if path.name == "e.txt":
            raise DataError(f"{path}: cannot be read (Permission denied); check the file and its permissions")
        return read_text(path, errors)

    if mode == "pool" and multiprocessing.get_start_method() != "fork":
        pytest.skip("the workers would not see the patched reader")
    monkeypatch.setattr(yolo, "read_text", read)  # forked workers see it too
    with pytest.raises(DataError, match=r"e\.txt: cannot be read"):
        load_dataset(root)
    with pytest.raises(DataError, match=r"a\.txt:2: malformed line"):
        load_dataset(root, strict=True)


def test_label_path_string_matches_label_path():
    for image in ("/d/images/a.jpg", "/d/images/x/images/b.c.png", "/d/imgs/a.jpg", "/images/a.jpg",
                  "rel/images/a.jpg", "a.jpg", "/d/images/..jpg", "/d/images/noext", "/d/images/.hidden"):
        assert yolo._label_str(image) == str(yolo.label_path(Path(image)))
