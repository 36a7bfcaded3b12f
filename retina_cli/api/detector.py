"""`load(path) -> Detector`: a checkpoint or exported model, ready to predict, evaluate and export.

The Detector is a handle on the same backend ``retina predict`` runs
(:func:`~retina_cli.engine.predict.load_backend`): ``predict`` goes through
:func:`~retina_cli.engine.predict.make_predictor` and :meth:`Predictor.results` (letterbox ->
backend -> select_detections -> boxes_from_letterbox), ``val`` through
:func:`~retina_cli.engine.evaluation_run.evaluate_backend`, ``export`` through
:func:`~retina_cli.export.formats.export_model` - the functions the CLI commands call.
"""

from __future__ import annotations

from itertools import islice
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

from retina_cli.api.inputs import open_frames
from retina_cli.api.metrics import Metrics
from retina_cli.engine.results import Result
from retina_cli.engine.predict import (
    Backend, Predictor, class_names, load_backend, make_predictor, override_postprocess, picked_line,
)
from retina_cli.engine.sources import Frame
from retina_cli import validation


class Detector:
    """A loaded model. names: class names, ``names[k]`` is class id ``k``. path: the file it was
    loaded from. backend: "torch", "onnxruntime" or "openvino". img_size: the long side of the network input.
    ran: what runs in place of ``path`` when :func:`load` picked the checkpoint's faster export, else "".
    Build it with :func:`load`."""

    def __init__(self, backend: Backend, path: Path) -> None:
        self._backend = backend
        self.path = path
        self.names: tuple[str, ...] = class_names(backend.model_cfg)
        self.backend: str = backend.name
        self.img_size: int = backend.model_cfg.img_size
        self.ran: str = picked_line(backend)

    def __repr__(self) -> str:
        return f"Detector({str(self.path)!r}, backend={self.backend!r}, classes={len(self.names)}, img_size={self.img_size})"

    def predict(
        self, source: Any, conf: float | None = None, iou: float | None = None, max_det: int | None = None,
        classes: Sequence[str | int] | None = None, batch: int = 1, stream: bool = False, channels: str = "bgr",
        slicing: Any = None, all_frames: bool = False,
    ) -> list[Result] | Iterator[Result]:
        """Detect objects in ``source``; one :class:`Result` per image or video frame, in order.

        source: a path / glob / folder / video / stream URL (as ``retina predict`` takes), an int
        webcam index, a numpy array ``(H, W, 3)`` uint8, a PIL image, or a list of these.
        channels: the order of numpy arrays' channels, "bgr" (OpenCV's, the default) or "rgb"
        (PIL images are always read as RGB). conf / iou / max_det: score threshold, NMS IoU and
        per-image cap; None keeps the checkpoint's (conf: the threshold its training stored, the
        best mean F1 on its validation, else 0.25). classes: names or 0-based ids to keep (None:
        all). batch: frames per network call. stream: return a generator (one Result at a time,
        for videos and webcams) instead of a list. slicing: a :class:`~retina_cli.slicing.SliceConfig`
        (e.g. ``SliceConfig(512, overlap=0.2)``): sliced inference for small objects in large images.
        all_frames: a webcam or stream URL gives the newest frame at each step of the generator
        (frames that came meanwhile are dropped, so a slow loop never lags the camera); True
        queues every frame instead. Files always give every frame.
        """
        validation.check_flags(conf=conf, iou=iou, max_det=max_det, batch=batch)
        predictor = _sliced(make_predictor(self._backend, conf, iou, max_det, classes), slicing)
        results = _results(predictor, open_frames(source, channels, all_frames), batch)
        return results if stream else list(results)

    __call__ = predict

    def track(
        self, source: Any, conf: float | None = None, iou: float | None = None, max_det: int | None = None,
        classes: Sequence[str | int] | None = None, batch: int = 1, stream: bool = False, channels: str = "bgr",
        track_low: float = 0.1, track_new: float | None = None, track_buffer: int = 30, track_iou: float = 0.2,
        count_lines: Sequence[Any] = (), frame_rate: float = 30.0, session: Any = None, slicing: Any = None,
        all_frames: bool = False,
    ) -> list[Result] | Iterator[Result]:
        """Follow objects through a video (or a sequence of images, in order): :meth:`predict`'s
        Results with ``track_ids``, holding only the detections that are on a track (ByteTrack).

        conf: the tracker's high threshold (default 0.25): detections above it start and continue
        tracks; detections between track_low and conf only continue them. track_new: the score a
        detection needs to start a track (default: conf). track_buffer: frames a lost track waits
        to be found again, at 30 fps (scaled by frame_rate). track_iou: the least IoU of a match.
        count_lines: ``"x1,y1,x2,y2"`` strings or :class:`~retina_cli.tracking.CountLine` each;
        the counts are in ``session.summary()``. session: a :class:`~retina_cli.tracking.TrackSession`
        to continue (e.g. frame by frame from a camera loop, or to read the counts afterwards);
        None starts a new one from the other arguments. slicing, all_frames and the other arguments as in :meth:`predict`.
        """
        from retina_cli.tracking import CountLine, TrackerConfig, TrackSession

        validation.check_flags(conf=conf, iou=iou, max_det=max_det, batch=batch, track_low=track_low,
                               track_new=track_new, track_buffer=track_buffer, track_iou=track_iou)
        if session is None:
            cfg = TrackerConfig.from_flags(conf, track_low, track_new, track_buffer, track_iou)
            lines = [c if isinstance(c, CountLine) else CountLine.parse(str(c)) for c in count_lines]
            session = TrackSession(self.names, cfg, frame_rate, lines)
        elif count_lines:
            raise validation.ConfigError("track: give count_lines to the TrackSession you pass, not here")
        predictor = _sliced(make_predictor(self._backend, session.tracker.cfg.low_thresh, iou, max_det, classes), slicing)
        results = _tracked(predictor, open_frames(source, channels, all_frames), batch, session)
        return results if stream else list(results)

    def val(
        self, data: str | Path, split: str = "val", data_format: str = "auto", batch: int = 8, workers: int = 0,
        conf: float | None = None, iou: float | None = None, max_det: int | None = None,
        project: str | Path | None = None, name: str = "", progress: Any = None, slicing: Any = None,
    ) -> Metrics:
        """COCO metrics on a dataset split (any layout ``retina data info`` reads).

        data_format: "auto", "yolo", "voc", "coco" or "csv". batch / workers: the data loader's.
        conf / iou / max_det: as in :meth:`predict`. The result's ``diagnosis`` holds the F1-best
        thresholds, the confusion matrix and the error types. project: also write metrics.json,
        detections.json, pr_curves.png, the confusion matrix, threshold curves, the error gallery
        (errors/) and report.html into its next run folder (``name`` or exp, exp2, ...);
        None writes nothing. progress: an object with ``start(name, total)``, ``advance(n)``,
        ``stop()`` (None: silent). slicing: a :class:`~retina_cli.slicing.SliceConfig` to evaluate
        with sliced inference on the original images (None: the whole letterboxed image).
        """
        from retina_cli.engine.evaluation_run import evaluate_backend, write_evaluation

        validation.check_flags(batch=batch, workers=workers, conf=conf, iou=iou, max_det=max_det)
        import contextlib

        from retina_cli.engine.runs import absent_folders, discard_on_failure, next_run_dir

        post = override_postprocess(self._backend.post_cfg, conf, iou, max_det)
        # the run folder is made and probed first; a dataset refused afterwards takes it back
        absent = absent_folders(project) if project is not None else []
        run_dir = next_run_dir(Path(project), name or None) if project is not None else None
        with discard_on_failure(run_dir, made=absent) if run_dir is not None else contextlib.nullcontext():
            ev = evaluate_backend(self._backend, str(data), split, data_format, batch, workers, post, progress, slicing)
            if run_dir is not None:
                write_evaluation(ev, run_dir, self.path, str(data))
        return Metrics(ev.result.metrics, ev.result.per_class, split, len(ev.records), run_dir, ev.diagnosis)

    def export(
        self, format: str = "onnx", out: str | Path | None = None, dynamic_size: bool = True, opset: int | None = None,
        int8: bool = False, calibration: str | Path | None = None, calibration_images: int = 32,
        max_drop: float | None = 0.005, timing: bool = True,
    ) -> Path:
        """Export the checkpoint (a Detector loaded from .pt) -> the written file's path.

        format: "onnx" or "openvino" (IR .xml + .bin). out: default the checkpoint's path with
        .onnx / .xml. dynamic_size: height and width dynamic (rectangular inputs in predict and
        eval); False fixes the square img_size. opset: None for the default (17). int8 (onnx): also quantise, calibrated on
        ``calibration_images`` training images of the dataset ``calibration``; then the int8
        model's path is returned (the fp32 one is written next to it). With "openvino" the int8
        model (``<name>.int8.xml``) is quantised by NNCF and kept within ``max_drop`` mAP50-95 of
        fp32 on the dataset's val split (layers put back in float until it holds); max_drop None
        quantises without checking. timing: time the fp32 model against the checkpoint on this CPU
        and record it beside the checkpoint, so that :func:`load` of the checkpoint runs the
        export where it is faster.
        """
        from retina_cli.export.formats import export_model

        validation.check_flags(opset=opset, calibration_images=calibration_images,
                               **({} if max_drop is None else {"max_drop": max_drop}))
        done = export_model(self.path, format, out, dynamic_size, opset, int8, calibration, calibration_images, max_drop,
                            timing=timing)
        return done.int8 or done.path


