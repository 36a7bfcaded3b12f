"""Evaluate a checkpoint on a dataset split and write metrics, detections and PR curves."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from functools import cached_property
from pathlib import Path
from typing import Any

import torch

from retina_cli.config import PostprocessConfig
from retina_cli.engine.detector import InferenceModel
from retina_cli.engine.evaluate import EvalResult, coco_evaluate, coco_ground_truth, evaluate_records, to_coco_results
from retina_cli.errors import DataError
from retina_cli.slicing.config import SliceConfig


def align_classes(records: list[Any], data_classes: list[str], model_classes: tuple[str, ...], data: str) -> list[Any]:
    """Records with labels renumbered to the model's class order; DataError when the names differ."""
    if list(data_classes) == list(model_classes):
        return records
    if sorted(data_classes) != sorted(model_classes):
        missing = sorted(set(data_classes) - set(model_classes))
        extra = sorted(set(model_classes) - set(data_classes))
        raise DataError(
            f"{data}: dataset classes {list(data_classes)} do not match the checkpoint's {list(model_classes)}"
            + (f" (not in the model: {missing})" if missing else "") + (f" (not in the data: {extra})" if extra else "")
        )
    import numpy as np

    lut = np.array([model_classes.index(n) for n in data_classes], dtype=np.int64)
    return [replace(r, labels=lut[r.labels]) for r in records]


@dataclass
class Evaluation:
    """An evaluated split: the COCO result and the records it was scored on (image id ``i + 1`` is ``records[i]``).

    slicing: the sliced-inference settings the detections were made with (None: whole images).
    """

    result: EvalResult
    records: list[Any]
    class_names: tuple[str, ...]
    split: str
    slicing: SliceConfig | None = None

    @cached_property
    def diagnosis(self) -> Any:
        """F1-best thresholds, confusion matrix and error types (:func:`retina_cli.analysis.diagnosis.diagnose`)."""
        from retina_cli.analysis.diagnosis import diagnose

        return diagnose(self.result, self.records, self.class_names)


def evaluate_backend(
    backend: Any, data: str, split: str = "val", data_format: str = "auto", batch_size: int = 8, workers: int = 2,
    post_cfg: PostprocessConfig | None = None, progress: Any = None, slicing: SliceConfig | None = None,
) -> Evaluation:
    """COCO metrics of a loaded predict backend (:func:`retina_cli.engine.predict.load_backend`) on a split.

    The one evaluation path of ``retina eval``, :meth:`retina_cli.Detector.val` and
    :func:`run_evaluation`. A torch backend's prepared model runs through InferenceModel (autocast
    when its precision is bf16); an ONNX backend through OnnxDetector on the CPU side. post_cfg:
    None uses the backend's. progress: ``start(name, total)`` / ``advance(n)`` / ``stop()`` or None.
    slicing: run sliced inference instead (:class:`~retina_cli.slicing.predictor.SlicedPredictor`
    over each original image, ``batch_size`` windows at a time; ``workers`` is not used), scored
    by the same COCO code.
    """
    from retina_cli.data import load_dataset

    post_cfg = post_cfg or backend.post_cfg
    model_cfg = backend.model_cfg
    dataset = load_dataset(data, data_format)
    if split not in dataset.splits or not dataset.splits[split]:
        raise DataError(f"{data}: no images in split {split!r} (splits: {', '.join(k for k, v in dataset.splits.items() if v)})")
    records = align_classes(dataset.splits[split], dataset.class_names, model_cfg.class_names, data)
    advance = None
    if progress is not None:
        progress.start(f"eval {split}", len(records))
        advance = lambda: progress.advance(1)  # noqa: E731
    try:
        if slicing is None:
            res = evaluate_letterboxed(backend, records, post_cfg, batch_size, workers, advance)
        else:
            res = _evaluate_sliced(backend, records, post_cfg, slicing, batch_size, advance)
    finally:
        if progress is not None:
            progress.stop()
    return Evaluation(res, list(records), tuple(model_cfg.class_names), split, slicing)


def evaluate_letterboxed(backend: Any, records: list[Any], post_cfg: PostprocessConfig, batch_size: int = 8, workers: int = 2,
                         advance: Any = None) -> EvalResult:
    """The whole images of ``records``, letterboxed by the data loader, through the backend's
    network in batches, scored by COCOeval (image ids: record index + 1). advance: called once
    per image, or None."""
    from retina_cli.data.loader import make_loader

    if backend.name == "torch":
        infer, dev = InferenceModel(backend.model, post_cfg).eval(), backend.device
        autocast = torch.bfloat16 if backend.precision == "bf16" else None
    else:
        from retina_cli.export.runtime import OnnxDetector

        infer, dev, autocast = OnnxDetector(backend, post_cfg), torch.device("cpu"), None  # inputs go to onnxruntime from the CPU
    # the rectangle predict uses too, where the backend takes it: the same detections as `retina predict`
    loader = make_loader(records, backend.model_cfg.img_size, batch_size, train=False, workers=workers,
                         rect_stride=getattr(backend, "stride", None))
    return evaluate_records(infer, loader, records, backend.model_cfg.class_names, dev, autocast, progress=advance)


