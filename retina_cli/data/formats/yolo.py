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
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Iterator

import numpy as np
import yaml

from retina_cli.data.formats import RawDataset, count, read_text
from retina_cli.data.images import is_image_name
from retina_cli.data.records import ImageRecord
from retina_cli.data.report import ValidationReport
from retina_cli.data.validate import (
    box_problems, check_boxes, entry_is, inside_root, is_dir, is_file, path_order, read_size, require_inside,
    skip_outside, tree_entries,
)
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


def _label_str(image: str) -> str:
    """:func:`label_path` of the string of a Path, without building Paths."""
    folder, name = os.path.split(image)
    parts = folder.split("/")
    if "images" in parts:
        i = len(parts) - 1 - parts[::-1].index("images")
        folder = "/".join(parts[:i] + ["labels"] + parts[i + 1 :])
    dot = name.rfind(".")
    stem = name[:dot] if 0 < dot < len(name) - 1 else name  # Path.with_suffix's idea of the suffix
    return os.path.join(folder, stem + ".txt")


class _LabelFiles:
    """Which label files exist and lie inside the dataset root, from one ``os.scandir`` per labels
    folder instead of a ``stat`` and a path resolution per image (:func:`is_file` and
    :func:`inside_root` answer the same; links and unlistable folders still get asked)."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.folders: dict[str, tuple[dict[str, bool], bool] | None] = {}

    def state(self, lab: str) -> str:
        """"none" (no label file), "inside" or "outside" the dataset root."""
        folder, name = os.path.split(lab)
        if folder not in self.folders:
            self.folders[folder] = self._list(folder)
        listing = self.folders[folder]
        if listing is not None:
            entries, folder_inside = listing
            plain = entries.get(name)
            if plain is None:
                return "none"
            if plain:  # a plain file (no link) in a folder inside the root is inside it
                return "inside" if folder_inside else "outside"
        path = Path(lab)
        if not is_file(path):
            return "none"
        return "outside" if inside_root(self.base, path) is None else "inside"

    def _list(self, folder: str) -> tuple[dict[str, bool], bool] | None:
        """name -> True for a plain file, False for a link (asked again), no entry for anything
        else; and whether ``folder`` lies inside the root. None when ``folder`` cannot be listed
        but may still hold files (no read permission)."""
        try:
            with os.scandir(folder) as it:
                entries = {e.name: not e.is_symlink() for e in it if e.is_symlink() or e.is_file(follow_symlinks=False)}
        except (FileNotFoundError, NotADirectoryError):
            return {}, False
        except OSError:
            return None
        return entries, inside_root(self.base, folder) is not None


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
    expected_labels: set[str] = set()
    label_dirs: dict[str, Path] = {}
    label_files = _LabelFiles(base)
    # an image listed by several splits (train and val naming one folder) is read once; its
    # problems and counts are reported again for each split, as when it was read each time
    done: dict[str, _Result] = {}
    placed: set[str] = set()
    for split, images in sources.items():
        todo: dict[str, tuple[Path, str, str]] = {}
        for image in images:
            key = str(image)
            if key not in done and key not in todo:
                lab = _label_str(key)
                expected_labels.add(lab)
                folder = os.path.dirname(lab)
                if folder not in label_dirs:
                    label_dirs[folder] = _labels_root(Path(lab))
                todo[key] = (image, lab, label_files.state(lab))
        for key, result in zip(todo, _read_all(list(todo.values()), len(names), base)):
            done[key] = result
        records = []
        for image in images:
            key = str(image)
            rec, one, error = done[key]
            report.merge(one)
            if error is not None:
                raise error
            if rec is not None:
                records.append(replace(rec) if key in placed else rec)  # each use a record of its own
                placed.add(key)
        groups[split] = records
    _report_orphan_labels(set(label_dirs.values()), expected_labels, report)
    return RawDataset(class_names=names, groups=groups, root=base)


# images read and validated together: one numpy pass over their boxes instead of one per image
CHUNK = 1024
# from this many images on, chunks are read by a pool of processes (its start-up is ~0.2 s)
POOL_FROM = 4096

# one image's record (None: skipped), its problems and counts, and the error that stopped its
# reading (raised when the image's turn comes, so that strict mode still stops at the first problem)
_Result = tuple[ImageRecord | None, ValidationReport, DataError | None]


def _read_all(items: list[tuple[Path, str, str]], num_classes: int, base: Path) -> Iterator[_Result]:
    """:func:`_read_chunk` over ``items`` (image, label path, label state) in chunks, in order;
    in worker processes (one per CPU this process may use) when there are many."""
    images = [image for image, _, _ in items]
    # plain strings travel to the workers: pickling Paths both ways costs as much as reading them
    plain = [(str(image), lab, state) for image, lab, state in items]
    chunks = [plain[i : i + CHUNK] for i in range(0, len(plain), CHUNK)]
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    workers = min(len(chunks), cpus)
    if len(items) < POOL_FROM or workers < 2:
        results = (_read_chunk(chunk, num_classes, base) for chunk in chunks)
        for i, result in enumerate(results):
            yield from _records(images[i * CHUNK : (i + 1) * CHUNK], *result)
        return
    with ProcessPoolExecutor(workers) as pool:
        results = pool.map(_read_chunk, chunks, [num_classes] * len(chunks), [base] * len(chunks))
        for i, result in enumerate(results):
            yield from _records(images[i * CHUNK : (i + 1) * CHUNK], *result)


def _records(images: list[Path], items: list, boxes: np.ndarray, labels: np.ndarray) -> Iterator[_Result]:
    """:func:`_read_chunk`'s answer -> one result per image, records holding views of the arrays."""
    no_ignore = np.zeros(len(labels), bool)
    end = 0
    for image, (one, error, size, k) in zip(images, items):
        if size is None:
            yield None, one, error
            continue
        end += k
        rec = ImageRecord(path=image, width=int(size[0]), height=int(size[1]), boxes=boxes[end - k : end],
                          labels=labels[end - k : end], ignore=no_ignore[end - k : end])
        yield rec, one, None


