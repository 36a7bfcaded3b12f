"""YOLO layout: ``images/`` + ``labels/`` with one ``class cx cy w h`` (normalised) line per box.

Class names come from an ultralytics ``data.yaml``/``dataset.yaml`` (``names`` as a list or an
``{id: name}`` mapping; ``train``/``val``/``test`` entries as folders, lists of folders or .txt
image lists) or from ``classes.txt``. Without a yaml, ``images/{train,val,test}/`` sub-folders are
the splits. A label path is the image path with its last ``images`` folder replaced by ``labels``
and the suffix by ``.txt``; an image without a label file is a negative. Polygon (segment) lines
are accepted and turned into their bounding box.

The dataset root is the yaml's ``path:`` when it names a folder (ultralytics yamls often give it
absolute), else the folder given; split entries, list lines, images and label files must stay
inside it, symlinks followed (:func:`~retina_cli.data.validate.inside_root`).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import yaml

from retina_cli.data.formats import RawDataset, count, read_text
from retina_cli.data.images import is_image
from retina_cli.data.records import ImageRecord
from retina_cli.data.report import ValidationReport
from retina_cli.data.validate import inside_root, is_dir, is_file, make_record, require_inside, skip_outside
from retina_cli.errors import DataError

YAML_NAMES = ("data.yaml", "dataset.yaml", "data.yml", "dataset.yml")
SPLITS = ("train", "val", "test")


def find_yaml(root: Path) -> Path | None:
    if root.is_file() and root.suffix in (".yaml", ".yml"):
        return root
    for name in YAML_NAMES:
        if (root / name).is_file():
            return root / name
    return None


def detect(root: Path) -> str | None:
    """Why ``root`` looks like a YOLO dataset, or None."""
    found = find_yaml(root)
    if found is not None:
        return f"found {found.name} (ultralytics data yaml)"
    if root.is_dir() and (root / "images").is_dir() and (root / "labels").is_dir():
        return "found images/ and labels/ folders"
    return None


def evidence(root: Path) -> str:
    """What of this layout ``root`` holds, for the message when a folder holds two layouts."""
    labels = root / "labels"
    n = sum(1 for p in labels.rglob("*.txt") if p.name != "classes.txt") if is_dir(labels) else 0
    found = find_yaml(root)
    return f"YOLO {found.name}" if found is not None and n == 0 else count(n, "YOLO label file")


def label_path(image: Path) -> Path:
    """``.../images/a/b.jpg`` -> ``.../labels/a/b.txt``."""
    parts = list(image.parts)
    for i in range(len(parts) - 2, -1, -1):
        if parts[i] == "images":
            parts[i] = "labels"
            return Path(*parts).with_suffix(".txt")
    return image.with_suffix(".txt")


def load(root: Path, report: ValidationReport) -> RawDataset:
    yaml_file = find_yaml(root)
    base = root if root.is_dir() else root.parent
    if yaml_file is not None:
        if root.is_dir():  # a yaml named by the user is taken as given; one found in the folder must stay inside it
            require_inside(root, yaml_file)
        names, sources, base = _read_yaml(yaml_file, report)
    else:
        names = _read_classes_txt(base)
        sources = _folder_splits(base, report)
    groups: dict[str | None, list[ImageRecord]] = {}
    expected_labels: set[Path] = set()
    label_dirs: set[Path] = set()
    for split, images in sources.items():
        records = []
        for image in images:
            lab = label_path(image)
            expected_labels.add(lab)
            label_dirs.add(_labels_root(lab))
            rec = _read_one(image, lab, len(names), report, base)
            if rec is not None:
                records.append(rec)
        groups[split] = records
    _report_orphan_labels(label_dirs, expected_labels, report)
    return RawDataset(class_names=names, groups=groups, root=base)


def _read_one(image: Path, lab: Path, num_classes: int, report: ValidationReport, base: Path) -> ImageRecord | None:
    boxes, labels, lines = [], [], []
    has_labels = is_file(lab)
    if has_labels and inside_root(base, lab) is None:
        skip_outside(report, lab, None, f"label file of {image.name!r}", base)
        return None
    if has_labels:
        for lineno, text in enumerate(read_text(lab, errors="replace").splitlines(), start=1):
            fields = text.split()
            if not fields:
                continue
            parsed = _parse_line(fields)
            if isinstance(parsed, str):
                report.warn(lab, lineno, f"{parsed}; line skipped")
                report.dropped += 1
                continue
            cls, box = parsed
            boxes.append(box)
            labels.append(cls)
            lines.append(lineno)
    arr = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return make_record(
        image, arr, np.asarray(labels, np.int64), np.zeros(len(labels), bool), num_classes, report,
        label_file=lab if has_labels else image, lines=lines, normalized=True,
    )


def _parse_line(fields: list[str]) -> tuple[int, list[float]] | str:
    """``class cx cy w h`` (or ``class x1 y1 x2 y2 ...`` polygon) -> (class, normalised xyxy), or a problem."""
    if len(fields) != 5 and (len(fields) < 7 or len(fields) % 2 == 0):
        return f"malformed line: expected 'class cx cy w h' (5 numbers), got {len(fields)} fields"
    try:
        values = [float(v) for v in fields]
    except ValueError:
        return f"malformed line: not numbers: {' '.join(fields)[:80]!r}"
    cls = values[0]
    if not np.isfinite(cls) or cls != int(cls):
        return f"malformed line: class id {fields[0]!r} is not an integer"
    if not 0 <= cls < 2**31:  # far out of any class list, and past what an int64 label array holds
        return f"class id {fields[0]!r} is out of range"
    if len(values) == 5:
        cx, cy, w, h = values[1:]
        return int(cls), [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]
    pts = np.asarray(values[1:]).reshape(-1, 2)
    return int(cls), [*pts.min(axis=0).tolist(), *pts.max(axis=0).tolist()]


def _labels_root(lab: Path) -> Path:
    parts = lab.parts
    for i in range(len(parts) - 2, -1, -1):
        if parts[i] == "labels":
            return Path(*parts[: i + 1])
    return lab.parent


def _report_orphan_labels(label_dirs: set[Path], expected: set[Path], report: ValidationReport) -> None:
    """Label files with no image next to them: reported, as their boxes are lost."""
    for d in sorted(label_dirs):
        if not is_dir(d) or d.name != "labels":
            continue
        for lab in sorted(d.rglob("*.txt")):
            if lab not in expected and lab.name != "classes.txt":
                report.warn(lab, None, "label file without an image (expected the same name under images/); labels ignored")


def _read_classes_txt(base: Path, yaml_file: Path | None = None) -> list[str]:
    for cand in (base / "classes.txt", base / "labels" / "classes.txt"):
        if cand.is_file():
            names = [ln.strip() for ln in read_text(require_inside(base, cand)).splitlines() if ln.strip()]
            if names:
                return names
    if yaml_file is not None:
        raise DataError(f"{yaml_file}: no 'names:' and no classes.txt next to it; add 'names: [a, b, ...]' to the yaml")
    raise DataError(
        f"{base}: no class names for this YOLO dataset; add data.yaml with 'names:' or classes.txt with one name per line"
    )


def _list_images(folder: Path, base: Path, report: ValidationReport) -> list[Path]:
    """The images under ``folder``; those that are links leaving ``base`` are reported and skipped."""
    out = []
    for p in sorted(p for p in folder.rglob("*") if is_image(p) and p.is_file()):
        if inside_root(base, p) is None:
            skip_outside(report, p, None, f"image {p.name!r}", base)
        else:
            out.append(p)
    return out


def _folder_splits(base: Path, report: ValidationReport) -> dict[str | None, list[Path]]:
    images = base / "images"
    if not images.is_dir():
        raise DataError(f"{base}: no images/ folder; a YOLO dataset needs images/ and labels/ (or a data.yaml)")
    subs = {s: images / s for s in SPLITS if (images / s).is_dir()}
    if subs:
        return {s: _list_images(d, base, report) for s, d in subs.items()}
    return {None: _list_images(images, base, report)}


def _read_yaml(yaml_file: Path, report: ValidationReport) -> tuple[list[str], dict[str | None, list[Path]], Path]:
    """Class names, images per split and the dataset root: the yaml's ``path:`` when it names a
    folder (the yaml says where its dataset is), else the yaml's folder."""
    try:
        data = yaml.safe_load(read_text(yaml_file)) or {}
    except RecursionError:
        raise DataError(f"{yaml_file}: nested too deeply to be a dataset yaml; fix the file") from None
    except yaml.YAMLError as exc:
        line = getattr(getattr(exc, "problem_mark", None), "line", None)
        where = f"{yaml_file}:{line + 1}" if line is not None else str(yaml_file)
        raise DataError(f"{where}: not valid YAML ({getattr(exc, 'problem', exc)}); fix the file") from None
    if not isinstance(data, dict):
        raise DataError(f"{yaml_file}: expected a mapping with names: and train:/val: entries")
    names = data.get("names")
    if isinstance(names, dict):
        names = _names_from_mapping(names, yaml_file)
    elif isinstance(names, list):
        names = [str(n) for n in names]
    elif names is None:
        names = _read_classes_txt(yaml_file.parent, yaml_file)
    else:
        raise DataError(f"{yaml_file}: 'names' must be a list of class names or a mapping id: name, got {names!r}")
    if not names:
        raise DataError(f"{yaml_file}: 'names' is empty; list the class names (names: [a, b, ...])")
    base = yaml_file.parent
    if data.get("path"):
        p = Path(str(data["path"]))
        p = p if p.is_absolute() else yaml_file.parent / p
        # ultralytics resolves a relative path against its datasets dir; ours is the yaml's folder
        if is_dir(p):
            base = Path(os.path.normpath(p))
    sources: dict[str | None, list[Path]] = {}
    for split in SPLITS:
        entry = data.get(split)
        if not entry:
            continue
        images: list[Path] = []
        for item in entry if isinstance(entry, list) else [entry]:
            images += _resolve_entry(str(item), base, yaml_file, split, report)
        sources[split] = images
    if not sources:
        sources = _folder_splits(base, report)
    return names, sources, base


