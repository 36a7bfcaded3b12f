"""Which backend runs a checkpoint fastest on this machine: timed by ``retina export``, read back
by ``retina predict best.pt`` and ``retina_cli.load`` (not by ``retina eval``, which scores the
checkpoint itself).

No single rule picks the faster runtime: onnxruntime runs the nano preset's depthwise backbone and
64-wide GroupNorm head at about twice eager PyTorch's speed, while for the paper's resnet50 it is
slower than our eager path (Winograd, folded BatchNorm). So each fp32 export times its graph
against the checkpoint, taking turns, on one letterboxed 4:3 frame, run the way ``retina
predict`` runs a file (two network calls side by side on two cores or more), and writes the medians to
``<checkpoint>.timing.json`` beside the checkpoint. Loading the checkpoint with ``backend="auto"``
on a CPU in fp32 then runs the exported file when it was at most :data:`PICK_RATIO` of PyTorch's
time, and only while the record still holds: the same checkpoint and exported file (SHA-256), the
same CPU, core and thread count, and the same torch and runtime versions. Anything else (a record
from another machine, a retrained ``best.pt``, an upgraded runtime) falls back to PyTorch.

int8 graphs are never picked this way: their detections differ from the checkpoint's (within the
mAP bound the export checked), and a silent switch must not change what a model detects.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

RECORD_FORMAT = "retina-timing/1"
PICK_RATIO = 0.9  # run the export only when it took at most this share of PyTorch's time (the spread is ~15%)
RUNTIME_PACKAGES = {"onnxruntime": "onnxruntime", "openvino": "openvino"}  # backend -> distribution


@dataclass(frozen=True)
class Timing:
    """One export timed against its checkpoint on this machine: medians in ms per image of
    ``shape`` = (H, W) as predict runs them (two streams on two cores or more), the backend's
    ``candidates`` call (network, top-k and decoding; NMS is the same Python code for both and not timed)."""

    backend: str  # "onnxruntime" or "openvino"
    file: str  # the exported model, relative to the checkpoint's folder where it lies below it
    ms: float
    torch_ms: float
    shape: tuple[int, int]
    runs: int
    streams: int = 1  # network calls side by side, as predict runs them

    @property
    def ratio(self) -> float:
        return self.ms / self.torch_ms if self.torch_ms > 0 else float("inf")

    @property
    def picked(self) -> bool:
        return self.ratio <= PICK_RATIO

    def describe(self) -> str:
        """One line: both medians and what ``retina predict CHECKPOINT`` will run."""
        h, w = self.shape
        return (f"{self.backend} {self.ms:.1f} ms, PyTorch {self.torch_ms:.1f} ms per {w}x{h} image "
                f"(medians of {self.runs} rounds, {self.streams} stream{'s' if self.streams > 1 else ''}, this CPU)")


def record_path(checkpoint: str | Path) -> Path:
    """Where the timings of ``checkpoint``'s exports are kept: ``best.timing.json`` for ``best.pt``."""
    checkpoint = Path(checkpoint)
    return checkpoint.with_name(checkpoint.stem + ".timing.json")


def machine() -> dict[str, Any]:
    """What a timing holds for: CPU model, cores and threads, torch's version."""
    import torch

    return {"cpu": _cpu_name(), "cores": os.cpu_count() or 1, "threads": torch.get_num_threads(),
            "torch": _version("torch")}


def time_export(checkpoint: str | Path, exported: str | Path, runs: int = 5, warmup: int = 2, seed: int = 0) -> Timing:
    """Time the exported fp32 model against the checkpoint on the CPU as ``retina predict`` runs a
    file (:func:`~retina_cli.engine.predict.network_streams`: 2 calls side by side on 2 cores or
    more), taking turns round by round with the order alternating, on one seeded-random 4:3 frame
    letterboxed as predict does (the rectangle for a graph with dynamic height and width, else the
    square). A round is one call per stream; its time per image is the round's wall time over the
    streams. The rounds are :func:`~retina_cli.bench.timing.time_subjects`'s, as in ``retina bench``."""
    from concurrent.futures import ThreadPoolExecutor

    import torch

    from retina_cli.bench.timing import time_subjects
    from retina_cli.data.transforms import rect_shape
    from retina_cli.engine.predict import load_backend, network_streams

    torch_backend = load_backend(checkpoint, "torch", "cpu")
    other = load_backend(exported, "auto", "cpu")
    size = other.model_cfg.img_size
    shape = rect_shape(4 * size, 3 * size, size, other.stride) if other.stride else (size, size)
    batch = np.random.default_rng(seed).integers(0, 256, (1, *shape, 3), dtype=np.uint8)
    with network_streams(torch_backend) as torch_streams, network_streams(other) as other_streams, \
            ThreadPoolExecutor(max(torch_streams, other_streams)) as pool:
        subjects = [_round(torch_backend, torch_streams, pool), _round(other, other_streams, pool)]
        torch_stats, other_stats = time_subjects(subjects, "inference", batch, torch.device("cpu"), warmup, runs)
    ms_torch = torch_stats["round"].median / torch_streams
    ms_other = other_stats["round"].median / other_streams
    return Timing(other.name, _relative(Path(exported), Path(checkpoint).parent), ms_other, ms_torch, tuple(shape),
                  runs, other_streams)


