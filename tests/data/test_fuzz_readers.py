"""Fuzzing every label reader: whatever a label file holds, ``load_dataset`` either returns valid
records (problems counted in the report) or raises a RetinaError that names the file.

Each tiny dataset has one good image + label that is never touched, and one fuzzed file: bytes,
random text, lines of weird numbers, truncated or mutated valid files, JSON of the wrong types.
The dataset is built once per test and only the fuzzed file is rewritten per example, so the
whole module runs in about 15 s. Derandomized: a failure found here is a bug to fix, not luck.
"""

from __future__ import annotations

import json
from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from retina_cli.data import load_dataset
from retina_cli.data.images import image_size, read_image
from retina_cli.errors import RetinaError

from conftest import build_coco, build_csv, build_voc, build_yolo, write_image


def fuzz(n: int):
    return settings(max_examples=n, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def load_or_named_error(root: Path, fuzzed: Path, defines_classes: bool = False) -> None:
    """Load ``root`` leniently and strictly; a RetinaError must name ``fuzzed``, any other exception fails.

    defines_classes: ``fuzzed`` is the class list, so in strict mode a label file it no longer
    matches may be the first problem; that error names the label file instead.
    """
    for strict in (False, True):
        try:
            ds = load_dataset(root, strict=strict)
        except RetinaError as exc:
            named = fuzzed.name in str(exc) or (strict and defines_classes and "strict mode" in str(exc))
            assert named, f"{type(exc).__name__} does not name {fuzzed.name}: {exc}"
            continue
        check_dataset(ds)


def check_dataset(ds) -> None:
    """Every record is usable by training: finite boxes inside the image, labels in range, counts add up."""
    assert ds.num_classes >= 1
    recs = list({id(r): r for r in ds.records()}.values())  # a record listed twice (in two splits) counts once
    for r in recs:
        assert r.width > 0 and r.height > 0
        assert r.boxes.dtype == np.float32 and r.boxes.shape == (r.num_boxes, 4)
        assert r.labels.dtype == np.int64 and r.labels.shape == (r.num_boxes,) and r.ignore.shape == (r.num_boxes,)
        assert np.isfinite(r.boxes).all()
        assert (r.boxes >= 0).all() and (r.boxes[:, [0, 2]] <= r.width).all() and (r.boxes[:, [1, 3]] <= r.height).all()
        assert (r.boxes[:, 2] > r.boxes[:, 0]).all() and (r.boxes[:, 3] > r.boxes[:, 1]).all()
        assert ((r.labels >= 0) & (r.labels < ds.num_classes)).all()
    rep = ds.report
    assert rep.kept == sum(r.num_boxes for r in recs)
    assert rep.images == len(recs)
    if rep.dropped or rep.skipped_images or rep.clipped:
        assert rep.problems
    assert all(str(p) for p in rep.problems)


# ---- building blocks -------------------------------------------------------------------------

WEIRD_NUMBERS = [
    "0", "1", "-1", "0.5", "0.25", "2", "nan", "NaN", "-nan", "inf", "-inf", "Infinity", "1e309", "-1e309",
    "1e30", "1e19", "9223372036854775808", "-9223372036854775809", "1e-320", "-0", "1_0", "0x10", "+.5", ".",
    "", " ", "١", "²", "½", "1e5", "True", "null", "1,5", "0.5.5", "--1", "\x00", "\u2212" "1",
]
number = st.one_of(
    st.sampled_from(WEIRD_NUMBERS),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.floats(-0.5, 1.5).map(lambda v: f"{v:.3f}"),
    st.integers(-(10**25), 10**25).map(str),
)
word = st.text(max_size=10)
field = st.one_of(number, number, word)


def as_bytes(text: st.SearchStrategy[str]) -> st.SearchStrategy[bytes]:
    return text.map(lambda s: s.encode("utf-8"))


def variants_of(valid: bytes) -> st.SearchStrategy[bytes]:
    """Random bytes, a truncated ``valid``, and ``valid`` with a byte range overwritten."""
    n = len(valid)
    return st.one_of(
        st.binary(max_size=120),
        st.integers(0, n).map(lambda k: valid[:k]),
        st.tuples(st.integers(0, n), st.integers(0, 6), st.binary(max_size=6)).map(
            lambda t: valid[: t[0]] + t[2] + valid[t[0] + t[1]:]
        ),
    )


# ---- YOLO ------------------------------------------------------------------------------------

VALID_YOLO = b"0 0.5 0.5 0.5 0.5\n1 0.25 0.25 0.1 0.2\n1 0.1 0.1 0.2 0.1 0.2 0.2 0.1 0.2\n"
yolo_line = st.lists(field, max_size=9).map(" ".join)
yolo_labels = st.one_of(
    as_bytes(st.lists(yolo_line, max_size=5).map("\n".join)),
    as_bytes(st.text(max_size=80)),
    variants_of(VALID_YOLO),
)


@pytest.fixture(scope="module")
def yolo_root(tmp_path_factory):
    return build_yolo(tmp_path_factory.mktemp("fuzz") / "yolo")


@fuzz(250)
@given(content=yolo_labels)
@example(content=b"1e30 0.5 0.5 0.1 0.1\n")  # a class id too large for int64
@example(content=b"9223372036854775808 0.5 0.5 0.1 0.1\n")
@example(content=b"0 1e308 1e308 1e308 1e308\n")  # finite in the file, inf once scaled to pixels
@example(content=b"\xff\xfe0 0.5\x00 0.5 0.1 0.1\n")
def test_yolo_label_file(yolo_root, content):
    fuzzed = yolo_root / "labels" / "c.txt"
    fuzzed.write_bytes(content)
    load_or_named_error(yolo_root, fuzzed)


yaml_value = st.one_of(
    st.sampled_from(["images", "images/a.jpg", "nope", ".", "list.txt", "", "~", "[]", "{}", "0", "1.5", "null",
                     "[cat, dog]", "{0: cat, 1: dog}", "{1: cat}", "{a: cat}", "{null: cat}", "{0.5: cat}",
                     "{true: cat}", "{0: [x]}", "[[1, 2]]", "!!binary aGk=", "!!python/object:os.system {}",
                     "'../..'", "&a [*a]"]),
    st.text(max_size=12).map(json.dumps),
)
yaml_doc = st.lists(st.tuples(st.sampled_from(["names", "train", "val", "test", "path", "nc", "x"]), yaml_value),
                    max_size=5).map(lambda kv: "".join(f"{k}: {v}\n" for k, v in kv))
VALID_YAML = b"path: .\ntrain: images\nval: list.txt\nnames:\n  0: cat\n  1: dog\n"


@fuzz(120)
@given(content=st.one_of(as_bytes(yaml_doc), as_bytes(st.text(max_size=60)), variants_of(VALID_YAML)))
@example(content=b"names: []\n")
@example(content=b"names: {null: cat}\n")
@example(content=b"names: {0.5: cat}\n")
@example(content=b"names: [cat]\n\xff\n")
def test_yolo_data_yaml(tmp_path_factory, content):
    root = build_yolo(tmp_path_factory.mktemp("fuzz") / "yolo", yaml=False)
    (root / "classes.txt").unlink()
    (root / "list.txt").write_text("images/a.jpg\n")
    fuzzed = root / "data.yaml"
    fuzzed.write_bytes(content)
    load_or_named_error(root, fuzzed, defines_classes=True)


# ---- Pascal VOC ------------------------------------------------------------------------------

VOC_VALUE = st.one_of(number, word).map(escape)
voc_object = st.fixed_dictionaries(
    {},
    optional={
        "name": st.sampled_from(["cat", "dog", "", " cat ", "bird", "&lt;x&gt;"]),
        "difficult": st.sampled_from(["0", "1", "true", "", "x"]),
        "xmin": VOC_VALUE, "ymin": VOC_VALUE, "xmax": VOC_VALUE, "ymax": VOC_VALUE,
    },
).map(lambda d: "<object>" + "".join(
    f"<{k}>{v}</{k}>" for k, v in d.items() if k in ("name", "difficult")
) + "<bndbox>" + "".join(f"<{k}>{v}</{k}>" for k, v in d.items() if k.endswith(("min", "max"))) + "</bndbox></object>")
voc_filename = st.sampled_from(["img1.jpg", "img0.jpg", "", "../img1.jpg", "/etc/passwd", "JPEGImages/img1.jpg",
                                "img1", "nope.jpg", "..", "img1.jpg\u0301"]).map(escape)
voc_xml = st.tuples(voc_filename, st.lists(voc_object, max_size=4)).map(
    lambda t: f"<annotation><filename>{t[0]}</filename>{''.join(t[1])}</annotation>"
)
VALID_VOC = (b"<annotation><filename>img1.jpg</filename><object><name>cat</name><bndbox><xmin>1</xmin>"
             b"<ymin>2</ymin><xmax>30</xmax><ymax>20</ymax></bndbox></object></annotation>")


@pytest.fixture(scope="module")
def voc_root(tmp_path_factory):
    root = build_voc(tmp_path_factory.mktemp("fuzz") / "voc")
    (root / "classes.txt").write_text("cat\ndog\n")
    return root


@fuzz(250)
@given(content=st.one_of(as_bytes(voc_xml), as_bytes(voc_xml), as_bytes(st.text(max_size=80)), variants_of(VALID_VOC)))
@example(content=b'<?xml version="1.0" encoding="no-such-codec"?><annotation/>')
@example(content=b'<?xml version="1.0" encoding="latin-1"?><annotation><filename>\xe9.jpg</filename></annotation>')
@example(content=b"<annotation><object><bndbox><xmin>1</xmin></bndbox></object></annotation>")
@example(content=b"<annotation><object><name>cat</name><bndbox><xmin>0</xmin><ymin>0</ymin>"  # zero width in float32
                 b"<xmax>6.4e-100</xmax><ymax>1</ymax></bndbox></object></annotation>")
@example(content=b"<annotation><object><name>cat</name><bndbox><xmin>1e400</xmin><ymin>0</ymin>"
                 b"<xmax>5</xmax><ymax>5</ymax></bndbox></object></annotation>")
def test_voc_annotation(voc_root, content):
    fuzzed = voc_root / "Annotations" / "img1.xml"
    fuzzed.write_bytes(content)
    load_or_named_error(voc_root, fuzzed)


@fuzz(60)
@given(content=st.one_of(as_bytes(st.lists(st.sampled_from(
    ["img0", "img1", "img9", "../../etc/passwd", "../voc/Annotations/img1", "img1 1", " ", "img0 -1", "\t"]),
    max_size=4).map("\n".join)), st.binary(max_size=40)))
@example(content=b"../../../../../../etc/hostname\n")
def test_voc_split_list(tmp_path_factory, content):
    root = build_voc(tmp_path_factory.mktemp("fuzz") / "voc", splits={"val": ["img0"]})
    fuzzed = root / "ImageSets" / "Main" / "train.txt"
    fuzzed.write_bytes(content)
    load_or_named_error(root, fuzzed)


# ---- COCO ------------------------------------------------------------------------------------

json_scalar = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8), st.sampled_from([10**400, -(10**400), 0, -1, 1, 5, 7, 3, "t1.jpg", "v1.jpg"]),
)
json_any = st.recursive(json_scalar, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
    st.sampled_from(["id", "name", "bbox", "image_id", "file_name", "width", "height", "category_id", "x"]),
    inner, max_size=4), max_leaves=10)
