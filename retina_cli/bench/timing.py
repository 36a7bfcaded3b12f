"""`retina bench`: inference latency split into pre-process / network / post-process, training-step
time split into forward / loss / backward / optimizer, and peak memory of each, for one or more
*subjects* (our model, torchvision's, an onnxruntime session) timed in the same run.

Subjects take turns inside every repeat (in alternating order), so load that drifts on a shared
machine slows them all alike and the ratios stay meaningful; each stage is reported as median, min and max over the
repeats after warm-up.
"""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import torch

from retina_cli.postprocess import Detections

# a stage takes the previous stage's output (the first one takes the subject's input)
Stage = tuple[str, Callable[[Any], Any]]


@dataclass(frozen=True)
class Stat:
    """Milliseconds over the repeats."""

    median: float
    min: float
    max: float

    @classmethod
    def of(cls, values: Sequence[float]) -> "Stat":
        return cls(float(statistics.median(values)), float(min(values)), float(max(values)))


@dataclass
class Subject:
    """Something to time: ``inference`` stages from a list of BGR ``(H, W, 3)`` uint8 images to
    :class:`Detections` per image (network-input pixels); ``train`` stages from nothing to a finished
    optimizer step (None: not trainable here)."""

    name: str
    inference: list[Stage]
    train: list[Stage] | None = None
    note: str = ""
    # (box pixels, score) within which its detections count as the reference's: reduced
    # precision moves scores and boxes by more than float32 rounding does
    tolerance: tuple[float, float] = (0.5, 1e-3)


@dataclass
class SubjectResult:
    name: str
    inference: dict[str, Stat] = field(default_factory=dict)  # stage -> ms, plus "total"
    train: dict[str, Stat] = field(default_factory=dict)
    memory_mb: dict[str, float] = field(default_factory=dict)  # "inference" / "train" -> peak MiB
    detections: int = 0
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "note": self.note,
            "detections": self.detections,
            "inference_ms": {k: vars(v) for k, v in self.inference.items()},
            "train_ms": {k: vars(v) for k, v in self.train.items()},
            "peak_memory_mb": self.memory_mb,
        }


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_stages(stages: Sequence[Stage], inp: Any, device: torch.device, times: dict[str, list[float]] | None = None) -> Any:
    """Runs the stages in order; with ``times``, appends each stage's milliseconds (and "total")."""
    x = inp
    total = 0.0
    for name, fn in stages:
        start = time.perf_counter()
        x = fn(x)
        _sync(device)
        ms = (time.perf_counter() - start) * 1000
        total += ms
        if times is not None:
            times.setdefault(name, []).append(ms)
    if times is not None:
        times.setdefault("total", []).append(total)
    return x


def time_subjects(
    subjects: Sequence[Subject], kind: str, inp: Any, device: torch.device, warmup: int, runs: int,
    progress: Callable[[str], None] | None = None,
) -> list[dict[str, Stat]]:
    """``kind`` "inference" or "train": per subject, stage -> Stat over ``runs`` interleaved repeats."""
    active = [s for s in subjects if getattr(s, kind) is not None]
    for i in range(warmup):
        for s in active:
            if progress:
                progress(f"{kind} warm-up {i + 1}/{warmup}: {s.name}")
            run_stages(getattr(s, kind), inp, device)
    times: dict[str, dict[str, list[float]]] = {s.name: {} for s in active}
    for i in range(runs):
        # the order flips every repeat: whoever runs first in a round (cold caches, a clock that
        # has not ramped up) is not always the same subject
        for s in active if i % 2 == 0 else active[::-1]:
            if progress:
                progress(f"{kind} run {i + 1}/{runs}: {s.name}")
            run_stages(getattr(s, kind), inp, device, times[s.name])
    return [{k: Stat.of(v) for k, v in times[s.name].items()} if s.name in times else {} for s in subjects]


@contextlib.contextmanager
def _stderr_silenced():
    """File descriptor 2 to /dev/null: the profiler's C++ side logs every start and stop there."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def peak_memory_mb(fn: Callable[[], Any], device: torch.device) -> float:
    """Peak memory (MiB) that ``fn`` allocates through torch above what was allocated before.

    CUDA: the caching allocator's peak. CPU: the profiler's running "Total Allocated" count of CPU
    tensor memory (every allocation and free is recorded), so the figure is the same however the
    C library caches freed pages, and two models are compared on what their tensors need.
    """
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        fn()
        torch.cuda.synchronize(device)
        return (torch.cuda.max_memory_allocated(device) - before) / 2**20
    from torch.profiler import ProfilerActivity, profile

    with _stderr_silenced(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "trace.json")
        prof.export_chrome_trace(path)
        with open(path) as f:
            events = json.load(f)["traceEvents"]
    totals = [
        e["args"]["Total Allocated"] for e in events
        if e.get("name") == "[memory]" and e.get("args", {}).get("Device Type") == 0
    ]
    return max([0, *totals]) / 2**20


def match_detections(a: Detections, b: Detections, box_tol: float = 0.5, score_tol: float = 1e-3) -> float:
    """Share of the detections of ``a`` and ``b`` (counted both ways) that have a partner in the
    other set with the same label, every box coordinate within ``box_tol`` pixels and the score
    within ``score_tol``; 1.0 when both are empty."""
    a, b = Detections(*(t.cpu() for t in a)), Detections(*(t.cpu() for t in b))
    na, nb = len(a.scores), len(b.scores)
    if na == 0 and nb == 0:
        return 1.0
    if na == 0 or nb == 0:
        return 0.0
    ok = (
        ((a.boxes.float()[:, None] - b.boxes.float()[None]).abs().amax(-1) <= box_tol)
        & (a.labels[:, None] == b.labels[None, :])
        & ((a.scores.float()[:, None] - b.scores.float()[None, :]).abs() <= score_tol)
    )  # (Da, Db)
    return float((ok.any(1).sum() + ok.any(0).sum()) / (na + nb))


def bench_images(size: int, batch: int, seed: int = 0) -> tuple[list[np.ndarray], list[tuple[np.ndarray, np.ndarray]]]:
    """``batch`` synthetic BGR ``(size, size, 3)`` scenes and their GT (boxes ``(G, 4)`` xyxy, labels ``(G,)``).

    Square, so neither our letterbox nor torchvision's transform resizes: both run the network on
    exactly ``size x size`` pixels.
    """
    from retina_cli.data.synthetic import draw_scene

    rng = np.random.default_rng(seed)
    images, targets = [], []
    for _ in range(batch):
        img, shapes = draw_scene(rng, size, size, max_objects=8, min_size=size // 16, max_size=size // 3)
        images.append(np.ascontiguousarray(img[..., ::-1]))
        targets.append((
            np.array([s.box for s in shapes], dtype=np.float32).reshape(-1, 4),
            np.array([s.label for s in shapes], dtype=np.int64),
        ))
    return images, targets
