"""Sliced inference, measured: AP_small and mAP with and without slicing, and what it costs per image.

    python examples/slice_benchmark.py                       # synthetic: train 8 min, then 3 evals
    python examples/slice_benchmark.py --bccd ../shared/data/bccd --minutes 10

Synthetic (the default): a nano model is trained on 256x256 images of small shapes (10-24 px, the
COCO "small" range) with `--anchors auto`, then evaluated on 1024x1024 images of the same shapes:
once as retina predicts by default (the image letterboxed to the model's 256 px, the objects
shrunk 4x), then sliced into 256 px windows at their own scale (``SliceConfig(256, 0.2)``), with and
without the whole image added. ``--bccd``: a nano model trained at a small input size
(``--img-size``) on BCCD, evaluated on its test split plain and sliced.

Every score is COCOeval (pycocotools) through ``Detector.val``; ms/img is the wall time of that
evaluation (reading, inference, merging) divided by the images.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import retina_cli
from retina_cli.data.synthetic import write_yolo_dataset
from retina_cli.slicing import SliceConfig


def evaluate(detector: retina_cli.Detector, data: str, split: str, slicing: SliceConfig | None) -> dict[str, float]:
    t0 = time.perf_counter()
    m = detector.val(data, split=split, batch=8, slicing=slicing)
    ms = 1000.0 * (time.perf_counter() - t0) / m.images
    return {"AP": m.metrics["AP"], "AP50": m.metrics["AP50"], "APs": m.metrics["APs"], "ms_per_image": ms}


def main(argv: list[str] | None = None) -> dict[str, dict[str, float]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=8.0, help="training budget (retina train --time)")
    parser.add_argument("--bccd", type=Path, help="benchmark on this BCCD folder instead of synthetic data")
    parser.add_argument("--img-size", type=int, default=256, help="the model's input size")
    parser.add_argument("--window", type=int, help="the side of a slice in image pixels (default: --img-size)")
    parser.add_argument("--images", type=int, default=300, help="synthetic training images (a fifth as many to validate)")
    parser.add_argument("--large", type=int, default=1024, help="side of the synthetic test images")
    parser.add_argument("--test-images", type=int, default=40, help="synthetic test images")
    parser.add_argument("--work", type=Path, help="keep the data and the run here (default: a temporary folder)")
    parser.add_argument("--json", type=Path, help="also write the table here")
    parser.add_argument("--train-args", default="", help="extra `retina train` settings as JSON (for the tests)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        size = args.img_size
        if args.bccd:
            train_data, test_data, split = str(args.bccd), str(args.bccd), "test"
        else:
            train_data = str(write_yolo_dataset(work / "small", n_train=args.images, n_val=max(args.images // 5, 4),
                                                size=(size, size), seed=0, object_size=(10, 24)))
            test_data = str(write_yolo_dataset(work / "large", n_train=0, n_val=args.test_images,
                                               size=(args.large, args.large), seed=1, object_size=(10, 24)))
            split = "val"
        settings = {"model": "nano", "img_size": size, "anchors": "auto", "time": args.minutes,
                    "project": str(work / "runs"), "name": "train", **json.loads(args.train_args or "{}")}
        run = retina_cli.train(train_data, **settings)
        detector = retina_cli.load(run.best)
        win = args.window or size
        modes = {
            f"whole image at {size} px": None,
            f"slices of {win} + whole": SliceConfig(win, overlap=0.2),
            f"slices of {win} only": SliceConfig(win, overlap=0.2, full_image=False),
        }
        rows = {name: evaluate(detector, test_data, split, cfg) for name, cfg in modes.items()}
    print(f"{'inference':<26} {'mAP':>6} {'mAP50':>6} {'AP_small':>8} {'ms/img':>8}")
    for name, r in rows.items():
        print(f"{name:<26} {r['AP']:>6.3f} {r['AP50']:>6.3f} {r['APs']:>8.3f} {r['ms_per_image']:>8.0f}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return rows


if __name__ == "__main__":
    main()
