"""COCO JSON: ``instances_*.json`` (or any COCO json) plus a folder of images.

Split names come from the json file name (``instances_val2017.json`` -> val). The image folder is
looked for next to the json and under the root (``<tag>/``, ``images/<tag>/``, ``images/``, the
root itself); the folder holding most of the first images wins. Category ids are mapped to
contiguous labels in id order (``RawDataset.category_ids`` keeps the original ids); ``iscrowd``
becomes ``ignore=True``. Image sizes come from the json's width/height (header read if absent).
Nothing is dropped silently: a duplicate image id (its annotations cannot be told apart: every
image of that id is dropped), a file listed under two ids, an image without ``file_name``,
duplicate annotation ids, annotations of an unknown image or category are each reported.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from retina_cli.data.formats import RawDataset, count, read_text, split_from_name
from retina_cli.data.records import ImageRecord
from retina_cli.data.report import ValidationReport
from retina_cli.data.validate import inside_root, is_file, make_record, require_inside, skip_image, skip_outside
from retina_cli.errors import DataError


def find_jsons(root: Path) -> list[Path]:
    if root.is_file():
        return [root] if root.suffix == ".json" else []
    found: list[Path] = []
    for folder in (root / "annotations", root):
        if folder.is_dir():
            inst = sorted(folder.glob("instances_*.json"))
            found += inst or sorted(p for p in folder.glob("*.json") if _looks_like_coco(p))
    return found


def _looks_like_coco(path: Path) -> bool:
    """Cheap check on the first KiB: a COCO file is an object with "images" (results files are lists)."""
    with open(path, "rb") as f:
        head = f.read(4096).lstrip()
    return head.startswith(b"{") and (b'"images"' in head or b'"annotations"' in head or b'"info"' in head)


def detect(root: Path) -> str | None:
    found = find_jsons(root)
    if found:
        return f"found COCO json {found[0].name}" + (f" (+{len(found) - 1} more)" if len(found) > 1 else "")
    return None


def evidence(root: Path) -> str:
    """What of this layout ``root`` holds, for the message when a folder holds two layouts."""
    found = find_jsons(root)
    shown = ", ".join(f.name for f in found[:3]) + (", ..." if len(found) > 3 else "")
    return count(len(found), "COCO json file") + f" ({shown})"


def load(root: Path, report: ValidationReport) -> RawDataset:
    base = root if root.is_dir() else root.parent
    if base.name == "annotations":  # a json passed directly: images sit beside annotations/
        base = base.parent
    files = find_jsons(root)
    if not files:
        raise DataError(f"{root}: no COCO json (instances_*.json) found; pass the json file or its folder")
    if root.is_dir():  # a json named by the user is taken as given; one found in the folder must stay inside it
        files = [require_inside(root, f) for f in files]
    docs = [(f, _read_json(f)) for f in files]
    cats: dict[int, str] = {}
    for f, doc in docs:
        for c in _list_of(doc, "categories", f):
            cid = c.get("id") if isinstance(c, dict) else None
            if not _is_int(cid):
                raise DataError(f"{f}: category without an integer 'id': {str(c)[:80]}; fix the categories list")
            name = str(c.get("name", cid))
            if cats.setdefault(cid, name) != name:
                report.warn(f, None, f"category id {cid} is listed as {cats[cid]!r} and as {name!r}; using {cats[cid]!r}")
    if not cats:
        raise DataError(f"{files[0]}: no 'categories'; a COCO json must list its categories")
    ids = sorted(cats)
    lut = {cid: i for i, cid in enumerate(ids)}
    groups: dict[str | None, list[ImageRecord]] = {}
    for f, doc in docs:
        split = split_from_name(f.stem) if len(docs) > 1 or "instances_" in f.name else None
        groups.setdefault(split, []).extend(_records(f, doc, base, lut, report))
    return RawDataset(class_names=[cats[i] for i in ids], groups=groups, category_ids=ids)


def _read_json(f: Path) -> dict:
    try:
        doc = json.loads(read_text(f))
    except json.JSONDecodeError as exc:
        raise DataError(f"{f}:{exc.lineno}: not valid JSON ({exc.msg}); fix the file") from None
    except RecursionError:
        raise DataError(f"{f}: JSON nested too deeply to be a COCO file; fix the file") from None
    if not isinstance(doc, dict) or "images" not in doc:
        raise DataError(f"{f}: not a COCO annotation file (no 'images' list); pass the dataset's instances_*.json")
    return doc


def _list_of(doc: dict, key: str, f: Path) -> list:
    """``doc[key]`` (absent: empty), which must be a list."""
    value = doc.get(key, [])
    if not isinstance(value, list):
        raise DataError(f"{f}: '{key}' must be a list, got {type(value).__name__}; fix the file")
    return value


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_id(v: object) -> bool:
    """Image ids are ints (or strings in some exporters); anything else cannot be matched."""
    return _is_int(v) or isinstance(v, str)


def _is_number(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _with_id(f: Path, items: list, key: str, id_key: str, report: ValidationReport) -> list[dict]:
    """The entries of ``doc[key]`` that are objects with an int or string ``id_key``; the others are
    reported and counted (a skipped image, a dropped annotation)."""
    kept = []
    for k, item in enumerate(items):
        if isinstance(item, dict) and _is_id(item.get(id_key)):
            kept.append(item)
            continue
        report.warn(f, None, f"{key}[{k}] is not an object with an integer '{id_key}': {str(item)[:80]}; skipped")
        if key == "images":
            report.skipped_images += 1
        else:
            report.dropped += 1
    return kept


def _size(im: dict) -> tuple[int, int] | None:
    """The json's ``(width, height)`` when both are whole positive numbers, else None (read the header)."""
    w, h = im.get("width"), im.get("height")
    ok = all(_is_number(v) and 1 <= v < 2**31 and v == int(v) for v in (w, h))  # type: ignore[operator]
    return (int(w), int(h)) if ok else None  # type: ignore[arg-type]


