"""Make the README tutorial's pictures (docs/img/*.png) with retina's own commands.

    python examples/make_docs_pictures.py                       # runs `retina demo` (~2 min on 2 cores)
    python examples/make_docs_pictures.py --demo runs/demo/exp  # reuse a finished demo run

Labels and anchors are drawn on BCCD (a Pascal VOC folder; `--bccd`), falling back to the demo's
synthetic data when it is absent; the training curves, PR curves and the video frame come from the
demo run. Each picture is downscaled and quantised to a palette PNG so it stays small.
"""

from __future__ import annotations

import argparse
import shlex
import tempfile
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from retina_cli.cli.app import main as retina

ROOT = Path(__file__).resolve().parents[1]


def run(command: str) -> None:
    """One `retina ...` command line, through retina's entry point; stops on a non-zero exit."""
    print(f"$ {command}", flush=True)
    try:
        retina(shlex.split(command)[1:])
    except SystemExit as exc:
        if exc.code:
            raise


def save_small(image: Path | np.ndarray, out: Path, width: int, colors: int = 128) -> Path:
    """An RGB picture (a PNG path or an ``(H, W, 3)`` uint8 RGB array) -> ``width`` px wide palette PNG."""
    img = Image.open(image).convert("RGB") if isinstance(image, Path) else Image.fromarray(image)
    if img.width > width:
        img = img.resize((width, round(img.height * width / img.width)), Image.LANCZOS)
    out.parent.mkdir(parents=True, exist_ok=True)
    img.quantize(colors, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(out, optimize=True)
    return out


def video_frame(video: Path, index: int) -> np.ndarray:
    """Frame ``index`` (or the last one) of ``video`` as ``(H, W, 3)`` uint8 RGB."""
    cap = cv2.VideoCapture(str(video))
    frame = None
    try:
        for _ in range(index + 1):
            ok, got = cap.read()
            if not ok:
                break
            frame = got
    finally:
        cap.release()
    if frame is None:
        raise SystemExit(f"{video}: no frames")
    return cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)


def main(argv: list[str] | None = None) -> list[Path]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--demo", type=Path, help="A finished `retina demo` run folder (default: run the demo now).")
    ap.add_argument("--demo-args", default="", help="Extra flags for `retina demo`, e.g. '--epochs 6'.")
    ap.add_argument("--bccd", type=Path, default=ROOT.parent / "shared" / "data" / "bccd",
                    help="A Pascal VOC dataset for the labels and anchors pictures.")
    ap.add_argument("--img-size", type=int, default=640, help="Input size of the anchors picture (BCCD).")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "img")
    ap.add_argument("--work", type=Path, default=None, help="Where the commands write (default: a temporary folder).")
    args = ap.parse_args(argv)

    work = args.work or Path(tempfile.mkdtemp(prefix="retina_docs_"))
    demo = args.demo
    if demo is None:
        run(f"retina demo --out {shlex.quote(str(work / 'demo'))} {args.demo_args}")
        demo = work / "demo" / "exp"
    if args.bccd.is_dir():
        data, split, size = args.bccd, "train", args.img_size
    else:  # the demo's synthetic shapes, at the demo's input size
        print(f"{args.bccd} not found: labels and anchors of the demo data instead")
        data, split, size = demo / "data", "val", 192
    q = shlex.quote
    run(f"retina viz {q(str(data))} --mosaic --split {split} --max-images 9 --tile 256 --out {q(str(work / 'mosaic'))}")
    run(f"retina viz {q(str(data))} --anchors --img-size {size} --split {split} --max-images 1 --out {q(str(work / 'anchors'))}")

    out = args.out
    written = [
        save_small(sorted((work / "mosaic").glob("*.png"))[0], out / "labels_mosaic.png", 600, colors=64),
        save_small(sorted((work / "anchors").glob("*.png"))[0], out / "anchors.png", 640),
        save_small(demo / "train" / "curves.png", out / "curves.png", 900, colors=64),
    ]
    if (demo / "eval" / "pr_curves.png").is_file():
        written.append(save_small(demo / "eval" / "pr_curves.png", out / "pr_curves.png", 900, colors=64))
    else:  # retina eval draws no curves for a model without a single detection
        print(f"warning: {demo / 'eval'} has no pr_curves.png (no detections): train longer")
    written.append(save_small(video_frame(demo / "predict" / "clip.mp4", 8), out / "predict_frame.png", 640))
    for path in written:
        print(f"{path} ({path.stat().st_size // 1024} KiB)")
    return written


if __name__ == "__main__":
    main()
