"""Pascal VOC layout: ``Annotations/*.xml`` + ``JPEGImages/``, splits from ``ImageSets/Main/*.txt``.

Box coordinates are read as written (no 1-based shift), so ``xmin == xmax`` is a degenerate box.
``difficult`` objects become ``ignore=True``. Class names are taken from ``classes.txt`` or
``labels.txt`` in the root when present (fixing the label order), else sorted alphabetically.
Image sizes come from the image header (the XML ``<size>`` is often wrong after re-export).
Images are looked up in ``JPEGImages/`` by ``<filename>`` (a bare name) or the xml's stem; ``<path>``
is not read. Every id, xml and image must stay inside the dataset folder, symlinks followed
(:func:`~retina_cli.data.validate.inside_root`).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

from retina_cli.data.formats import RawDataset, count, read_text
from retina_cli.data.images import IMAGE_SUFFIXES
from retina_cli.data.records import ImageRecord
from retina_cli.data.report import ValidationReport
from retina_cli.data.validate import inside_root, is_file, make_record, require_inside, skip_image, skip_outside
from retina_cli.errors import DataError

SPLIT_FILES = ("train", "val", "test", "trainval")


def detect(root: Path) -> str | None:
    ann = root / "Annotations"
    if root.is_dir() and ann.is_dir() and any(ann.glob("*.xml")):
        return "found Annotations/*.xml (Pascal VOC)"
    return None


def evidence(root: Path) -> str:
    """What of this layout ``root`` holds, for the message when a folder holds two layouts."""
    return count(sum(1 for _ in (root / "Annotations").glob("*.xml")), "Pascal VOC XML file")


def load(root: Path, report: ValidationReport) -> RawDataset:
    ann_dir, img_dir = root / "Annotations", root / "JPEGImages"
    lists = _split_lists(root)
    if not lists:
        lists = {None: [(p.stem, None, None) for p in sorted(ann_dir.glob("*.xml"))]}
    parsed: dict[str, _Parsed | None] = {}
    for entries in lists.values():
        for stem, list_file, line in entries:
            if stem in parsed:
                continue
            xml = inside_root(root, f"{stem}.xml", ann_dir)
            if xml is None:
                where = (list_file, line) if list_file is not None else (ann_dir / f"{stem}.xml", None)
                skip_outside(report, where[0], where[1], f"annotation {stem + '.xml'!r}", root)
                parsed[stem] = None
                continue
            parsed[stem] = _parse(xml, report, list_file, line)
    names = _class_names(root, parsed)
    index = {n: i for i, n in enumerate(names)}
    records: dict[str, ImageRecord | None] = {}
    for stem, p in parsed.items():
        if p is None:
            continue
        image = _find_image(img_dir, p.filename, stem)
        inside = inside_root(root, image) if image is not None else None
        if inside is None:
            if image is None:
                skip_image(report, p.xml, None, f"image {p.filename or stem} not found in {img_dir}; annotation skipped")
            else:
                skip_outside(report, p.xml, None, f"image {image.name!r}", root)
            report.dropped += len(p.names)
            records[stem] = None
            continue
        labels = np.array([index.get(n, -1) for n in p.names], np.int64)
        for n in sorted({n for n in p.names if n not in index}):
            report.warn(p.xml, None, f"class {n!r} is not in the class list ({', '.join(names)}); its boxes dropped")
        known = labels >= 0
        report.dropped += int((~known).sum())
        records[stem] = make_record(
            image, p.boxes[known], labels[known], p.difficult[known], len(names), report, label_file=p.xml
        )
    groups = {
        split: [records[s] for s, _, _ in entries if records.get(s) is not None] for split, entries in lists.items()
    }
    return RawDataset(class_names=names, groups=groups)  # type: ignore[arg-type]


class _Parsed:
    def __init__(self, xml: Path, filename: str, names: list[str], boxes: np.ndarray, difficult: np.ndarray):
        self.xml, self.filename, self.names, self.boxes, self.difficult = xml, filename, names, boxes, difficult


def _split_lists(root: Path) -> dict[str | None, list[tuple[str, Path, int]]]:
    main = root / "ImageSets" / "Main"
    out: dict[str | None, list[tuple[str, Path, int]]] = {}
    for split in SPLIT_FILES:
        f = main / f"{split}.txt"
        if not f.is_file():
            continue
        require_inside(root, f)
        out[split] = []
        # ids name files: undecodable bytes are kept so that non-UTF-8 file names still match
        for i, ln in enumerate(read_text(f, errors="surrogateescape").splitlines(), start=1):
            if not ln.strip():
                continue
            # "id" or "id flag" (per-class lists); an id with spaces is kept whole when its xml exists
            stem = ln.strip() if is_file(root / "Annotations" / f"{ln.strip()}.xml") else ln.split()[0]
            out[split].append((stem, f, i))  # a stem leaving the dataset is refused when its xml is read
    if "trainval" in out and "train" in out and "val" in out:
        del out["trainval"]  # redundant with train + val
    return out


def _parse(xml: Path, report: ValidationReport, list_file: Path | None, line: int | None) -> _Parsed | None:
    if not is_file(xml):
        where = (list_file, line) if list_file is not None else (xml, None)
        skip_image(report, where[0], where[1], f"annotation {xml} is missing; image skipped")
        return None
    try:
        tree = ET.parse(xml).getroot()
    except ET.ParseError as exc:
        skip_image(report, xml, exc.position[0] if exc.position else None, f"not valid XML ({exc}); image skipped")
        return None
    except (LookupError, ValueError, RecursionError) as exc:  # an unknown or unsupported declared encoding, ...
        skip_image(report, xml, None, f"not readable XML ({exc or type(exc).__name__}); image skipped")
        return None
    except OSError as exc:
        skip_image(report, xml, None, f"cannot be read ({exc.strerror or exc}); image skipped")
        return None
    names, boxes, difficult = [], [], []
    for k, obj in enumerate(tree.iter("object"), start=1):
        name = (obj.findtext("name") or "").strip()
        bb = obj.find("bndbox")
        try:
            box = [float(bb.findtext(t)) for t in ("xmin", "ymin", "xmax", "ymax")]  # type: ignore[union-attr,arg-type]
        except (AttributeError, TypeError, ValueError):
            report.warn(xml, None, f"object {k} ({name or 'no name'}): missing or non-numeric <bndbox>; box dropped")
            report.dropped += 1
            continue
        if not name:
            report.warn(xml, None, f"object {k}: no <name>; box dropped")
            report.dropped += 1
            continue
        names.append(name)
        boxes.append(box)
        difficult.append((obj.findtext("difficult") or "0").strip() in ("1", "true"))
    return _Parsed(
        xml, (tree.findtext("filename") or "").strip(), names,
        np.asarray(boxes, np.float64).reshape(-1, 4), np.asarray(difficult, bool),
    )


def _class_names(root: Path, parsed: dict[str, _Parsed | None]) -> list[str]:
    for cand in (root / "classes.txt", root / "labels.txt"):
        if cand.is_file():
            names = [ln.strip() for ln in read_text(require_inside(root, cand)).splitlines() if ln.strip()]
            if names:
                return names
    found = sorted({n for p in parsed.values() if p is not None for n in p.names})
    if not found:
        raise DataError(f"{root}: no <object> with a <name> in any annotation and no classes.txt; nothing to train on")
    return found


def _find_image(img_dir: Path, filename: str, stem: str) -> Path | None:
    if filename and "/" not in filename and "\\" not in filename and is_file(img_dir / filename):
        return (img_dir / filename).absolute()
    for suffix in IMAGE_SUFFIXES + tuple(s.upper() for s in IMAGE_SUFFIXES):
        cand = img_dir / f"{stem}{suffix}"
        if is_file(cand):
            return cand.absolute()
    return None