def _read_chunk(items: list[tuple[str, str, str]], num_classes: int, base: Path) -> tuple[list, np.ndarray, np.ndarray]:
    """``(image, label path, label state)`` (:meth:`_LabelFiles.state`) of some images ->
    ``(report, error, (w, h) or None when skipped, kept boxes)`` of each, and the kept
    ``(K, 4)`` float32 boxes and ``(K,)`` int64 labels of all of them, image after image.

    Each label file is parsed on its own (:func:`_parse_file`); the boxes of all of them are
    scaled to pixels and checked in one :func:`check_boxes` call, their problems worded and ordered
    per image as :func:`~retina_cli.data.validate.clean_boxes` does for one image. Plain data out:
    this runs in worker processes too."""
    out: list = []
    readable = []  # (index in out, image, label file, (w, h), boxes, classes, lines)
    for name, lab, state in items:
        one = ValidationReport()
        image, lab_path = Path(name), Path(lab)
        if state == "outside":
            skip_outside(one, lab_path, None, f"label file of {image.name!r}", base)
            out.append([one, None, None, 0])
            continue
        try:
            parsed = _parse_file(read_text(lab_path, errors="replace"), lab_path, one) if state == "inside" else _NO_BOXES
        except DataError as exc:
            out.append([one, DataError(str(exc)), None, 0])
            continue
        label_file = lab_path if state == "inside" else image
        size = read_size(image, one, label_file, parsed[2], len(parsed[1]))
        out.append([one, None, size, 0])
        if size is not None:
            readable.append((len(out) - 1, image, label_file, size, *parsed))
    if not readable:
        return out, np.zeros((0, 4), np.float32), np.zeros(0, np.int64)
    counts = np.array([len(r[5]) for r in readable])  # (P,) boxes per image
    owner = np.repeat(np.arange(len(readable)), counts)  # (M,) image of each box
    wh = np.array([r[3] for r in readable], np.float64)  # (P, 2)
    limits = wh[owner][:, [0, 1, 0, 1]]  # (M, 4)
    with np.errstate(over="ignore"):  # 1e308 * width is inf: reported as such
        boxes = np.concatenate([r[4] for r in readable]).reshape(-1, 4) * limits  # (M, 4) xyxy pixels
    labels = np.concatenate([r[5] for r in readable]).astype(np.int64)  # (M,)
    lines = [n for r in readable for n in r[6]]
    clipped, keep, moved = check_boxes(boxes, labels, limits, num_classes)
    problems = box_problems(boxes, labels, clipped, keep, moved, num_classes, lambda i: readable[owner[i]][3])
    problems.sort(key=lambda p: owner[p[0]])  # stable: each image's in the order clean_boxes gives
    for i, message in problems:
        r = readable[owner[i]]
        out[r[0]][0].warn(r[2], lines[i], message)
    kept = np.bincount(owner[keep], minlength=len(readable)).tolist()
    n_clipped = np.bincount(owner[keep & moved], minlength=len(readable)).tolist()
    for r, n, k, c in zip(readable, counts.tolist(), kept, n_clipped):
        one = out[r[0]][0]
        one.kept += k
        one.clipped += c
        one.dropped += n - k
        one.images += 1
        one.negatives += int(k == 0)
        out[r[0]][3] = k
    return out, clipped[keep], labels[keep]