def _round(backend: Any, streams: int, pool: Any) -> Any:
    """A bench Subject whose one stage is a round: ``streams`` calls of the backend side by side."""
    from retina_cli.bench.timing import Subject

    return Subject(backend.name, [("round", lambda batch: list(pool.map(backend.candidates, [batch] * streams)))])


def write_timing(checkpoint: str | Path, timing: Timing) -> Path:
    """Add ``timing`` to the checkpoint's record (replacing that backend's entry; a record of
    another checkpoint or machine is started afresh) -> the record's path."""
    path = record_path(checkpoint)
    here = {"checkpoint_sha256": _sha256(Path(checkpoint)), "machine": machine()}
    record = _read(path)
    if not record or any(record.get(k) != v for k, v in here.items()):
        record = {"format": RECORD_FORMAT, **here, "exports": {}}
    exported = Path(checkpoint).parent / timing.file
    record["exports"][timing.backend] = {
        **asdict(timing), "shape": list(timing.shape), "sha256": _files_sha256(exported),
        "runtime": _version(RUNTIME_PACKAGES[timing.backend]),
    }
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(record, indent=2) + "\n")
    os.replace(tmp, path)
    return path


def faster_export(checkpoint: str | Path) -> tuple[Path, Timing] | None:
    """The exported fp32 model to run instead of ``checkpoint`` on this CPU, with its timing;
    None when there is no record, it no longer holds, or PyTorch was as fast (see the module)."""
    return export_choice(checkpoint)[0]


def export_choice(checkpoint: str | Path) -> tuple[tuple[Path, Timing] | None, str]:
    """-> (:func:`faster_export`'s answer, why a record that names a faster export no longer
    holds: another machine, a changed checkpoint or export, an upgraded runtime; "" when there is
    nothing to say: no record, or PyTorch was as fast). Of the exports that were faster, the one
    with the lowest ratio whose record still holds wins."""
    checkpoint = Path(checkpoint)
    record = _read(record_path(checkpoint)) if checkpoint.is_file() else None
    if not record:
        return None, ""
    faster: list[tuple[Timing, dict[str, Any]]] = []
    for backend, entry in record.get("exports", {}).items():
        try:
            timing = Timing(backend, entry["file"], float(entry["ms"]), float(entry["torch_ms"]),
                            tuple(entry["shape"]), int(entry["runs"]), int(entry.get("streams", 1)))
        except (KeyError, TypeError, ValueError):
            continue
        if backend in RUNTIME_PACKAGES and timing.picked:
            faster.append((timing, entry))
    if not faster:
        return None, ""
    again = f"`retina export {checkpoint}` times it again"
    name = record_path(checkpoint).name
    if record.get("machine") != machine():
        return None, f"{name} was timed on another machine (CPU, cores, threads or torch version); {again}"
    if record.get("checkpoint_sha256") != _sha256(checkpoint):  # hashed only when an export would be picked
        return None, f"{checkpoint.name} changed after {name} was written; {again}"
    reasons = []
    for timing, entry in sorted(faster, key=lambda te: te[0].ratio):
        now = _version(RUNTIME_PACKAGES[timing.backend])
        exported = checkpoint.parent / timing.file
        if entry.get("runtime") != now:
            reasons.append(f"{timing.backend} is {now or 'not installed'} here, {entry.get('runtime')} when timed")
        elif not exported.is_file() or entry.get("sha256") != _files_sha256(exported):
            reasons.append(f"{timing.file} is missing or changed after it was timed")
        else:
            return (exported, timing), ""
    return None, f"{'; '.join(reasons)}; {again}"


def _read(path: Path) -> dict[str, Any] | None:
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and record.get("format") == RECORD_FORMAT else None


def _files_sha256(path: Path) -> str | None:
    """The model file's hash; an OpenVINO IR's covers its .xml and .bin. None when missing."""
    parts = [path, *([path.with_suffix(".bin")] if path.suffix == ".xml" else [])]
    if not all(p.is_file() for p in parts):
        return None
    return "+".join(_sha256(p) for p in parts)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _relative(path: Path, folder: Path) -> str:
    try:
        return str(path.resolve().relative_to(folder.resolve()))
    except ValueError:
        return str(path.resolve())


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _cpu_name() -> str:
    """The CPU model, with family and model numbers where Linux gives them (VMs of one vendor
    string can be different chips)."""
    try:
        fields: dict[str, str] = {}
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            key = key.strip()
            if key in ("model name", "cpu family", "model") and key not in fields:
                fields[key] = value.strip()
            if not line.strip() and fields:
                break
        if fields:
            return f"{fields.get('model name', '')} (family {fields.get('cpu family', '?')} model {fields.get('model', '?')})"
    except OSError:
        pass
    return platform.processor() or platform.machine()
