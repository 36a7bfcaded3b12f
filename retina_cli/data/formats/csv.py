"""keras-retinanet CSV: rows ``path,x1,y1,x2,y2,class`` plus a ``classes.csv`` of ``name,id``.

A row ``path,,,,,`` is an image without boxes. Paths are relative to the CSV's folder (absolute
paths are accepted inside the dataset folder); a path or symlink leaving the dataset folder is
rejected (:func:`~retina_cli.data.validate.inside_root`).
Split names come from the CSV file names (``train.csv``, ``val.csv``, ``test.csv``); any other
annotation CSV (``annotations.csv``) is split by ``val_fraction``. A first row ``path,x1,...`` is
taken as a header and skipped.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Iterator

import numpy as np

from retina_cli.data.formats import RawDataset, count, read_text, split_from_name
from retina_cli.data.records import ImageRecord
from retina_cli.data.report import ValidationReport
from retina_cli.data.validate import inside_root, make_record, require_inside, skip_outside
from retina_cli.errors import DataError

CLASS_FILES = ("classes.csv", "class_mapping.csv", "classes_map.csv")


def _class_file(folder: Path) -> Path | None:
    for name in CLASS_FILES:
        if (folder / name).is_file():
            return folder / name
    return None


def detect(root: Path) -> str | None:
    if root.is_file() and root.suffix == ".csv":
        return f"{root.name} is a CSV file"
    if root.is_dir() and _class_file(root) is not None and _annotation_files(root):
        return f"found {_class_file(root).name} and annotation CSV files (keras-retinanet layout)"  # type: ignore[union-attr]
    return None


def evidence(root: Path) -> str:
    """What of this layout ``root`` holds, for the message when a folder holds two layouts."""
    return count(len(_annotation_files(root)), "annotation CSV file")


def _annotation_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob("*.csv") if p.name not in CLASS_FILES)


def load(root: Path, report: ValidationReport) -> RawDataset:
    base = root if root.is_dir() else root.parent
    class_file = _class_file(base)
    if class_file is None:
        raise DataError(f"{base}: no classes.csv (rows 'class_name,id'); add it next to the annotation CSV")
    names = read_classes(require_inside(base, class_file))
    index = {n: i for i, n in enumerate(names)}
    # a CSV named by the user is taken as given; one found in the folder must stay inside it
    files = [root] if root.is_file() else [require_inside(base, f) for f in _annotation_files(base)]
    if not files:
        raise DataError(f"{base}: no annotation CSV next to {class_file.name}")
    groups: dict[str | None, list[ImageRecord]] = {}
    for f in files:
        split = split_from_name(f.stem) if f.stem not in ("annotations",) else None
        groups.setdefault(split, []).extend(_read_annotations(f, base, index, report))
    return RawDataset(class_names=names, groups=groups)


def read_classes(path: Path) -> list[str]:
    """``classes.csv`` rows ``name,id`` -> names ordered by id (ids need not start at 0 or be contiguous)."""
    pairs: list[tuple[int, str]] = []
    for lineno, row in _rows(path, "strict"):
        if len(row) != 2:
            raise DataError(f"{path}:{lineno}: expected 'class_name,id', got {len(row)} fields; fix the line")
        try:
            pairs.append((int(row[1]), row[0].strip()))
        except ValueError:
            if lineno == 1:
                continue  # a header row
            raise DataError(f"{path}:{lineno}: class id {row[1]!r} is not an integer; fix the line") from None
    ids = [i for i, _ in pairs]
    if len(set(ids)) != len(ids) or len({n for _, n in pairs}) != len(pairs):
        raise DataError(f"{path}: duplicate class names or ids; each class needs one unique name and id")
    if not pairs:
        raise DataError(f"{path}: no classes; add rows 'class_name,id'")
    return [n for _, n in sorted(pairs)]


def _read_annotations(f: Path, base: Path, index: dict[str, int], report: ValidationReport) -> list[ImageRecord]:
    rows: dict[Path, tuple[list, list, list]] = {}  # image -> (boxes, labels, lines)
    # paths: undecodable bytes are kept so that non-UTF-8 file names still match on Linux
    for lineno, row in _rows(f, "surrogateescape"):
        if len(row) != 6:
            report.warn(f, lineno, f"malformed row: expected 'path,x1,y1,x2,y2,class' (6 fields), got {len(row)}; row skipped")
            report.dropped += 1
            continue
        rel, *coords, cls = (v.strip() for v in row)
        if lineno == 1 and coords[0].lower() in ("x1", "xmin"):
            continue
        path = inside_root(base, rel, f.parent)
        if path is None:
            skip_outside(report, f, lineno, f"image path {rel!r}", base)
            continue
        entry = rows.setdefault(path, ([], [], []))
        if not any(coords) and not cls:
            continue  # negative image
        try:
            box = [float(v) for v in coords]
        except ValueError:
            report.warn(f, lineno, f"malformed row: coordinates {','.join(coords)!r} are not numbers; row skipped")
            report.dropped += 1
            if not entry[0]:
                del rows[path]  # do not turn an image with a broken row into a negative
            continue
        if cls not in index:
            report.warn(f, lineno, f"class {cls!r} is not in classes.csv; box dropped")
            report.dropped += 1
            continue
        entry[0].append(box)
        entry[1].append(index[cls])
        entry[2].append(lineno)
    out = []
    for path, (boxes, labels, lines) in rows.items():
        rec = make_record(
            path, np.asarray(boxes, np.float64).reshape(-1, 4), np.asarray(labels, np.int64),
            np.zeros(len(labels), bool), len(index), report, label_file=f, lines=lines,
        )
        if rec is not None:
            out.append(rec)
    return out


def _rows(path: Path, errors: str) -> Iterator[tuple[int, list[str]]]:
    """Non-empty CSV rows of ``path`` with the line each starts on; a CSV syntax error is a DataError."""
    reader = csv.reader(io.StringIO(read_text(path, errors), newline=""))
    start = 1
    try:
        for row in reader:
            if row and "".join(row).strip():
                yield start, row
            start = reader.line_num + 1
    except csv.Error as exc:
        raise DataError(f"{path}:{start}: not a readable CSV row ({exc}); fix the row") from None
