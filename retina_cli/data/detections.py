"""Reading COCO-style results JSON (a list of detections) for drawing.

Each entry: ``bbox`` ``[x, y, w, h]`` in original pixels, ``score``, ``category_id`` and a way to
find its image, tried in this order:
  * ``"file_name"``: the image's file name or a path ending in it (what ``retina predict`` writes);
  * ``"image_id"`` as a string: the same as file_name;
  * ``"image_id"`` as an int: the COCO image id when the GT dataset is COCO, else the number in
    the image's file name (``000000397133.jpg`` is 397133, the COCO naming).
The class: ``"category_name"`` when it is one of the GT dataset's class names (``retina predict``
writes it), else ``category_id`` mapped through a COCO GT dataset's category ids, else
``category_id`` taken as the 0-based label (named by ``category_name`` when present).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np

from retina_cli.errors import DataError


def read_results(path: Path) -> list[dict]:
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise DataError(f"{path}: detections file not found") from None
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg})") from None
    if isinstance(data, dict) and isinstance(data.get("annotations"), list):
        data = data["annotations"]
    if not isinstance(data, list):
        raise DataError(f"{path}: expected a COCO results list [{{image_id, category_id, bbox, score}}, ...]")
    for k, d in enumerate(data):
        if not isinstance(d, dict) or not isinstance(d.get("bbox"), list) or len(d["bbox"]) != 4:
            raise DataError(f"{path}: entry {k} has no 'bbox' [x, y, w, h]; fix or regenerate the file")
        if "file_name" not in d and "image_id" not in d:
            raise DataError(f"{path}: entry {k} has neither 'file_name' nor 'image_id'")
    return data


def _stem_number(p: Path) -> int | None:
    return int(p.stem) if p.stem.isdigit() else None


def group_by_image(
    results: Sequence[dict],
    images: Sequence[Path],
    image_ids: dict[int, Path] | None = None,
    category_ids: Sequence[int] | None = None,
    class_names: Sequence[str] = (),
) -> tuple[dict[Path, tuple[np.ndarray, np.ndarray, np.ndarray]], dict[int, str], int]:
    """-> ({image: (boxes ``(D, 4)`` xyxy, scores ``(D,)``, labels ``(D,)``)}, {label: name from
    the file}, number of entries that matched no image)."""
    by_name = {p.name: p for p in images}
    by_number = {n: p for p in images if (n := _stem_number(p)) is not None}
    lut = {int(c): i for i, c in enumerate(category_ids)} if category_ids else None
    by_class = {n: i for i, n in enumerate(class_names)}
    grouped: dict[Path, list[tuple[list[float], float, int]]] = {}
    names: dict[int, str] = {}
    unmatched = 0
    for d in results:
        key = d.get("file_name", d.get("image_id"))
        if isinstance(key, str):
            img = by_name.get(Path(key).name)
        elif image_ids is not None and key in image_ids:
            img = image_ids[key]
        else:
            img = by_number.get(key)  # type: ignore[arg-type]
        if img is None:
            unmatched += 1
            continue
        cid = int(d.get("category_id", 0))
        label = lut.get(cid, cid) if lut else cid
        if d.get("category_name") in by_class:
            label = by_class[d["category_name"]]
        elif "category_name" in d:
            names[label] = str(d["category_name"])
        grouped.setdefault(img, []).append((d["bbox"], float(d.get("score", 1.0)), label))
    out = {}
    for img, items in grouped.items():
        xywh = np.array([b for b, _, _ in items], np.float32).reshape(-1, 4)
        boxes = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1)
        out[img] = (boxes, np.array([s for _, s, _ in items], np.float32), np.array([c for _, _, c in items], np.int64))
    return out, names, unmatched