def _sliced(predictor: Predictor, slicing: Any) -> Any:
    """The predictor, wrapped in a SlicedPredictor when ``slicing`` (a SliceConfig) is given."""
    if slicing is None:
        return predictor
    from retina_cli.slicing.predictor import SlicedPredictor

    return SlicedPredictor(predictor, slicing)


def _tracked(predictor: Predictor, frames: Iterable[Frame], batch: int, session: Any) -> Iterator[Result]:
    # images (files, arrays) are frames of one sequence, numbered by their order; videos by their frame
    it = iter(frames)
    while chunk := list(islice(it, batch)):
        for frame, res in zip(chunk, predictor.results(chunk)):
            yield session.step(res, sequence=not frame.source.is_video)[0]


def _results(predictor: Predictor, frames: Iterable[Frame], batch: int) -> Iterator[Result]:
    # synchronous on purpose: a generator the caller drives (and may drop) must not leave reader or
    # writer threads running; `retina predict` overlaps decoding and encoding with engine.video instead
    it = iter(frames)
    while chunk := list(islice(it, batch)):
        yield from predictor.results(chunk)


def load(path: str | Path, device: str = "auto", backend: str = "auto", precision: str = "fp32", winograd: bool = True) -> Detector:
    """A checkpoint (.pt, from ``retina train`` or ``retina convert``) or an exported model (.onnx,
    or OpenVINO .xml) -> :class:`Detector`.

    device: "auto" (CUDA when available), "cpu", "cuda" or "cuda:N". backend: "auto" (.onnx ->
    onnxruntime, .xml -> openvino, else torch; a checkpoint on the CPU runs its fp32 export when
    ``retina export`` timed it faster on this machine, see ``Detector.ran``), "torch", "onnxruntime" or "openvino". precision:
    "fp32" or "bf16" (torch backend: autocast; openvino: its CPU plugin's bf16). winograd: on CPU in fp32, wide 3x3 convolutions as Winograd F(4x4, 3x3).
    """
    validation.check_device(device)
    path = Path(path)
    return Detector(load_backend(path, backend, device, precision, winograd=winograd), path)
