"""`retina predict`: a checkpoint (or exported ONNX model) + a SOURCE -> annotated media, JSON, CSV.

Flow per batch of frames: letterbox to the model's input (:mod:`retina_cli.data.transforms`): the
smallest rectangle of multiples of the top stride that holds the frame (640x480 -> 640x512 at 640 px,
P3-P7) where the backend takes any size, else the square ``img_size``;
backend -> :class:`~retina_cli.postprocess.Candidates`, then the shared
:func:`~retina_cli.postprocess.select_detections` (threshold, NMS, cap) and ``boxes_from_letterbox``:
boxes come back in original image pixels. Video frames go through the threaded pipeline of
:mod:`retina_cli.engine.video`; so do image files (decoding and saving overlap the network too).

One inference path for the CLI and the Python API (:mod:`retina_cli.api`): both get their
:class:`Predictor` from :func:`make_predictor` and their per-frame
:class:`~retina_cli.engine.results.Result` objects from :meth:`Predictor.results`; ``predictions.json``,
the CSV, the txt labels and the annotated media are written from those Results.

With tracking (``PredictConfig.tracker``) each video, and the image files taken as one sequence, gets
a :class:`~retina_cli.tracking.session.TrackSession` in the predicting thread: the Results carry
track ids, the video shows trails and count lines, and ``mot/<source>.txt`` (MOTChallenge) and
``counts.json`` are written next to the JSON.

Under torchrun (WORLD_SIZE > 1) each rank takes every ``world``-th source, writes its rows to a
part file, and rank 0 merges them into ``predictions.json`` / ``predictions.csv``.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterator, Protocol, Sequence

import cv2
import numpy as np
import torch

from retina_cli.engine.results import Result
from retina_cli.config import ModelConfig, PostprocessConfig
from retina_cli.data.transforms import boxes_from_letterbox, letterbox_batch, rect_shape
from retina_cli.engine import writers
from retina_cli.engine.reporting import SilentReporter
from retina_cli.engine.runs import absent_folders, discard_on_failure, next_run_dir, output_dir
from retina_cli.engine.sources import Frame, Source, SourceError, VideoReader, iter_images, resolve_sources
from retina_cli.engine.video import CapturePacer, PipelineStats, StageTimer, run_pipeline
from retina_cli.errors import ConfigError
from retina_cli.postprocess import Candidates, select_detections

PRECISIONS = ("fp32", "bf16")
BACKENDS = ("auto", "torch", "onnxruntime", "openvino")


@dataclass(frozen=True)
class PredictConfig:
    """`retina predict` flags. conf / iou / max_det: None keeps the checkpoint's value.

    classes: names or ids to keep (empty: all). line_width 0: scaled with the image.
    """

    conf: float | None = None
    iou: float | None = None
    max_det: int | None = None
    classes: tuple[str, ...] = ()
    batch: int = 1
    device: str = "auto"
    backend: str = "auto"
    precision: str = "fp32"
    winograd: bool = True
    save_media: bool = True
    save_txt: bool = False
    line_width: int = 0
    codec: str = "mp4v"
    project: str = "runs/predict"
    name: str = ""
    out: str = ""
    exist_ok: bool = False
    profile: bool = False
    tracker: Any = None  # a retina_cli.tracking.TrackerConfig: track objects (None: detect only)
    count_lines: tuple = ()  # retina_cli.tracking.CountLine each: count tracks crossing them (needs tracker)
    slicing: Any = None  # a retina_cli.slicing.SliceConfig: sliced inference (None: whole frames)
    all_frames: bool = False  # live streams too keep every frame (queued: the output falls behind)

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ConfigError(f"--precision {self.precision!r}: expected fp32 or bf16")
        if self.backend not in BACKENDS:
            raise ConfigError(f"--backend {self.backend!r}: expected one of {', '.join(BACKENDS)}")
        if self.batch < 1:
            raise ConfigError(f"--batch must be at least 1, got {self.batch}")
        if self.codec not in writers.CODECS:
            raise ConfigError(f"--codec {self.codec!r}: expected one of {', '.join(writers.CODECS)}")
        if self.count_lines and self.tracker is None:
            raise ConfigError("--count-line counts tracks: add --track")


class Backend(Protocol):
    """Runs the network and box decoding: letterboxed RGB ``(N, H, W, 3)`` uint8 -> Candidates.

    stride: H and W may be any multiples of it (rectangular inference); None: only the square
    ``(img_size, img_size)``. picked: the :class:`~retina_cli.export.timing.Timing` for which
    :func:`load_backend` ran this export in place of the checkpoint it was given, else None.
    """

    name: str
    model_cfg: ModelConfig
    post_cfg: PostprocessConfig
    stride: int | None
    picked: Any

    def candidates(self, batch: np.ndarray) -> Candidates: ...


class TorchBackend:
    """A checkpoint's RetinaNet on ``device``; ``precision`` bf16 runs the network under autocast."""

    name = "torch"
    picked = None
    kept = ""  # why a timed, faster export of this checkpoint did not run instead (load_backend)

    def __init__(
        self, model: torch.nn.Module, post_cfg: PostprocessConfig, device: torch.device, precision: str = "fp32",
        winograd: bool = True,
    ) -> None:
        from retina_cli.engine.detector import DecodingDetector, prepare_inference

        self.model_cfg: ModelConfig = model.cfg
        self.post_cfg = post_cfg
        self.stride: int | None = model.cfg.top_stride  # anchors follow the feature maps: any multiple
        self.device = device
        self.precision = precision
        # the letterboxed NHWC batch permuted to NCHW already has the channels-last strides
        # prepare_inference gives the weights
        # the prepared model is kept: evaluation (engine.evaluation_run) runs it through InferenceModel
        self.model = prepare_inference(model, device, precision, winograd)
        self.det = DecodingDetector(self.model, post_cfg.topk).to(device).eval()

    @torch.inference_mode()
    def candidates(self, batch: np.ndarray) -> Candidates:
        x = torch.from_numpy(batch).to(self.device).permute(0, 3, 1, 2).float()  # (N, 3, H, W) 0..255
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16"):
            cand = self.det(x)
        if self.device.type == "cuda":  # so that the "network" stage is timed honestly
            torch.cuda.synchronize(self.device)
        return cand


