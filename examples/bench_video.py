"""Frames/s of `retina predict` on a generated 640x480 video, PyTorch, onnxruntime and OpenVINO, per stage.

    python examples/bench_video.py --frames 60 --backbones tf_efficientnet_lite0,resnet50
    python examples/bench_video.py --checkpoint runs/train/exp/best.pt --backends torch,onnxruntime,openvino
    python examples/bench_video.py --checkpoint best.pt --video clip.mp4 --backends openvino,openvino-int8 --calibration DATA

Random weights (timing only), image size 640 (or a given ``--checkpoint``), the full pipeline (decode, letterbox, network,
NMS, drawing, mp4v encoding) as `retina predict` runs it. Prints one line per (backbone, backend)
with the mean frames/s and the milliseconds per frame of each stage; decode, draw and encode run
in their own threads and overlap the network, so the stages add up to more than the wall clock.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import cv2
import numpy as np
import torch

from retina_cli.config import ModelConfig
from retina_cli.engine.checkpoint import save_checkpoint
from retina_cli.engine.predict import PredictConfig, run_predict
from retina_cli.engine.video import STAGES
from retina_cli.model.retinanet import RetinaNet


def make_video(path: Path, frames: int, width: int = 640, height: int = 480) -> Path:
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 30.0, (width, height))
    rng = np.random.default_rng(0)
    background = (rng.random((height, width, 3)) * 80).astype(np.uint8)
    for i in range(frames):
        img = background.copy()
        cv2.rectangle(img, (40 + 4 * i, 100), (200 + 4 * i, 300), (40, 220, 250), -1)
        cv2.circle(img, (450, 120 + 2 * i), 60, (250, 60, 60), -1)
        out.write(img)
    out.release()
    return path


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=60)
    ap.add_argument("--backbones", default="tf_efficientnet_lite0,resnet50")
    ap.add_argument("--backends", default="torch,onnxruntime")
    ap.add_argument("--img-size", type=int, default=640)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0: torch's default)")
    ap.add_argument("--checkpoint", default="", help="time this checkpoint instead of random-weight backbones")
    ap.add_argument("--fixed-size", action="store_true", help="export the square img_size only (no rectangular input)")
    ap.add_argument("--video", default="", help="time this video instead of a generated 640x480 one")
    ap.add_argument("--calibration", default="", help="dataset for the openvino-int8 backend's calibration and accuracy control")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    work = Path(tempfile.mkdtemp(prefix="retina-bench-"))
    if "openvino-int8" in args.backends.split(",") and not args.calibration:
        ap.error("--backends openvino-int8 needs --calibration DATA (the images that set the int8 ranges)")
    video = Path(args.video) if args.video else make_video(work / "bench.mp4", args.frames)
    cap = cv2.VideoCapture(str(video))
    size = f"{int(cap.get(cv2.CAP_PROP_FRAME_WIDTH))}x{int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))}"
    frames = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    cap.release()
    print(f"video {video} {size}, {frames} frames; img_size {args.img_size}; torch threads {torch.get_num_threads()}")
    print(f"{'backbone':24s} {'backend':12s} {'fps':>6s} " + " ".join(f"{s:>11s}" for s in STAGES))
    checkpoints = {}
    if args.checkpoint:
        checkpoints[Path(args.checkpoint).stem] = Path(args.checkpoint)
    else:
        for backbone in args.backbones.split(","):
            torch.manual_seed(0)
            model = RetinaNet(ModelConfig(num_classes=20, backbone=backbone, img_size=args.img_size)).eval()
            checkpoints[backbone] = work / f"{backbone}.pt"
            save_checkpoint(checkpoints[backbone], model)
    for backbone, ckpt in checkpoints.items():
        for backend in args.backends.split(","):
            model_path = ckpt
            if backend in ("onnxruntime", "openvino", "openvino-int8"):
                from retina_cli.export.formats import export_model

                fmt = "onnx" if backend == "onnxruntime" else "openvino"
                int8 = backend == "openvino-int8"
                exported = export_model(ckpt, fmt, work / f"{backbone}-{backend}{'.onnx' if fmt == 'onnx' else '.xml'}",
                                        dynamic_size=not args.fixed_size, int8=int8, calibration=args.calibration or None,
                                        timing=False)
                model_path = exported.int8 if int8 else exported.path
            # "torch" is the checkpoint itself, even where an earlier export was timed faster beside it
            cfg = PredictConfig(out=str(work / f"{backbone}-{backend}"), device="cpu", batch=args.batch,
                                backend="torch" if backend == "torch" else "auto")
            summary = run_predict(model_path, str(video), cfg)
            ms = summary.timer.per_frame_ms(summary.frames)
            print(f"{backbone:24s} {backend:12s} {summary.fps:6.2f} " + " ".join(f"{ms[s]:8.1f} ms" for s in STAGES), flush=True)


if __name__ == "__main__":
    main()
