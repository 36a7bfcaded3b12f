"""What ``retina export`` and :meth:`retina_cli.Detector.export` both call: checkpoint -> exported file(s).

One function for both, so a format check, the int8 calibration rule and the output names are
written once. Heavy imports (torch, onnx, onnxruntime) happen inside it.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from retina_cli.export import ExportError

FORMATS = ("onnx", "openvino")
SUFFIXES = {"onnx": ".onnx", "openvino": ".xml"}


@dataclass(frozen=True)
class Exported:
    """The files written: ``path`` the fp32 model; ``int8`` its statically quantised copy, or None;
    ``report`` what the OpenVINO int8 quantisation did (:class:`~retina_cli.export.openvino_int8.Int8Report`), or None;
    ``timing`` the fp32 model timed against the checkpoint on this CPU
    (:class:`~retina_cli.export.timing.Timing`), or None when not timed."""

    path: Path
    int8: Path | None = None
    report: Any = None
    timing: Any = None


DEFAULT_MAX_DROP = 0.005  # mAP50-95 an OpenVINO int8 model may lose against fp32 on the val split


def export_model(
    checkpoint: str | Path, format: str = "onnx", out: str | Path | None = None, dynamic_size: bool = True,
    opset: int | None = None, int8: bool = False, calibration: str | Path | None = None, calibration_images: int = 32,
    max_drop: float | None = DEFAULT_MAX_DROP, progress: Any = None, timing: bool = True,
) -> Exported:
    """Export a checkpoint (.pt). format: "onnx" (onnxruntime) or "openvino" (IR ``.xml`` + ``.bin``).
    out: default ``<checkpoint>.onnx`` / ``.xml``. opset: None is
    :data:`retina_cli.export.onnx.DEFAULT_OPSET`. int8: also write
    ``<name>.int8.onnx`` (``<name>.int8.xml`` for openvino), calibrated on ``calibration_images``
    training images of the dataset ``calibration`` (required with int8). max_drop (openvino):
    the mAP50-95 the int8 model may lose against fp32 on that dataset's val split, layers put back
    in float until it holds (accuracy control); None quantises without checking. progress:
    a callable taking a one-line message, or None. timing: time the fp32 model against the
    checkpoint on the CPU and record it beside the checkpoint, so that loading the checkpoint
    runs the export where it is faster (:mod:`retina_cli.export.timing`)."""
    if format not in FORMATS:
        raise ExportError(f"--format {format!r}: supported formats are {', '.join(FORMATS)}")
    if int8 and not calibration:
        raise ExportError("--int8 needs --calibration DATA: images of the kind the model will see set the int8 ranges")
    if max_drop is not None and not 0 <= max_drop < 1:
        raise ExportError(f"--max-drop {max_drop}: expected a mAP difference in [0, 1), e.g. 0.005")
    if Path(checkpoint).suffix.lower() in (".onnx", ".xml"):
        raise ExportError(f"{checkpoint}: already an exported model; export starts from a checkpoint (.pt)")
    from retina_cli.engine.runs import absent_folders, discard_on_failure, output_file

    path = Path(out) if out else Path(checkpoint).with_suffix(SUFFIXES[format])
    absent = absent_folders(path.parent)
    output_file(path)  # made and probed before the model loads; taken back if made and the export fails
    with discard_on_failure(path.parent, made=absent[1:]) if absent else contextlib.nullcontext():
        if format == "openvino":
            done = _export_openvino(checkpoint, path, dynamic_size, int8, calibration, calibration_images, max_drop, progress)
        else:
            done = _export(checkpoint, path, dynamic_size, [] if opset is None else [opset], int8, calibration, calibration_images)
    return replace(done, timing=_timed(checkpoint, done.path, progress)) if timing else done


def _timed(checkpoint: str | Path, exported: Path, progress: Any) -> Any:
    """Time the fp32 export against the checkpoint and record it (:mod:`retina_cli.export.timing`)."""
    from retina_cli.export.timing import time_export, write_timing

    if progress:
        progress(f"timing {exported.name} against {Path(checkpoint).name} on this CPU")
    timing = time_export(checkpoint, exported)
    write_timing(checkpoint, timing)
    return timing


def _export(checkpoint: str | Path, path: Path, dynamic_size: bool, opsets: list[int], int8: bool,
            calibration: str | Path | None, calibration_images: int) -> Exported:
    from retina_cli.engine.runs import written_atomically
    from retina_cli.export.onnx import export_onnx

    if not int8:
        return Exported(export_onnx(checkpoint, path, dynamic_size, *opsets))
    from retina_cli.export.quantize import calibration_batches, quantize_int8
    from retina_cli.export.runtime import OnnxBackend

    # both files are written under temporary names and renamed only once the int8 one is done:
    # a failed quantisation leaves no fp32 model behind either
    int8_path = path.with_name(path.stem + ".int8.onnx")
    with written_atomically(path) as fp32_tmp:
        export_onnx(checkpoint, fp32_tmp, dynamic_size, *opsets)
        size = OnnxBackend(fp32_tmp, "cpu").model_cfg.img_size
        batches = calibration_batches(str(calibration), size, calibration_images)
        with written_atomically(int8_path) as int8_tmp:
            quantize_int8(fp32_tmp, batches, int8_tmp)
    return Exported(path, int8_path)


def _export_openvino(checkpoint: str | Path, path: Path, dynamic_size: bool, int8: bool, calibration: str | Path | None,
                     calibration_images: int, max_drop: float | None, progress: Any) -> Exported:
    import tempfile

    from retina_cli.data import load_dataset
    from retina_cli.engine.runs import output_file
    from retina_cli.export.openvino import OpenVinoBackend, export_openvino, move_ir

    if not int8:
        return Exported(export_openvino(checkpoint, path, dynamic_size))
    from retina_cli.export.openvino_int8 import quantize_openvino, require_nncf
    from retina_cli.export.quantize import calibration_batches

    require_nncf()  # before any work
    int8_path = output_file(path.with_name(path.stem + ".int8.xml"))
    # both models are written in a temporary folder and moved once the int8 one is done: a failed
    # quantisation leaves no fp32 model behind either
    with tempfile.TemporaryDirectory(prefix=f".{path.stem}.", dir=path.parent) as tmp:
        fp32 = export_openvino(checkpoint, Path(tmp) / path.name, dynamic_size)
        model_cfg = OpenVinoBackend(fp32, "cpu").model_cfg
        dataset = load_dataset(str(calibration))  # indexed once, for both
        batches = calibration_batches(str(calibration), model_cfg.img_size, calibration_images, dataset=dataset)
        records = validation_records(str(calibration), model_cfg, dataset=dataset) if max_drop is not None else []
        report = quantize_openvino(fp32, batches, Path(tmp) / int8_path.name, records or None,
                                   max_drop if max_drop is not None else DEFAULT_MAX_DROP, progress)
        move_ir(report.path, int8_path)
        move_ir(fp32, path)
    return Exported(path, int8_path, replace(report, path=int8_path))


def validation_records(data: str, model_cfg: Any, split: str = "val", dataset: Any = None) -> list[Any]:
    """The labelled records of ``data``'s ``split`` in the model's class order ([] when the split
    is absent or empty: int8 is then not checked against fp32). dataset: ``data`` already loaded, or None."""
    from retina_cli.data import load_dataset
    from retina_cli.engine.evaluation_run import align_classes

    dataset = dataset or load_dataset(data)
    records = dataset.splits.get(split) or []
    return align_classes(list(records), dataset.class_names, tuple(model_cfg.class_names), data) if records else []