def load_backend(
    path: str | Path, backend: str = "auto", device: str = "auto", precision: str = "fp32", local_rank: int = 0,
    winograd: bool = True, exports: bool = True,
) -> Backend:
    """A checkpoint (.pt) -> TorchBackend; an exported model (.onnx) -> the onnxruntime backend;
    an OpenVINO IR (.xml) -> the OpenVINO backend (``precision`` bf16 asks its CPU plugin for bf16).

    ``backend="auto"`` on a checkpoint, on the CPU in fp32 with Winograd: its fp32 export when
    ``retina export`` timed that faster than PyTorch on this machine (:mod:`retina_cli.export.timing`;
    the backend's ``picked`` says so), else the checkpoint in PyTorch. exports=False: always the
    checkpoint itself (``retina eval`` scores exactly the weights it is given)."""
    if precision not in PRECISIONS:
        raise ConfigError(f"precision {precision!r}: expected fp32 or bf16")
    if backend not in BACKENDS:
        raise ConfigError(f"backend {backend!r}: expected one of {', '.join(BACKENDS)}")
    path = Path(path)
    if backend == "openvino" or (backend == "auto" and path.suffix.lower() == ".xml"):
        if path.suffix.lower() != ".xml":
            raise ConfigError(f"{path}: --backend openvino needs an OpenVINO model (run `retina export {path} --format openvino` first)")
        from retina_cli.export.openvino import OpenVinoBackend

        return OpenVinoBackend(path, device, precision)
    if path.suffix.lower() == ".xml":
        raise ConfigError(f"{path}: an OpenVINO model runs with --backend openvino (or auto), not {backend}")
    use_onnx = backend == "onnxruntime" or (backend == "auto" and path.suffix.lower() == ".onnx")
    if use_onnx:
        if path.suffix.lower() != ".onnx":
            raise ConfigError(f"{path}: --backend onnxruntime needs an exported .onnx model (run `retina export {path}` first)")
        if precision != "fp32":
            raise ConfigError(f"{path}: --precision {precision} is for the torch backend; the ONNX model runs in fp32")
        from retina_cli.export.runtime import OnnxBackend

        return OnnxBackend(path, device)
    if path.suffix.lower() == ".onnx":
        raise ConfigError(f"{path}: an ONNX model runs with --backend onnxruntime (or auto), not torch")
    from retina_cli.engine.checkpoint import configs_from_checkpoint, model_from_checkpoint
    from retina_cli.engine.distributed import select_device

    dev = select_device(device, local_rank)
    kept = ""
    if exports and backend == "auto" and dev.type == "cpu" and precision == "fp32" and winograd:
        faster, kept = _faster_export(path)
        if faster is not None:
            return faster
    model, ckpt = model_from_checkpoint(path)
    _, _, post_cfg = configs_from_checkpoint(ckpt)
    if precision == "bf16" and dev.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ConfigError(f"--precision bf16: {dev} does not support bfloat16 (use fp32)")
    out = TorchBackend(model, post_cfg, dev, precision, winograd)
    out.kept = kept
    return out


