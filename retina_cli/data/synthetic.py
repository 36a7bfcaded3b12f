"""A small synthetic detection dataset (coloured circles, squares and triangles on textured
backgrounds) written in the YOLO layout, and a video of held-out frames. Used by `retina demo`
and by tests; deterministic for a given seed."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

CLASSES = ("circle", "square", "triangle")


@dataclass(frozen=True)
class Shape:
    label: int
    box: tuple[float, float, float, float]  # xyxy pixels


def _background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A smooth colour gradient plus noise: (h, w, 3) uint8 RGB."""
    c0, c1 = rng.uniform(40, 215, size=(2, 3))
    t = np.linspace(0, 1, w)[None, :, None] if rng.random() < 0.5 else np.linspace(0, 1, h)[:, None, None]
    img = c0 * (1 - t) + c1 * t
    img = np.broadcast_to(img, (h, w, 3)) + rng.normal(0, 12, size=(h, w, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def draw_scene(rng: np.random.Generator, h: int, w: int, max_objects: int = 4,
               min_size: int = 20, max_size: int = 90) -> tuple[np.ndarray, list[Shape]]:
    """One image with 1..max_objects non-overlapping shapes -> ((h, w, 3) uint8 RGB, shapes)."""
    # shapes never larger than the image (bounds unchanged otherwise, so seeded data stays the same)
    max_size = min(max_size, min(h, w) - 1)
    min_size = min(min_size, max_size)
    img = _background(rng, h, w)
    shapes: list[Shape] = []
    for _ in range(int(rng.integers(1, max_objects + 1)) * 4):
        if len(shapes) >= max_objects:
            break
        s = int(rng.integers(min_size, max_size + 1))
        x1, y1 = int(rng.integers(0, w - s)), int(rng.integers(0, h - s))
        box = (x1, y1, x1 + s, y1 + s)
        if any(_overlap(box, o.box) for o in shapes):
            continue
        label = int(rng.integers(0, len(CLASSES)))
        colour = tuple(int(c) for c in rng.integers(0, 256, size=3))
        draw_shape(img, label, box, colour)
        shapes.append(Shape(label, tuple(float(v) for v in box)))
    return img, shapes


def draw_shape(img: np.ndarray, label: int, box: tuple[int, int, int, int], colour: tuple[int, int, int]) -> None:
    """Draw one filled shape of class ``label`` (see :data:`CLASSES`) in the square integer xyxy
    ``box`` (it covers pixels ``x1 .. x2 - 1``) on the ``(H, W, 3)`` uint8 image, in place."""
    x1, y1, x2, _ = box
    s = x2 - x1
    if label == 0:
        cv2.circle(img, (x1 + s // 2, y1 + s // 2), s // 2, colour, -1, lineType=cv2.LINE_AA)
    elif label == 1:
        cv2.rectangle(img, (x1, y1), (x1 + s - 1, y1 + s - 1), colour, -1)
    else:
        pts = np.array([[x1 + s // 2, y1], [x1, y1 + s - 1], [x1 + s - 1, y1 + s - 1]], dtype=np.int32)
        cv2.fillPoly(img, [pts], colour, lineType=cv2.LINE_AA)


def _overlap(a: tuple, b: tuple, margin: float = 4) -> bool:
    return not (a[2] + margin <= b[0] or b[2] + margin <= a[0] or a[3] + margin <= b[1] or b[3] + margin <= a[1])


def write_yolo_dataset(root: Path, n_train: int = 160, n_val: int = 40, size: tuple[int, int] = (240, 320),
                       seed: int = 0, object_size: tuple[int, int] = (20, 90)) -> Path:
    """Write ``root/{images,labels}/{train,val}`` and ``root/data.yaml``; returns ``root``.

    size: (height, width) of every image; object_size: (min, max) side of the shapes in pixels.
    """
    rng = np.random.default_rng(seed)
    h, w = size
    for split, n in (("train", n_train), ("val", n_val)):
        (root / "images" / split).mkdir(parents=True, exist_ok=True)
        (root / "labels" / split).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            img, shapes = draw_scene(rng, h, w, min_size=object_size[0], max_size=object_size[1])
            stem = f"{split}_{i:04d}"
            cv2.imwrite(str(root / "images" / split / f"{stem}.jpg"), cv2.cvtColor(img, cv2.COLOR_RGB2BGR),
                        [cv2.IMWRITE_JPEG_QUALITY, 92])
            lines = []
            for sh in shapes:
                x1, y1, x2, y2 = sh.box
                lines.append(f"{sh.label} {(x1 + x2) / 2 / w:.6f} {(y1 + y2) / 2 / h:.6f} {(x2 - x1) / w:.6f} {(y2 - y1) / h:.6f}")
            (root / "labels" / split / f"{stem}.txt").write_text("\n".join(lines) + ("\n" if lines else ""))
    names = "\n".join(f"  {i}: {n}" for i, n in enumerate(CLASSES))
    (root / "data.yaml").write_text(f"path: .\ntrain: images/train\nval: images/val\nnames:\n{names}\n")
    return root


def write_video(path: Path, frames: int = 48, size: tuple[int, int] = (240, 320), fps: float = 12.0, seed: int = 1) -> Path:
    """A short mp4 (OpenCV ``mp4v``) of shapes drifting across held-out scenes; returns ``path``."""
    rng = np.random.default_rng(seed)
    h, w = size
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    try:
        scene, _ = draw_scene(rng, h, w)
        for i in range(frames):
            if i % 16 == 0:
                scene, _ = draw_scene(rng, h, w)
            frame = np.roll(scene, shift=(i % 16) * 2, axis=1)
            writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    finally:
        writer.release()
    return path
