"""Box validation shared by every format reader: NaN/inf, class range, clipping, degenerate boxes;
and the one rule for paths taken from a dataset (:func:`inside_root`).

Readers parse their files into raw ``xyxy`` pixel boxes and hand them here; every problem is
recorded in the :class:`ValidationReport` with the file (and line) it came from.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np

from retina_cli.data.images import ImageUnreadable, image_size
from retina_cli.data.records import ImageRecord
from retina_cli.data.report import ValidationReport
from retina_cli.errors import DataError

# coordinates this close outside the image are rounding noise (normalised YOLO labels), not errors
CLIP_TOLERANCE = 0.01


def empty_boxes() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Empty ``(0, 4)`` float32 boxes, ``(0,)`` int64 labels, ``(0,)`` bool ignore flags."""
    return np.zeros((0, 4), np.float32), np.zeros((0,), np.int64), np.zeros((0,), bool)


def clean_boxes(
    boxes: np.ndarray,
    labels: np.ndarray,
    ignore: np.ndarray,
    width: int,
    height: int,
    num_classes: int,
    report: ValidationReport,
    file: Path,
    lines: Sequence[int | None] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validate raw boxes of one image and count them in ``report``.

    boxes: ``(n, 4)`` xyxy pixels (any float dtype); labels ``(n,)`` int; ignore ``(n,)`` bool.
    lines: ``n`` line numbers (txt/CSV) or None, used in problem messages.
    Returns kept ``(k, 4)`` float32 boxes clipped to ``[0, width] x [0, height]``, ``(k,)`` int64
    labels and ``(k,)`` bool ignore flags.
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    ignore = np.asarray(ignore, dtype=bool).reshape(-1)
    n = boxes.shape[0]
    clipped, keep, moved = check_boxes(boxes, labels, np.array([width, height, width, height], np.float64), num_classes)
    for i, message in box_problems(boxes, labels, clipped, keep, moved, num_classes, lambda i: (width, height)):
        line = lines[i] if lines is not None else None
        report.warn(file, line, message if line is not None else f"box {i + 1}: {message}")
    report.kept += int(keep.sum())
    report.clipped += int((keep & moved).sum())
    report.dropped += int(n - keep.sum())
    return clipped[keep], labels[keep], ignore[keep]


def check_boxes(
    boxes: np.ndarray, labels: np.ndarray, limits: np.ndarray, num_classes: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The checks of :func:`clean_boxes`, for the boxes of one image or of many at once.

    boxes: ``(n, 4)`` float64 xyxy pixels; labels ``(n,)`` int64; limits: ``(4,)`` or ``(n, 4)``
    ``[w, h, w, h]`` of each box's image. Returns the ``(n, 4)`` float32 boxes clipped to their
    image, ``keep`` ``(n,)`` bool (finite, known class, not degenerate after clipping) and
    ``moved`` ``(n,)`` bool (clipping moved it by more than :data:`CLIP_TOLERANCE`).
    """
    finite = np.isfinite(boxes).all(axis=1)
    in_range = (labels >= 0) & (labels < num_classes)
    zeroed = np.where(finite[:, None], boxes, 0.0)
    clipped = np.clip(zeroed, 0.0, limits)
    moved = (np.abs(clipped - zeroed) > CLIP_TOLERANCE).any(axis=1)
    # judged in the float32 the records hold: x2 = 1e-100 > x1 = 0 in float64 is 0 == 0 there
    clipped = clipped.astype(np.float32)
    degenerate = (clipped[:, 2] <= clipped[:, 0]) | (clipped[:, 3] <= clipped[:, 1])
    return clipped, finite & in_range & ~degenerate, moved


def box_problems(
    boxes: np.ndarray, labels: np.ndarray, clipped: np.ndarray, keep: np.ndarray, moved: np.ndarray,
    num_classes: int, size_of: Callable[[int], tuple[int, int]],
) -> list[tuple[int, str]]:
    """``(box index, message)`` of every box :func:`check_boxes` dropped or clipped: first the
    NaN/inf ones, then unknown classes, degenerate boxes and clipped ones, each in box order.
    size_of: box index -> ``(width, height)`` of its image, as the messages write it."""
    if keep.all() and not moved.any():
        return []
    finite = np.isfinite(boxes).all(axis=1)
    in_range = (labels >= 0) & (labels < num_classes)
    degenerate = finite & in_range & ~keep
    out = []
    # problems are rare: a Python loop over the offending boxes only
    for i in np.flatnonzero(~finite).tolist():
        out.append((i, f"box has NaN/inf coordinates {boxes[i].tolist()}; box dropped"))
    for i in np.flatnonzero(finite & ~in_range).tolist():
        out.append((i, f"class id {labels[i]} is out of range 0..{num_classes - 1}; box dropped (fix the id or the class list)"))
    for i in np.flatnonzero(degenerate).tolist():
        w, h = size_of(i)
        out.append((i, f"degenerate box {_fmt(boxes[i])} (x1 >= x2 or y1 >= y2 after clipping to {w}x{h}); box dropped"))
    for i in np.flatnonzero(keep & moved).tolist():
        w, h = size_of(i)
        out.append((i, f"box {_fmt(boxes[i])} extends outside the {w}x{h} image; clipped"))
    return out


def _fmt(box: np.ndarray) -> str:
    return "[" + ", ".join(f"{v:g}" for v in box.tolist()) + "]"


def make_record(
    path: Path,
    boxes: np.ndarray,
    labels: np.ndarray,
    ignore: np.ndarray,
    num_classes: int,
    report: ValidationReport,
    label_file: Path,
    lines: Sequence[int | None] | None = None,
    size: tuple[int, int] | None = None,
    image_id: int | None = None,
    normalized: bool = False,
) -> ImageRecord | None:
    """Read the image size, validate the boxes and build a record; None (counted, reported) if the image is unusable.

    size: ``(width, height)`` when the caller already knows it; otherwise read from the header.
    normalized: boxes are fractions of the image size (YOLO) and are scaled to pixels here.
    """
    if size is None:
        size = read_size(path, report, label_file, lines, int(np.asarray(labels).shape[0]))
        if size is None:
            return None
    w, h = size
    if normalized:
        with np.errstate(over="ignore"):  # 1e308 * width is inf: reported as such by clean_boxes
            boxes = np.asarray(boxes, np.float64).reshape(-1, 4) * np.array([w, h, w, h], np.float64)
    b, lab, ign = clean_boxes(boxes, labels, ignore, w, h, num_classes, report, label_file, lines)
    report.images += 1
    report.negatives += int(b.shape[0] == 0)
    return ImageRecord(path=path, width=int(w), height=int(h), boxes=b, labels=lab, ignore=ign, image_id=image_id)


def read_size(
    path: Path, report: ValidationReport, label_file: Path, lines: Sequence[int | None] | None, boxes: int
) -> tuple[int, int] | None:
    """:func:`image_size` of ``path``; None when it cannot be read, reported against ``label_file``
    (at its first box line) with the image skipped and its ``boxes`` counted as dropped."""
    try:
        return image_size(path)
    except ImageUnreadable as exc:
        msg = exc.reason if label_file == path else f"{exc.reason}: {path}"
        skip_image(report, label_file, lines[0] if lines else None, f"{msg}; image skipped")
        report.dropped += boxes
        return None


def skip_image(report: ValidationReport, file: Path, line: int | None, message: str) -> None:
    report.warn(file, line, message)
    report.skipped_images += 1


def skip_outside(report: ValidationReport, file: Path, line: int | None, what: str, root: Path) -> None:
    """Report and count an item refused by :func:`inside_root`; ``what`` names it ("image path 'a.jpg'")."""
    skip_image(report, file, line, f"{what} leaves the dataset folder {root} (a path or link to a file outside it); skipped")


def require_inside(root: Path, path: Path) -> Path:
    """``path``, a file of the dataset's structure (a split list) that the dataset cannot do without,
    if it lies inside ``root`` (:func:`inside_root`); else a DataError naming it."""
    if inside_root(root, path) is None:
        raise DataError(f"{path}: leaves the dataset folder {root} (a path or link to a file outside it); "
                        f"copy the file into the dataset folder")
    return path


def is_file(path: Path) -> bool:
    """``path.is_file()``, but False instead of an error for a name the OS refuses (too long, ...):
    the paths checked here come from label files."""
    try:
        return path.is_file()
    except (OSError, ValueError):
        return False


def is_dir(path: Path) -> bool:
    """``path.is_dir()``, False for a name the OS refuses (see :func:`is_file`)."""
    try:
        return path.is_dir()
    except (OSError, ValueError):
        return False


def inside_root(root: Path, relative: str | Path, base: Path | None = None) -> Path | None:
    """``base / relative`` as an absolute path if it lies inside the dataset ``root``, else None.

    The one rule every reader applies to a path it takes from the dataset (image, label file,
    list file, yaml entry): the path is normalised, then resolved with its symlinks and must end up
    inside ``root`` (resolved too). ``../``, absolute paths elsewhere and links to files outside are
    refused; links that stay inside are followed. ``relative`` may be absolute (accepted inside
    ``root``). The normalised, unresolved path is returned, so that file names stay as the dataset
    wrote them. A name the OS cannot resolve (NUL byte, link loop) is judged by its normalised path
    and fails later as a missing file.
    """
    base = base if base is not None else root
    try:
        candidate = Path(os.path.normpath(os.path.join(os.path.abspath(base), relative)))
    except ValueError:
        return None
    root_real = _resolved(Path(os.path.normpath(os.path.abspath(root))))
    target = _resolved(candidate)
    if target == root_real or root_real in target.parents:
        return candidate
    return None


def tree_entries(folder: str) -> Iterator[os.DirEntry]:
    """Every entry under ``folder`` that ``Path(folder).rglob("*")`` finds (links to folders are
    listed, not entered; unreadable folders are skipped), from one ``os.scandir`` per folder: the
    entries already know whether they are links or plain files, so no ``stat`` per file is needed."""
    try:
        with os.scandir(folder) as it:
            entries = list(it)
    except OSError:
        return
    for entry in entries:
        yield entry
        if entry_is(entry, "dir") and not entry.is_symlink():
            yield from tree_entries(entry.path)


def entry_is(entry: os.DirEntry, kind: str) -> bool:
    """``entry.is_file()`` / ``entry.is_dir()`` (links followed), False for an entry that vanished
    or cannot be examined, like :func:`is_file`."""
    try:
        return entry.is_file() if kind == "file" else entry.is_dir()
    except OSError:
        return False


def path_order(path: str) -> str:
    """Sort key giving absolute path strings the order of their ``Path`` objects (part by part):
    NUL sorts below every character a file name can hold."""
    return path.replace("/", "\0")


def _resolved(path: Path) -> Path:
    """``path.resolve()``; for a name that cannot be resolved (a NUL byte, a link loop: no file to
    read either way) its folder resolved plus the name."""
    try:
        return path.resolve()
    except (OSError, ValueError, RuntimeError):
        try:
            return path.parent.resolve() / path.name
        except (OSError, ValueError, RuntimeError):
            return path