def _evaluate_sliced(backend: Any, records: list[Any], post_cfg: PostprocessConfig, slicing: SliceConfig,
                     batch_size: int, advance: Any) -> EvalResult:
    """Each record's original image through a SlicedPredictor (``batch_size`` windows per network
    call), detections in original pixels -> COCOeval as in the letterboxed path."""
    import numpy as np

    from retina_cli.data.images import read_image
    from retina_cli.engine.predict import Predictor
    from retina_cli.slicing.predictor import SlicedPredictor

    predictor = SlicedPredictor(Predictor(backend, post_cfg), slicing, batch=batch_size)
    results: list[dict[str, Any]] = []
    for i, rec in enumerate(records):
        bgr = np.ascontiguousarray(read_image(rec.path)[..., ::-1])  # read_image gives RGB; the Predictor takes BGR
        (det,) = predictor([bgr])
        results.extend(to_coco_results(i + 1, det.boxes, det.scores, det.labels))
        if advance is not None:
            advance()
    names = backend.model_cfg.class_names
    return coco_evaluate(coco_ground_truth(records, names), results, names)


def write_evaluation(ev: Evaluation, run_dir: Path, model_path: str | Path, data: str) -> None:
    """metrics.json, detections.json (COCO results with file names), pr_curves.png and the
    diagnosis (confusion_matrix.json/.png, thresholds.json, threshold_curves.png, errors/) with
    report.html into ``run_dir``."""
    from retina_cli.report.evaluation import write_diagnosis, write_eval_report

    res = ev.result
    run_dir.mkdir(parents=True, exist_ok=True)
    diag = ev.diagnosis
    header: dict[str, Any] = {"checkpoint": str(model_path), "data": str(data), "split": ev.split, "images": len(ev.records)}
    sliced = {"slicing": asdict(ev.slicing)} if ev.slicing is not None else {}
    (run_dir / "metrics.json").write_text(json.dumps(
        {**header, **sliced, "metrics": res.metrics, "per_class": res.per_class,
         "suggested_conf": diag.conf, "best_thresholds": diag.curves.best,
         "errors": {"conf": diag.conf, "iou": diag.errors.iou, **diag.errors.errors}}, indent=2))
    detections = [{**r, "file_name": str(ev.records[r["image_id"] - 1].path)} for r in res.detections]
    (run_dir / "detections.json").write_text(json.dumps(detections))  # names the image too: the file stands on its own
    pr_png = None
    if res.precision is not None:
        try:
            from retina_cli.drawing.plots import plot_pr_curves

            pr_png = run_dir / "pr_curves.png"
            plot_pr_curves(res.precision, ev.class_names, pr_png)
        except ImportError:
            pr_png = None
    files = write_diagnosis(diag, ev.records, run_dir)
    if ev.slicing is not None:
        header["slicing"] = ev.slicing.describe()
    write_eval_report(run_dir, header, res.metrics, res.per_class, diag, files, pr_png)


def run_evaluation(
    checkpoint: Path, data: str, split: str = "val", data_format: str = "auto", batch_size: int = 8, workers: int = 2,
    conf: float | None = None, iou: float | None = None, max_det: int | None = None, device: str = "auto",
    precision: str = "fp32", project: str = "runs/eval", name: str = "", progress: Any = None,
    winograd: bool = True, slicing: SliceConfig | None = None,
) -> tuple[EvalResult, Path]:
    """Load ``checkpoint`` (.pt or .onnx), :func:`evaluate_backend`, write into the next run folder of
    ``project`` (created and checked writable first: ConfigError before any work; removed again
    when the run then fails with a RetinaError). progress: as in evaluate_backend
    (``retina_cli.cli.progress.RichReporter`` in the CLI). slicing: sliced inference, as in
    evaluate_backend (metrics.json then records the settings)."""
    from retina_cli.engine.runs import absent_folders, discard_on_failure, next_run_dir
    from retina_cli.engine.predict import load_backend, override_postprocess

    # made and probed before anything loads; a checkpoint or dataset refused afterwards takes it back
    absent = absent_folders(project)
    run_dir = next_run_dir(Path(project), name or None)
    with discard_on_failure(run_dir, made=absent):
        backend = load_backend(checkpoint, "auto", device, precision, winograd=winograd, exports=False)
        post_cfg = override_postprocess(backend.post_cfg, conf, iou, max_det)
        ev = evaluate_backend(backend, data, split, data_format, batch_size, workers, post_cfg, progress, slicing)
        write_evaluation(ev, run_dir, checkpoint, data)
    return ev.result, run_dir