def picked_line(backend: Backend) -> str:
    """What ran in place of the checkpoint, in a few words; or why the checkpoint ran although a
    timing record named a faster export ("" when there is nothing to say)."""
    timing = getattr(backend, "picked", None)
    if timing is None:
        kept = getattr(backend, "kept", "")
        return f"ran the checkpoint in PyTorch, not its faster export: {kept}" if kept else ""
    return f"ran {timing.file} ({timing.backend}; timed {timing.ms:.0f} vs PyTorch's {timing.torch_ms:.0f} ms here; --backend torch for the checkpoint)"


def _faster_export(checkpoint: Path) -> tuple[Backend | None, str]:
    """The checkpoint's fp32 export that ``retina export`` timed faster than PyTorch on this CPU,
    loaded, with its :class:`~retina_cli.export.timing.Timing` as ``picked``; None to run PyTorch,
    with why when a record named a faster export that no longer holds (else "")."""
    from retina_cli.export.timing import export_choice

    found, why = export_choice(checkpoint)
    if found is None:
        return None, why
    exported, timing = found
    backend = load_backend(exported, "auto", "cpu")
    backend.picked = timing
    return backend, ""


def class_names(model_cfg: ModelConfig) -> tuple[str, ...]:
    """The model's class names; ``"0"``, ``"1"``, ... for a model trained without names."""
    return tuple(model_cfg.class_names) or tuple(str(i) for i in range(model_cfg.num_classes))


def override_postprocess(post: PostprocessConfig, conf: float | None = None, iou: float | None = None,
                         max_det: int | None = None) -> PostprocessConfig:
    """``post`` with the score threshold, NMS IoU and per-image cap replaced where given (None keeps)."""
    return replace(
        post,
        score_thresh=post.score_thresh if conf is None else conf,
        nms_thresh=post.nms_thresh if iou is None else iou,
        max_det=post.max_det if max_det is None else max_det,
    )


def parse_classes(classes: Sequence[str], names: Sequence[str], num_classes: int) -> list[int] | None:
    """``--classes`` values (names or 0-based ids, commas allowed) -> sorted class ids; None keeps all."""
    values = [v.strip() for c in classes for v in str(c).split(",") if v.strip()]
    if not values:
        return None
    ids = set()
    for v in values:
        if v in names:
            ids.add(list(names).index(v))
        elif v.isdigit() and int(v) < num_classes:
            ids.add(int(v))
        else:
            known = ", ".join(names) if names else f"ids 0-{num_classes - 1}"
            raise ConfigError(f"--classes {v!r}: not a class of this model ({known})")
    return sorted(ids)