_NO_BOXES = (np.zeros((0, 4)), np.zeros(0, np.int64), [])


def _parse_file(text: str, lab: Path, report: ValidationReport) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """The lines of a label file -> normalised xyxy ``(n, 4)`` float64 boxes, ``(n,)`` int64
    classes and the ``n`` line numbers; malformed lines are reported and counted as dropped.
    Files of whole ``class cx cy w h`` lines with valid class ids (nearly all) are converted at
    once; any other file line by line with :func:`_parse_line`, which words the problems."""
    rows = [(i, fields) for i, fields in enumerate((t.split() for t in text.splitlines()), start=1) if fields]
    if all(len(fields) == 5 for _, fields in rows):
        try:
            values = np.array([float(v) for _, fields in rows for v in fields], np.float64).reshape(-1, 5)
        except ValueError:
            values = None
        if values is not None:
            cls = values[:, 0]
            with np.errstate(invalid="ignore"):
                ok = np.isfinite(cls) & (cls == np.trunc(cls)) & (cls >= 0) & (cls < 2**31)
            if ok.all():
                c, half = values[:, 1:3], values[:, 3:5] / 2
                return np.concatenate([c - half, c + half], axis=1), cls.astype(np.int64), [i for i, _ in rows]
    boxes, labels, lines = [], [], []
    for lineno, fields in rows:
        parsed = _parse_line(fields)
        if isinstance(parsed, str):
            report.warn(lab, lineno, f"{parsed}; line skipped")
            report.dropped += 1
            continue
        cls, box = parsed
        boxes.append(box)
        labels.append(cls)
        lines.append(lineno)
    return np.asarray(boxes, dtype=np.float64).reshape(-1, 4), np.asarray(labels, np.int64), lines


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


def _report_orphan_labels(label_dirs: set[Path], expected: set[str], report: ValidationReport) -> None:
    """Label files with no image next to them: reported, as their boxes are lost.

    expected: the label paths (:func:`_label_str`) of every image read."""
    for d in sorted(label_dirs):
        if not is_dir(d) or d.name != "labels":
            continue
        found = (e.path for e in tree_entries(str(d)) if e.name.endswith(".txt"))  # rglob("*.txt")
        for lab in sorted(found, key=path_order):
            if lab not in expected and os.path.basename(lab) != "classes.txt":
                report.warn(Path(lab), None, "label file without an image (expected the same name under images/); labels ignored")


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
    # a plain file (no link) in a folder inside base is inside it: only links are resolved
    folder_inside = inside_root(base, folder) is not None
    found = sorted(
        ((e.path, e.is_symlink()) for e in tree_entries(str(folder)) if is_image_name(e.name) and entry_is(e, "file")),
        key=lambda item: path_order(item[0]),
    )
    out = []
    for name, link in found:
        p = Path(name)
        if (link or not folder_inside) and inside_root(base, p) is None:
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
