"""What ``retina export`` and :meth:`retina_cli.Detector.export` both call: checkpoint -> exported file(s).

One function for both, so a format check, the int8 calibration rule and the output names are
written once. Heavy imports (torch, onnx, onnxruntime) happen inside it.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

from retina_cli.export import ExportError

FORMATS = ("onnx", "openvino")
SUFFIXES = {"onnx": ".onnx", "openvino": ".xml"}


@dataclass(frozen=True)
class Exported:
    """The files written: ``path`` the fp32 model; ``int8`` its statically quantised copy, or None."""

    path: Path
    int8: Path | None = None


def export_model(
    checkpoint: str | Path, format: str = "onnx", out: str | Path | None = None, dynamic_size: bool = True,
    opset: int | None = None, int8: bool = False, calibration: str | Path | None = None, calibration_images: int = 32,
) -> Exported:
    """Export a checkpoint (.pt). format: "onnx" (onnxruntime) or "openvino" (IR ``.xml`` + ``.bin``).
    out: default ``<checkpoint>.onnx`` / ``.xml``. opset: None is
    :data:`retina_cli.export.onnx.DEFAULT_OPSET`. int8: also write
    ``<name>.int8.onnx``, calibrated on ``calibration_images`` training images of the dataset
    ``calibration`` (required with int8)."""
    if format not in FORMATS:
        raise ExportError(f"--format {format!r}: supported formats are {', '.join(FORMATS)}")
    if int8 and not calibration:
        raise ExportError("--int8 needs --calibration DATA: images of the kind the model will see set the int8 ranges")
    if int8 and format == "openvino":
        raise ExportError("--int8 is for --format onnx so far; the OpenVINO model is exported in fp32")
    if Path(checkpoint).suffix.lower() in (".onnx", ".xml"):
        raise ExportError(f"{checkpoint}: already an exported model; export starts from a checkpoint (.pt)")
    from retina_cli.engine.runs import absent_folders, discard_on_failure, output_file

    path = Path(out) if out else Path(checkpoint).with_suffix(SUFFIXES[format])
    absent = absent_folders(path.parent)
    output_file(path)  # made and probed before the model loads; taken back if made and the export fails
    with discard_on_failure(path.parent, made=absent[1:]) if absent else contextlib.nullcontext():
        if format == "openvino":
            from retina_cli.export.openvino import export_openvino

            return Exported(export_openvino(checkpoint, path, dynamic_size))
        return _export(checkpoint, path, dynamic_size, [] if opset is None else [opset], int8, calibration, calibration_images)


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