maybe = lambda good: st.one_of(good, good, json_any)  # noqa: E731
coco_bbox = maybe(st.lists(maybe(st.one_of(st.integers(-5, 60), st.floats(allow_nan=True, allow_infinity=True))),
                           min_size=3, max_size=5))
coco_image = st.fixed_dictionaries({}, optional={
    "id": maybe(st.sampled_from([5, 6])), "file_name": maybe(st.sampled_from(["v1.jpg", "../v1.jpg", "/etc/passwd", ""])),
    "width": maybe(st.sampled_from([40, 0, -3, 40.5])), "height": maybe(st.sampled_from([30, 0, 1e300])),
})
coco_ann = st.fixed_dictionaries({}, optional={
    "id": json_scalar, "image_id": maybe(st.sampled_from([5, 6])), "category_id": maybe(st.sampled_from([3, 7, 4])),
    "bbox": coco_bbox, "iscrowd": maybe(st.sampled_from([0, 1])),
})
coco_cat = st.fixed_dictionaries({"id": maybe(st.sampled_from([3, 7, 9]))}, optional={"name": json_any})
coco_doc = st.fixed_dictionaries({}, optional={
    "images": maybe(st.lists(maybe(coco_image), max_size=3)),
    "annotations": maybe(st.lists(maybe(coco_ann), max_size=4)),
    "categories": maybe(st.lists(maybe(coco_cat), max_size=3)),
})
VALID_COCO = json.dumps({
    "images": [{"id": 5, "file_name": "v1.jpg", "width": 40, "height": 30}],
    "annotations": [{"id": 1, "image_id": 5, "category_id": 3, "bbox": [1, 2, 10, 8], "iscrowd": 0}],
    "categories": [{"id": 3, "name": "cat"}, {"id": 7, "name": "dog"}],
}).encode()


