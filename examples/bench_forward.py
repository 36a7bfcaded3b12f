"""Time a resnet50-FPN RetinaNet forward pass on CPU: ours against torchvision's.

Both models hold the same weights (torchvision's random init converted with
``retina_cli.engine.convert``), so they do the same work and give the same detections.

    python examples/bench_forward.py --size 640 --threads 2 --runs 10

Rows: the network alone (backbone + FPN + head), then the full inference path (normalisation,
anchors, top-k, decode, NMS; torchvision's also runs its GeneralizedRCNNTransform, which does not
resize a ``size x size`` input when min_size = max_size = size). ``--score-bias`` sets the class
bias of both heads: the default init bias (prior 0.01) gives almost no scores above 0.05, while
-2 fills the per-level top-1000 and exercises post-processing fully.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Callable

import torch
from torchvision.models.detection import retinanet_resnet50_fpn

from retina_cli.engine.convert import torchvision_to_retina
from retina_cli.engine.detector import InferenceModel, Normalize


def bench(fns: list[Callable[[], object]], warmup: int, runs: int) -> list[list[float]]:
    """Milliseconds of ``runs`` calls of each function after ``warmup`` calls. The functions take
    turns within each run, so a machine whose load drifts slows them all alike."""
    for _ in range(warmup):
        for fn in fns:
            fn()
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(runs):
        for fn, out in zip(fns, times):
            start = time.perf_counter()
            fn()
            out.append((time.perf_counter() - start) * 1000)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=640, help="square input size (a multiple of 128)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--score-bias", type=float, default=None, help="class-logit bias of both heads")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    tv = retinanet_resnet50_fpn(weights=None, weights_backbone=None, min_size=args.size, max_size=args.size).eval()
    if args.score_bias is not None:
        torch.nn.init.constant_(tv.head.classification_head.cls_logits.bias, args.score_bias)
    ours, _ = torchvision_to_retina(tv.state_dict(), img_size=args.size)
    inference = InferenceModel(ours).eval()
    normalize = Normalize(ours.cfg.mean, ours.cfg.std)

    image = torch.rand(1, 3, args.size, args.size) * 255  # 0..255, as InferenceModel takes it
    normalized = normalize(image)
    with torch.inference_mode():
        tv_dets = tv(list(image / 255))
        our_dets = inference(image)
        rows = [
            ("retina  RetinaNet.forward (network only)", lambda: ours(normalized)),
            ("tv      backbone + FPN + head", lambda: tv.head(list(tv.backbone(normalized).values()))),
            ("retina  InferenceModel (full)", lambda: inference(image)),
            ("tv      RetinaNet eval (full)", lambda: tv(list(image / 255))),
        ]
        print(
            f"resnet50-FPN P3-P7, {args.size}x{args.size}, batch 1, {torch.get_num_threads()} threads, "
            f"torch {torch.__version__}; detections: ours {len(our_dets[0].scores)}, "
            f"torchvision {len(tv_dets[0]['scores'])}"
        )
        for (name, _), times in zip(rows, bench([fn for _, fn in rows], args.warmup, args.runs)):
            print(
                f"{name:42s} median {statistics.median(times):8.1f} ms   "
                f"(min {min(times):7.1f}, max {max(times):7.1f} over {args.runs} runs)"
            )


if __name__ == "__main__":
    main()