def _names_from_mapping(names: dict, yaml_file: Path) -> list[str]:
    """``{0: a, "1": b}`` -> ``[a, b]``; keys must be the ids 0..K-1 (ints or digit strings)."""
    by_id: dict[int, str] = {}
    for key, name in names.items():
        try:
            if isinstance(key, bool) or not isinstance(key, (int, str)):
                raise ValueError
            by_id[int(key)] = str(name)
        except ValueError:
            raise DataError(f"{yaml_file}: 'names' keys must be class ids 0..K-1, got {key!r}") from None
    keys = sorted(by_id)
    if keys != list(range(len(names))):
        raise DataError(f"{yaml_file}: 'names' ids must be 0..{len(names) - 1}, each once, got {keys}")
    return [by_id[k] for k in keys]


def _resolve_entry(item: str, base: Path, yaml_file: Path, split: str, report: ValidationReport) -> list[Path]:
    """A ``train:``/``val:``/``test:`` entry (a folder or a .txt image list, relative to ``base``)
    -> its images. An entry leaving ``base`` is a DataError; list lines leaving it are skipped.
    Like ultralytics, ``../train/images`` (Roboflow exports) is tried as ``train/images`` too."""
    target = inside_root(base, item)
    if target is None and item.startswith("../"):
        fallback = inside_root(base, item[3:])
        target = fallback if fallback is not None and fallback.exists() else None
    if target is None:
        raise DataError(f"{yaml_file}: {split}: {item!r} leaves the dataset folder {base} (a path or link to outside "
                        f"it); set 'path:' to the folder holding the dataset, or move the files inside it")
    if is_dir(target):
        return _list_images(target, base, report)
    if is_file(target) and target.suffix == ".txt":
        out = []
        for i, ln in enumerate(read_text(target, errors="surrogateescape").splitlines(), start=1):
            ln = ln.strip()
            if not ln:
                continue
            image = inside_root(base, ln, target.parent)
            if image is None:
                skip_outside(report, target, i, f"image path {ln!r}", base)
            else:
                out.append(image)
        return out
    raise DataError(f"{yaml_file}: {split}: {item!r} is neither a folder of images nor a .txt image list ({target})")