@pytest.fixture(scope="module")
def coco_root(tmp_path_factory):
    return build_coco(tmp_path_factory.mktemp("fuzz") / "coco")


@fuzz(300)
@given(content=st.one_of(as_bytes(coco_doc.map(json.dumps)), as_bytes(coco_doc.map(json.dumps)),
                         as_bytes(json_any.map(json.dumps)), variants_of(VALID_COCO)))
@example(content=b'{"images": 5}')
@example(content=b'{"images": [], "categories": 5}')
@example(content=b'{"images": [{"id": [1], "file_name": "v1.jpg"}], "annotations": [{"image_id": [1]}]}')
@example(content=b'{"images": [], "categories": [{"id": Infinity}]}')
@example(content=b'{"images": [{"id": 5, "file_name": "v1.jpg", "width": Infinity, "height": NaN}], "categories": []}')
@example(content=b'{"images": [{"id": 5, "file_name": "v1.jpg"}], "annotations": [{"image_id": 5, "category_id": 3,'
                 b' "bbox": [1, 1, 1' + b"0" * 400 + b', 5]}]}')
@example(content=b"[" * 100_000)
@example(content=b'{"images": [], "x": "\xff"}')
def test_coco_json(coco_root, content):
    fuzzed = coco_root / "annotations" / "instances_val2017.json"
    fuzzed.write_bytes(content)
    load_or_named_error(coco_root, fuzzed)