@dataclass
class FrameResult:
    """One frame's detections in original pixels: boxes ``(D, 4)`` float32 xyxy, scores ``(D,)``, labels ``(D,)`` int64."""

    boxes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray


class Predictor:
    """BGR frames of any size -> FrameResult per frame (letterbox, backend, NMS, letterbox undone).

    rect: letterbox to the smallest rectangle of the backend's stride that holds the batch (the
    default, where the backend takes it); False: always the square ``img_size``.
    """

    def __init__(self, backend: Backend, post_cfg: PostprocessConfig, classes: list[int] | None = None,
                 timer: StageTimer | None = None, rect: bool = True) -> None:
        self.backend = backend
        self.post_cfg = post_cfg
        self.size = backend.model_cfg.img_size
        self.stride = getattr(backend, "stride", None) if rect else None
        self.names = class_names(backend.model_cfg)
        self.classes = torch.tensor(classes, dtype=torch.int64) if classes is not None else None
        self.timer = timer or StageTimer()

    def results(self, frames: Sequence[Frame]) -> list[Result]:
        """Decoded frames -> one :class:`Result` per frame (what the API returns and the CLI writes).

        A frame whose source kind is "array" (an in-memory picture given to the API) has no path.
        """
        out = self([f.image for f in frames])
        return [
            Result(r.boxes, r.scores, r.labels, self.names, f.image.shape[:2],
                   path=None if f.source.kind == "array" else f.source.spec, frame=f.index, image=f.image)
            for f, r in zip(frames, out)
        ]

    def __call__(self, images: Sequence[np.ndarray]) -> list[FrameResult]:
        """images: ``(H_i, W_i, 3)`` uint8 BGR. Rectangular, the images run in groups of one canvas
        shape each (a video is one group), so a frame's detections do not depend on its batch."""
        if self.stride is None or len(images) == 1:
            return self._run(images)
        groups: dict[tuple[int, int], list[int]] = {}
        for i, im in enumerate(images):
            groups.setdefault(rect_shape(im.shape[1], im.shape[0], self.size, self.stride), []).append(i)
        out: list[FrameResult | None] = [None] * len(images)
        for canvas, idx in groups.items():
            for i, r in zip(idx, self._run([images[i] for i in idx], canvas)):
                out[i] = r
        return out  # type: ignore[return-value]

    def _run(self, images: Sequence[np.ndarray], canvas: tuple[int, int] | None = None) -> list[FrameResult]:
        """One network call on ``images`` letterboxed onto one canvas (``(H, W)``; None: the
        batch's own, :func:`letterbox_batch`)."""
        with self.timer("preprocess"):
            batch, metas = letterbox_batch(images, self.size, self.stride, canvas)  # (N, H, W, 3) RGB
        with self.timer("network"):
            cand = self.backend.candidates(batch)
        with self.timer("postprocess"):
            if self.classes is not None:
                keep = torch.isin(cand.labels, self.classes.to(cand.labels.device))
                cand = cand._replace(scores=torch.where(keep, cand.scores, torch.zeros_like(cand.scores)))
            dets = select_detections(cand, (batch.shape[1], batch.shape[2]), self.post_cfg)
            out = []
            for det, meta in zip(dets, metas):
                boxes = boxes_from_letterbox(det.boxes.float().cpu(), meta)
                out.append(FrameResult(boxes.numpy(), det.scores.float().cpu().numpy(), det.labels.cpu().numpy()))
        return out


def make_predictor(
    backend: Backend, conf: float | None = None, iou: float | None = None, max_det: int | None = None,
    classes: Sequence[str | int] | None = None, timer: StageTimer | None = None,
) -> Predictor:
    """The backend with its checkpoint's post-processing, overridden where given (None keeps), and
    a class filter (names or 0-based ids; empty or None keeps all). conf None: the checkpoint's
    predict threshold (:meth:`~retina_cli.config.PostprocessConfig.predict_threshold`: the F1-best
    of its training's validation), not validation's low ``score_thresh``."""
    conf = backend.post_cfg.predict_threshold() if conf is None else conf
    post = override_postprocess(backend.post_cfg, conf, iou, max_det)
    ids = parse_classes([str(c) for c in classes or ()], class_names(backend.model_cfg), backend.model_cfg.num_classes)
    return Predictor(backend, post, ids, timer)


