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
from retina_cli.engine.predict import Backend, Predictor, class_names, load_backend, make_predictor, override_postprocess
from retina_cli.engine.sources import Frame
from retina_cli import validation


class Detector:
    """A loaded model. names: class names, ``names[k]`` is class id ``k``. path: the file it was
    loaded from. backend: "torch" or "onnxruntime". img_size: the square network input side.
    Build it with :func:`load`."""

    def __init__(self, backend: Backend, path: Path) -> None:
        self._backend = backend
        self.path = path
        self.names: tuple[str, ...] = class_names(backend.model_cfg)
        self.backend: str = backend.name
        self.img_size: int = backend.model_cfg.img_size

    def __repr__(self) -> str:
        return f"Detector({str(self.path)!r}, backend={self.backend!r}, classes={len(self.names)}, img_size={self.img_size})"

    def predict(
        self, source: Any, conf: float | None = None, iou: float | None = None, max_det: int | None = None,
        classes: Sequence[str | int] | None = None, batch: int = 1, stream: bool = False, channels: str = "bgr",
    ) -> list[Result] | Iterator[Result]:
        """Detect objects in ``source``; one :class:`Result` per image or video frame, in order.

        source: a path / glob / folder / video / stream URL (as ``retina predict`` takes), an int
        webcam index, a numpy array ``(H, W, 3)`` uint8, a PIL image, or a list of these.
        channels: the order of numpy arrays' channels, "bgr" (OpenCV's, the default) or "rgb"
        (PIL images are always read as RGB). conf / iou / max_det: score threshold, NMS IoU and
        per-image cap; None keeps the checkpoint's. classes: names or 0-based ids to keep (None:
        all). batch: frames per network call. stream: return a generator (one Result at a time,
        for videos and webcams) instead of a list.
        """
        validation.check_flags(conf=conf, iou=iou, max_det=max_det, batch=batch)
        predictor = make_predictor(self._backend, conf, iou, max_det, classes)
        results = _results(predictor, open_frames(source, channels), batch)
        return results if stream else list(results)

    __call__ = predict

    def val(
        self, data: str | Path, split: str = "val", data_format: str = "auto", batch: int = 8, workers: int = 0,
        conf: float | None = None, iou: float | None = None, max_det: int | None = None,
        project: str | Path | None = None, name: str = "", progress: Any = None,
    ) -> Metrics:
        """COCO metrics on a dataset split (any layout ``retina data info`` reads).

        data_format: "auto", "yolo", "voc", "coco" or "csv". batch / workers: the data loader's.
        conf / iou / max_det: as in :meth:`predict`. The result's ``diagnosis`` holds the F1-best
        thresholds, the confusion matrix and the error types. project: also write metrics.json,
        detections.json, pr_curves.png, the confusion matrix, threshold curves, the error gallery
        (errors/) and report.html into its next run folder (``name`` or exp, exp2, ...);
        None writes nothing. progress: an object with ``start(name, total)``, ``advance(n)``,
        ``stop()`` (None: silent).
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
            ev = evaluate_backend(self._backend, str(data), split, data_format, batch, workers, post, progress)
            if run_dir is not None:
                write_evaluation(ev, run_dir, self.path, str(data))
        return Metrics(ev.result.metrics, ev.result.per_class, split, len(ev.records), run_dir, ev.diagnosis)

    def export(
        self, format: str = "onnx", out: str | Path | None = None, dynamic_size: bool = False, opset: int | None = None,
        int8: bool = False, calibration: str | Path | None = None, calibration_images: int = 32,
    ) -> Path:
        """Export the checkpoint (a Detector loaded from .pt) -> the written file's path.

        format: "onnx". out: default the checkpoint's path with .onnx. dynamic_size: height and
        width dynamic too. opset: None for the default (17). int8: also quantise, calibrated on
        ``calibration_images`` training images of the dataset ``calibration``; then the int8
        model's path is returned (the fp32 one is written next to it).
        """
        from retina_cli.export.formats import export_model

        validation.check_flags(opset=opset, calibration_images=calibration_images)
        done = export_model(self.path, format, out, dynamic_size, opset, int8, calibration, calibration_images)
        return done.int8 or done.path


def _results(predictor: Predictor, frames: Iterable[Frame], batch: int) -> Iterator[Result]:
    # synchronous on purpose: a generator the caller drives (and may drop) must not leave reader or
    # writer threads running; `retina predict` overlaps decoding and encoding with engine.video instead
    it = iter(frames)
    while chunk := list(islice(it, batch)):
        yield from predictor.results(chunk)


def load(path: str | Path, device: str = "auto", backend: str = "auto", precision: str = "fp32", winograd: bool = True) -> Detector:
    """A checkpoint (.pt, from ``retina train`` or ``retina convert``) or an exported model (.onnx)
    -> :class:`Detector`.

    device: "auto" (CUDA when available), "cpu", "cuda" or "cuda:N". backend: "auto" (.onnx ->
    onnxruntime, else torch), "torch" or "onnxruntime". precision: "fp32" or "bf16" (torch
    backend, autocast). winograd: on CPU in fp32, wide 3x3 convolutions as Winograd F(4x4, 3x3).
    """
    validation.check_device(device)
    path = Path(path)
    return Detector(load_backend(path, backend, device, precision, winograd=winograd), path)