# ---- keras-retinanet CSV ---------------------------------------------------------------------

csv_path = st.sampled_from(["imgs/a.png", "imgs/b.png", "imgs/c.png", "imgs/missing.png", "../../etc/passwd",
                            "/etc/passwd", "imgs", "", "imgs/../imgs/b.png", "imgs/b.png\x00"])
csv_row = st.one_of(
    st.tuples(csv_path, field, field, field, field, st.sampled_from(["cat", "dog", "bird", "", " cat"])).map(",".join),
    st.lists(field, max_size=8).map(",".join),
)
VALID_CSV = b"imgs/b.png,1,2,11,12,cat\nimgs/c.png,5,5,20,25,dog\nimgs/c.png,,,,,\n"


@pytest.fixture(scope="module")
def csv_root(tmp_path_factory):
    root = build_csv(tmp_path_factory.mktemp("fuzz") / "csv", rows="imgs/a.png,1,2,11,12,cat\n")
    (root / "good.csv").write_text((root / "annotations.csv").read_text())
    return root


@fuzz(250)
@given(content=st.one_of(as_bytes(st.lists(csv_row, max_size=5).map("\n".join)), as_bytes(st.text(max_size=80)),
                         variants_of(VALID_CSV)))
@example(content=b'imgs/b.png,1,2,11,12,"' + b"x" * 140_000 + b'"\n')  # over the csv module's field limit
@example(content=b"imgs/b.png,1,2,11,12,cat\n\xff\xfe\n")
@example(content=b'imgs/b.png,1,2,11,12,"cat\n')  # an unterminated quote
def test_csv_annotations(csv_root, content):
    fuzzed = csv_root / "annotations.csv"
    fuzzed.write_bytes(content)
    load_or_named_error(csv_root, fuzzed)


@fuzz(80)
@given(content=st.one_of(as_bytes(st.lists(st.tuples(word, number).map(",".join), max_size=4).map("\n".join)),
                         variants_of(b"cat,0\ndog,1\n")))
@example(content=b"cat,0\n\xffdog,1\n")
def test_csv_class_map(csv_root, content):
    (csv_root / "annotations.csv").write_bytes(VALID_CSV)
    fuzzed = csv_root / "classes.csv"
    fuzzed.write_bytes(content)
    try:
        load_or_named_error(csv_root, fuzzed, defines_classes=True)
    finally:
        fuzzed.write_text("cat,0\ndog,1\n")


# ---- image headers (every reader goes through them) ------------------------------------------

@pytest.fixture(scope="module")
def valid_images(tmp_path_factory):
    d = tmp_path_factory.mktemp("imgs")
    return {s: write_image(d / f"ok{s}", 12, 9).read_bytes() for s in (".png", ".jpg")}


@fuzz(120)
@given(suffix=st.sampled_from([".png", ".jpg"]), data=st.data())
def test_image_bytes(tmp_path_factory, valid_images, suffix, data):
    content = data.draw(variants_of(valid_images[suffix]))
    path = tmp_path_factory.getbasetemp() / f"fuzzed{suffix}"
    path.write_bytes(content)
    for read in (image_size, read_image):
        try:
            out = read(path)
        except RetinaError as exc:
            assert path.name in str(exc)
            continue
        shape = out if read is image_size else out.shape[1::-1]
        assert min(shape) >= 1