@dataclass
class PredictSummary:
    out_dir: Path
    names: tuple[str, ...] = ()
    frames: int = 0
    seconds: float = 0.0
    per_class: Counter = field(default_factory=Counter)
    bad_frames: int = 0
    skipped: list[str] = field(default_factory=list)
    media: list[Path] = field(default_factory=list)
    timer: StageTimer = field(default_factory=StageTimer)
    interrupted: bool = False
    tracks: dict[str, dict[str, Any]] = field(default_factory=dict)  # source -> TrackSession.summary()
    live: dict[str, dict[str, Any]] = field(default_factory=dict)  # stream -> live_summary()
    conf: float = 0.0  # the score threshold the detections were kept at
    ran: str = ""  # the model that ran, when it is not the one given (a faster export of the checkpoint)

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0


class Progress(Protocol):
    def start(self, name: str, total: int | None) -> None: ...
    def advance(self, n: int) -> None: ...
    def stop(self) -> None: ...



class _Job:
    """Per-source state shared by the pipeline callbacks: rows, counters, save folders."""

    def __init__(self, cfg: PredictConfig, names: Sequence[str], out_dir: Path, summary: PredictSummary) -> None:
        self.cfg, self.names, self.out_dir, self.summary = cfg, names, out_dir, summary
        self.rows: list[dict[str, Any]] = []
        self.taken: set[str] = set()
        self.labels_dir = out_dir / "labels"
        self.sessions: list[tuple[str, Any]] = []  # (source name, TrackSession) in order
        self.taken_mot: set[str] = set()
        if cfg.tracker is not None:
            summary.timer.seconds.setdefault("track", 0.0)
        if cfg.save_txt:
            self.labels_dir.mkdir(parents=True, exist_ok=True)

    def record(self, frames: list[Frame], items: list[tuple[Result, Any]]) -> None:
        for frame, (res, _) in zip(frames, items):
            src = frame.source
            self.rows.extend(writers.detection_rows(src.index, src.spec, res.frame, res.boxes, res.scores, res.class_ids,
                                                    res.names, res.track_ids))
            self.summary.per_class.update(res.class_ids.tolist())
            if self.cfg.save_txt:
                stem = src.stem if not src.is_video else f"{src.stem}_{res.frame}"
                h, w = res.orig_shape
                writers.write_yolo_txt(self.labels_dir / f"{stem}.txt", res.boxes, res.class_ids, w, h)
        self.summary.frames += len(frames)

    def draw(self, frame: Frame, item: tuple[Result, Any]) -> np.ndarray:
        """The frame with its boxes (and the tracking overlay), ``(H, W, 3)`` uint8 BGR (a copy)."""
        res, overlay = item
        with self.summary.timer("draw"):
            image = res.plot(line_width=self.cfg.line_width or None)
            if overlay is not None:
                from retina_cli.drawing.tracks import draw_count_lines, draw_trails

                draw_trails(image, overlay.trails, self.cfg.line_width or None)
                draw_count_lines(image, overlay.lines, self.cfg.line_width or None)
            return image

    def session(self, name: str, frame_rate: float) -> Any:
        """A TrackSession for one source (None without tracking); its summary and MOT file are written at the end."""
        if self.cfg.tracker is None:
            return None
        from retina_cli.tracking.session import TrackSession

        session = TrackSession(self.names, self.cfg.tracker, frame_rate, self.cfg.count_lines)
        self.sessions.append((name, session))
        return session

    def pipeline_steps(self, predictor: Predictor, session: Any, sequence: bool = False) -> dict[str, Any]:
        """run_pipeline's ``predict`` (frames -> Results, safe to run in several threads at once)
        and ``ordered`` (Results -> (Result, Overlay or None) per frame; tracking runs there, in
        the calling thread, in frame order)."""

        def ordered(frames: list[Frame], results: list[Result]) -> list[tuple[Result, Any]]:
            if session is None:
                return [(r, None) for r in results]
            with self.summary.timer("track"):
                return [session.step(r, sequence) for r in results]

        return {"predict": predictor.results, "ordered": ordered}


