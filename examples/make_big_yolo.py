"""Make a large synthetic YOLO folder for timing ``retina data info`` and ``load_dataset``.

    python examples/make_big_yolo.py /tmp/big --images 100000

Layout: ``OUT/data.yaml`` (``train`` and ``val`` both ``images``, so every image is read as both
splits, as in the issue's measurements), ``OUT/images/*.jpg`` (hard links to a few real 640x480
JPEGs: BCCD's when /work/shared/data/bccd is there, else drawn with OpenCV) and ``OUT/labels/*.txt``
with 1-20 boxes each, of which about 1% of lines are broken: a wrong field count, coordinates out of
the image, or a class id outside the class list.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import cv2
import numpy as np

BCCD = Path("/work/shared/data/bccd/JPEGImages")
NAMES = ("cell", "platelet", "blob")
NUM_SOURCES = 4


def source_images(rng: np.random.Generator, n: int) -> list[bytes]:
    """``n`` encoded 640x480 JPEGs: BCCD images when present, else random rectangles."""
    if BCCD.is_dir():
        files = sorted(BCCD.glob("*.jpg"))[:n]
        if len(files) == n:
            return [f.read_bytes() for f in files]
    out = []
    for _ in range(n):
        img = np.full((480, 640, 3), 200, np.uint8)
        for _ in range(10):
            x, y = rng.integers(0, 600), rng.integers(0, 440)
            cv2.rectangle(img, (int(x), int(y)), (int(x) + 40, int(y) + 40), rng.integers(0, 255, 3).tolist(), -1)
        out.append(cv2.imencode(".jpg", img)[1].tobytes())
    return out


def label_lines(rng: np.random.Generator, n: int, broken: float) -> list[str]:
    """``n`` label lines ``class cx cy w h``; a ``broken`` share of them broken one of three ways."""
    cls = rng.integers(0, len(NAMES), n)
    wh = rng.uniform(0.02, 0.2, (n, 2))
    c = rng.uniform(0.0, 1.0, (n, 2)) * (1 - wh) + wh / 2
    lines = [f"{k} {x:.6f} {y:.6f} {w:.6f} {h:.6f}" for k, (x, y), (w, h) in zip(cls.tolist(), c.tolist(), wh.tolist())]
    for i in np.flatnonzero(rng.random(n) < broken).tolist():
        kind = i % 3
        if kind == 0:  # wrong field count
            lines[i] = lines[i].rsplit(" ", 1)[0]
        elif kind == 1:  # entirely right of the image: degenerate after clipping
            lines[i] = f"{cls[i]} 1.7 0.5 0.1 0.1"
        else:  # class id outside the class list
            lines[i] = f"{len(NAMES) + 5}" + lines[i][1:]
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path, metavar="OUT", help="folder to create (must not hold images/ already)")
    ap.add_argument("--images", type=int, default=20000, help="number of images")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--broken", type=float, default=0.01, help="share of broken label lines")
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    images, labels = args.out / "images", args.out / "labels"
    images.mkdir(parents=True)
    labels.mkdir(parents=True)
    (args.out / "data.yaml").write_text(f"train: images\nval: images\nnames: {list(NAMES)}\n")

    sources = []
    for i, data in enumerate(source_images(rng, NUM_SOURCES)):
        src = args.out / f"source_{i}.jpg"  # outside images/: the links' target, not a dataset image
        src.write_bytes(data)
        sources.append(str(src))
    counts = rng.integers(1, 21, args.images)
    lines = label_lines(rng, int(counts.sum()), args.broken)
    ends = np.cumsum(counts).tolist()
    start = 0
    for i, end in enumerate(ends):
        name = f"img_{i:07d}"
        os.link(sources[i % len(sources)], images / f"{name}.jpg")
        with open(labels / f"{name}.txt", "w") as f:
            f.write("\n".join(lines[start:end]) + "\n")
        start = end
    print(f"{args.out}: {args.images} images, {len(lines)} label lines")


if __name__ == "__main__":
    main()