def _image_dir(json_file: Path, base: Path, names: list[str]) -> Path:
    tag = json_file.stem.split("instances_")[-1]
    cands = [base / tag, base / "images" / tag, base / "images", base, json_file.parent, json_file.parent.parent / tag,
             json_file.parent.parent / "images"]
    sample = names[:8]
    best, hits = cands[0], -1
    for c in cands:
        if c.is_dir():
            n = sum(is_file(c / s) for s in sample)
            if n > hits:
                best, hits = c, n
    return best


def _records(f: Path, doc: dict, base: Path, lut: dict[int, int], report: ValidationReport) -> list[ImageRecord]:
    images = _with_id(f, _list_of(doc, "images", f), "images", "id", report)
    anns = _unique_annotations(f, _with_id(f, _list_of(doc, "annotations", f), "annotations", "image_id", report), report)
    by_image: dict[int | str, list[dict]] = {}
    for a in anns:
        by_image.setdefault(a["image_id"], []).append(a)
    known_ids = {im["id"] for im in images}
    for img_id in by_image.keys() - known_ids:
        report.warn(f, None, f"{len(by_image[img_id])} annotations refer to image_id {img_id!r} which is not in 'images'; dropped")
        report.dropped += len(by_image[img_id])
    images = _unique_images(f, images, by_image, report)
    img_dir = _image_dir(f, base, [im["file_name"] for im in images])
    try:
        listing = set(os.listdir(img_dir))
    except OSError:
        listing = set()
    out = []
    for im in images:
        name = im["file_name"]
        img_anns = by_image.get(im["id"], [])
        path = inside_root(base, name, img_dir)
        if path is None:
            skip_outside(report, f, None, f"image {name!r} (id {im['id']!r})", base)
            report.dropped += len(img_anns)
            continue
        if name not in listing and not is_file(path):
            skip_image(report, f, None, f"image {name!r} (id {im['id']!r}) not found in {img_dir}; skipped")
            report.dropped += len(img_anns)
            continue
        boxes, labels, crowd = _boxes(f, img_anns, lut, report)
        size = _size(im)
        if size is None and ("width" in im or "height" in im):
            report.warn(f, None, f"image {name!r}: width/height {im.get('width')!r}x{im.get('height')!r} are not whole "
                                 f"positive numbers; the size is read from the image")
        img_id = im["id"]
        rec = make_record(path, boxes, labels, crowd, len(lut), report, label_file=f, size=size,
                          image_id=img_id if _is_int(img_id) else None)
        if rec is not None:
            out.append(rec)
    return out