@contextlib.contextmanager
def network_streams(backend: Backend, live: bool = False) -> Iterator[int]:
    """How many batches the pipeline predicts at once, with the backend set up for it.

    On a CPU of 2 cores or more, a file (not a live source) gets 2 streams: two network calls side
    by side outrun one that uses every core, whose layers each wait for the slowest thread (and
    for the draw / encode threads that take its cores). PyTorch: n // 2 threads each for the
    duration (nano on a 640x480 BCCD video, 2-core Zen 3, interleaved: 13.3 -> 16.5 frames/s);
    OpenVINO: compiled for 2 streams (:meth:`~retina_cli.export.openvino.OpenVinoBackend.use_streams`;
    the same video: 18.7 -> 19.9); onnxruntime: sessions of half the threads each
    (:meth:`~retina_cli.export.runtime.OnnxBackend.use_streams`; 20.1 -> 22.5). Live sources and CUDA: 1.
    """
    threads = torch.get_num_threads()
    device = getattr(backend, "device", None)
    if not live and backend.name == "torch" and isinstance(device, torch.device) and device.type == "cpu" and threads >= 2:
        torch.set_num_threads(threads // 2)
        try:
            yield 2
        finally:
            torch.set_num_threads(threads)
    elif not live and hasattr(backend, "use_streams") and (os.cpu_count() or 1) >= 2:
        try:
            yield backend.use_streams(2)
        finally:
            backend.use_streams(1)
    else:
        yield 1


def _predict_images(sources: list[Source], predictor: Predictor, job: _Job, progress: Progress, warn: Callable[[str], None]) -> None:
    def sink(frame: Frame, item: tuple[Result, Any]) -> None:
        image = job.draw(frame, item)
        path = writers.unique_path(job.out_dir, Path(frame.source.spec).name, job.taken)
        with job.summary.timer("encode"):
            writers.write_image(path, image)
        job.summary.media.append(path)

    def skipped(msg: str) -> None:
        job.summary.skipped.append(msg)
        warn(msg)
        progress.advance(1)

    progress.start("images", len(sources))
    # tracked, the image files are one sequence in name order (a MOTChallenge img1/ folder, say)
    session = job.session(Path(sources[0].spec).parent.name or "images", 30.0)
    with network_streams(predictor.backend) as streams:
        run_pipeline(
            iter_images(sources, skipped), sink=sink if job.cfg.save_media else (lambda f, r: None),
            batch_size=job.cfg.batch, timer=job.summary.timer,
            on_batch=lambda frames, results: (job.record(frames, results), progress.advance(len(frames))),
            streams=streams, **job.pipeline_steps(predictor, session, sequence=True),
        )


def live_summary(stats: PipelineStats, all_frames: bool) -> dict[str, Any]:
    """A stream's frame counts and lag -> the ``live`` entry of the summary (and of the torchrun part file).

    lag_ms: from each frame's decode to its output being written (median / p95 / max). In latest
    mode the reader never waits, so decode follows the source and this is how far the output is
    behind it (plus the network's and the camera's own delay). With ``all_frames`` the backlog
    waits before decode, in the socket and FFmpeg, where this clock does not see it.
    """
    return {"mode": "all-frames" if all_frames else "latest", "read": stats.read, "predicted": stats.predicted,
            "dropped": stats.dropped, "lag_ms": stats.lag_ms()}


def _predict_video(source: Source, predictor: Predictor, job: _Job, progress: Progress) -> None:
    reader = VideoReader(source)
    info = reader.info
    # a live source keeps only the newest frame (the output follows it); a file keeps every frame
    latest = source.kind == "stream" and not job.cfg.all_frames
    stats = PipelineStats() if source.kind == "stream" else None
    video_writer = None
    if job.cfg.save_media:
        path = writers.unique_path(job.out_dir, f"{source.stem}.mp4", job.taken)
        video_writer = writers.VideoWriter(path, info.fps, info.width, info.height, job.cfg.codec)
        job.summary.media.append(path)
    # the kept frames of a live source are written on its clock: a dropped frame's slot repeats the frame before
    pacer = CapturePacer(info.fps) if latest else None
    held: list[np.ndarray] = []

    def sink(frame: Frame, item: tuple[Result, Any]) -> None:
        image = job.draw(frame, item)
        with job.summary.timer("encode"):
            if pacer is None:
                video_writer.write(image)
                return
            for _ in range(pacer.repeats(frame.captured)):  # 0 on the first frame
                video_writer.write(held[0])
            held[:] = [image]

    session = job.session(source.stem, info.fps)
    progress.start(Path(source.spec).name if source.kind == "video" else source.spec, info.frames)
    try:
        with network_streams(predictor.backend, live=latest) as streams:
            run_pipeline(
                reader, sink=sink if video_writer is not None else (lambda f, r: None), batch_size=job.cfg.batch,
                timer=job.summary.timer,
                on_batch=lambda frames, results: (job.record(frames, results), progress.advance(len(frames))),
                latest=latest, stats=stats, streams=streams, **job.pipeline_steps(predictor, session),
            )
    finally:
        if video_writer is not None:
            if held:
                for _ in range(pacer.close()):
                    video_writer.write(held[0])
            video_writer.close()
        job.summary.bad_frames += reader.bad_frames
        if stats is not None:
            job.summary.live[source.spec] = live_summary(stats, job.cfg.all_frames)


def run_predict(
    model_path: str | Path,
    source: str,
    cfg: PredictConfig,
    progress: Progress | None = None,
    warn: Callable[[str], None] = lambda msg: None,
) -> PredictSummary:
    """Predict on every frame of ``source``; writes media, ``predictions.json`` and ``predictions.csv``
    into the run folder and returns the summary (on rank 0 it covers all ranks).

    A KeyboardInterrupt stops the run cleanly: videos are closed playable, the JSON/CSV hold the
    frames done, and the summary comes back with ``interrupted`` set.
    """
    from retina_cli.engine import distributed as dist

    info = dist.init_distributed(cfg.device)
    progress = progress or SilentReporter()
    try:
        sources = resolve_sources(source)
        # the output folder is made and probed before the model loads or an image is read; a run
        # that then fails on its input takes back the folder (or what it wrote into an --out one)
        made = _out_dir(cfg) if info.is_main else None
        out_dir = dist.broadcast_object(made[0] if made else None)
        with discard_on_failure(made[0], made[1], made=made[2]) if made else contextlib.nullcontext():
            return _predict(model_path, sources, cfg, out_dir, info, progress, warn)
    finally:
        dist.cleanup()


def _predict(model_path: str | Path, sources: list[Source], cfg: PredictConfig, out_dir: Path, info: Any,
             progress: Progress, warn: Callable[[str], None]) -> PredictSummary:
    if len(sources) == 1:  # the only input: its refusal is the error below, not also a warning
        warn = lambda msg: None  # noqa: E731
    backend = load_backend(model_path, cfg.backend, cfg.device, cfg.precision, info.local_rank, cfg.winograd)
    timer = StageTimer()
    # tracked, the detector keeps everything down to the tracker's low threshold (ByteTrack's second association)
    conf = cfg.conf if cfg.tracker is None else cfg.tracker.low_thresh
    predictor = make_predictor(backend, conf, cfg.iou, cfg.max_det, cfg.classes, timer)
    if cfg.slicing is not None:
        from retina_cli.slicing.predictor import SlicedPredictor

        predictor = SlicedPredictor(predictor, cfg.slicing)
    summary = PredictSummary(out_dir, predictor.names, timer=timer, conf=predictor.post_cfg.score_thresh,
                             ran=picked_line(backend))
    job = _Job(cfg, predictor.names, out_dir, summary)
    mine = sources[info.rank :: info.world_size]
    t0 = time.perf_counter()
    try:
        images = [s for s in mine if not s.is_video]
        if cfg.tracker is not None:  # tracked, the image files are one sequence: one rank takes all of them
            images = [s for s in sources if not s.is_video] if info.is_main else []
        if images:
            _predict_images(images, predictor, job, progress, warn)
        for src in (s for s in mine if s.is_video):
            _predict_video(src, predictor, job, progress)
    except KeyboardInterrupt:  # the files hold what was done; the caller reports and exits 130
        summary.interrupted = True
    finally:
        progress.stop()
        summary.seconds = time.perf_counter() - t0
        _write_results(job, info, summary)
    if len(sources) == 1 and summary.frames == 0 and summary.skipped:
        raise SourceError(summary.skipped[0])
    return summary


def _out_dir(cfg: PredictConfig) -> tuple[Path, bool, list[Path]]:
    """The run folder, created and checked writable -> (folder, whether it was made for this run,
    the folders above it made with it): what ``discard_on_failure`` takes back."""
    if cfg.out or (cfg.exist_ok and cfg.name):
        out = Path(cfg.out) if cfg.out else Path(cfg.project) / cfg.name
        absent = absent_folders(out)
        return output_dir(out, "--out" if cfg.out else "--project/--name"), bool(absent), absent[1:]
    absent = absent_folders(cfg.project)
    return next_run_dir(Path(cfg.project), cfg.name or None), True, absent


def _write_results(job: _Job, info: Any, summary: PredictSummary) -> None:
    """Single process: write the files. torchrun: part file per rank, rank 0 merges after a barrier
    (each rank writes the MOT files of its own sources)."""
    from retina_cli.engine import distributed as dist

    out = job.out_dir
    tracks = _write_mot(job)
    if not info.enabled:
        rows = writers.sort_rows(job.rows)
    else:
        part = out / f".part-rank{info.rank}.json"
        part.write_text(json.dumps({"rows": job.rows, "frames": summary.frames, "seconds": summary.seconds,
                                    "bad_frames": summary.bad_frames, "timer": summary.timer.seconds, "tracks": tracks,
                                    "live": summary.live}))
        dist.barrier()
        if not info.is_main:
            return
        parts = [out / f".part-rank{r}.json" for r in range(info.world_size)]
        data = [json.loads(p.read_text()) for p in parts]
        rows = writers.sort_rows([r for d in data for r in d["rows"]])
        summary.frames = sum(d["frames"] for d in data)
        summary.bad_frames = sum(d["bad_frames"] for d in data)
        summary.seconds = max(d["seconds"] for d in data)
        summary.per_class = Counter(r["category_id"] for r in rows)
        summary.timer = StageTimer()
        for d in data:
            summary.timer.merge(d["timer"])
        tracks = [t for d in data for t in d["tracks"]]
        summary.live = {k: v for d in data for k, v in d["live"].items()}
        for p in parts:
            p.unlink()
    writers.write_json(rows, out / "predictions.json")
    writers.write_csv(rows, out / "predictions.csv", tracked=job.cfg.tracker is not None)
    summary.tracks = {t["source"]: t for t in tracks}
    if job.cfg.count_lines and tracks:
        (out / "counts.json").write_text(json.dumps(tracks, indent=2))


def _write_mot(job: _Job) -> list[dict[str, Any]]:
    """mot/<source>.txt per tracked source of this process (MOTChallenge: frame,id,x,y,w,h,conf,-1,-1,-1)
    -> ``{"source", "mot", **TrackSession.summary()}`` per source."""
    if not job.sessions:
        return []
    from retina_cli.tracking.mot import write_mot

    mot_dir = job.out_dir / "mot"
    mot_dir.mkdir(exist_ok=True)
    out = []
    for name, session in job.sessions:
        path = writers.unique_path(mot_dir, f"{name}.txt", job.taken_mot)
        write_mot(path, session.mot)
        out.append({"source": name, "mot": str(path), **session.summary()})
    return out