def _unique_images(f: Path, images: list[dict], by_image: dict, report: ValidationReport) -> list[dict]:
    """The image entries that can be matched to their annotations without doubt; the others are
    skipped, reported and their annotations counted as dropped:

    - no ``file_name`` string: nothing to read;
    - an id listed twice for different files: its annotations cannot be told apart, so every entry
      of that id is skipped (the same file listed twice under one id is kept once);
    - a file listed under two ids: the first entry is kept, the later ones skipped.
    """
    def skip(im: dict, why: str, drop: bool = True) -> None:
        n = len(by_image.get(im["id"], [])) if drop else 0
        skip_image(report, f, None, why + (f"; image skipped, its {n} annotations dropped" if n else "; image skipped"))
        report.dropped += n

    def has_name(im: dict) -> bool:
        return isinstance(im.get("file_name"), str) and bool(im["file_name"].strip())

    named = [im for im in images if has_name(im)]
    named_ids = {im["id"] for im in named}
    for im in images:
        if not has_name(im):  # its annotations are counted with the named entry of its id, if any
            skip(im, f"image id {im['id']!r} has no 'file_name' (got {repr(im.get('file_name'))[:40]})",
                 drop=im["id"] not in named_ids)
    names_of: dict[int | str, list[str]] = {}
    for im in named:
        names_of.setdefault(im["id"], []).append(im["file_name"])
    kept, seen_ids, id_of_name = [], set(), {}
    for im in named:
        img_id, name = im["id"], im["file_name"]
        files = names_of[img_id]
        if len(set(files)) > 1:
            if img_id not in seen_ids:  # one line per id, naming the files that share it
                seen_ids.add(img_id)
                shown = " and ".join(repr(n) for n in dict.fromkeys(files))
                n = len(by_image.get(img_id, []))
                skip_image(report, f, None, f"duplicate image id {img_id!r}: used by {shown}; its annotations cannot be "
                                            f"told apart, so these {len(files)} images and {n} annotations are dropped")
                report.skipped_images += len(files) - 1
                report.dropped += n
            continue
        if img_id in seen_ids:
            skip(im, f"image id {img_id!r} ({name!r}) is listed twice; the later entry is ignored", drop=False)
            continue
        seen_ids.add(img_id)
        if name in id_of_name:
            skip(im, f"image {name!r} is listed under ids {id_of_name[name]!r} and {img_id!r}; the entry with id {img_id!r} "
                     f"is ignored")
            continue
        id_of_name[name] = img_id
        kept.append(im)
    return kept


def _unique_annotations(f: Path, anns: list[dict], report: ValidationReport) -> list[dict]:
    """``anns`` with exact copies removed (same id, image, category and bbox: counted as dropped);
    two different annotations sharing an id are both kept and reported (evaluation tools need unique ids)."""
    first: dict[int | str, dict] = {}
    kept = []
    for a in anns:
        aid = a.get("id")
        if not _is_id(aid):
            kept.append(a)
            continue
        if aid not in first:
            first[aid] = a
            kept.append(a)
            continue
        prev = first[aid]
        if all(prev.get(k) == a.get(k) for k in ("image_id", "category_id", "bbox")):
            report.warn(f, None, f"duplicate annotation id {aid!r}: the same box is listed twice; the copy is dropped")
            report.dropped += 1
        else:
            report.warn(f, None, f"duplicate annotation id {aid!r}: used by two different annotations (image_id "
                                 f"{prev.get('image_id')!r} and {a.get('image_id')!r}); both kept, give each a unique id")
            kept.append(a)
    return kept


def _boxes(f: Path, anns: list[dict], lut: dict[int, int], report: ValidationReport):
    """Annotations of one image -> ``(n, 4)`` xyxy float64, ``(n,)`` labels, ``(n,)`` iscrowd."""
    boxes, labels, crowd = [], [], []
    for a in anns:
        bbox = a.get("bbox")
        try:
            if not isinstance(bbox, list) or len(bbox) != 4 or not all(_is_number(v) for v in bbox):
                raise TypeError
            bbox = [float(v) for v in bbox]  # an int too large for a float raises OverflowError
        except (TypeError, ValueError, OverflowError):
            report.warn(f, None, f"annotation {a.get('id')}: bbox must be [x, y, w, h] numbers, got {str(bbox)[:80]}; dropped")
            report.dropped += 1
            continue
        cid = a.get("category_id")
        if not _is_int(cid) or cid not in lut:
            report.warn(f, None, f"annotation {a.get('id')}: category_id {cid!r} is not in 'categories'; dropped")
            report.dropped += 1
            continue
        boxes.append(bbox)
        labels.append(lut[cid])
        crowd.append(bool(a.get("iscrowd", 0)))
    xywh = np.asarray(boxes, np.float64).reshape(-1, 4)
    xyxy = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1)
    return xyxy, np.asarray(labels, np.int64), np.asarray(crowd, bool)
