"""What ``retina export`` and :meth:`retina_cli.Detector.export` both call: checkpoint -> exported file(s).

One function for both, so a format check, the int8 calibration rule and the output names are
written once. Heavy imports (torch, onnx, onnxruntime) happen inside it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from retina_cli.export import ExportError

FORMATS = ("onnx",)


@dataclass(frozen=True)
class Exported:
    """The files written: ``path`` the fp32 model; ``int8`` its statically quantised copy, or None."""

    path: Path
    int8: Path | None = None


def export_model(
    checkpoint: str | Path, format: str = "onnx", out: str | Path | None = None, dynamic_size: bool = False,
    opset: int | None = None, int8: bool = False, calibration: str | Path | None = None, calibration_images: int = 32,
) -> Exported:
    """Export a checkpoint (.pt). out: default ``<checkpoint>.onnx``. opset: None is
    :data:`retina_cli.export.onnx.DEFAULT_OPSET`. int8: also write
    ``<name>.int8.onnx``, calibrated on ``calibration_images`` training images of the dataset
    ``calibration`` (required with int8)."""
    if format not in FORMATS:
        raise ExportError(f"--format {format!r}: supported formats are {', '.join(FORMATS)}")
    if int8 and not calibration:
        raise ExportError("--int8 needs --calibration DATA: images of the kind the model will see set the int8 ranges")
    if Path(checkpoint).suffix.lower() == ".onnx":
        raise ExportError(f"{checkpoint}: already an exported model; export starts from a checkpoint (.pt)")
    from retina_cli.export.onnx import export_onnx

    path = export_onnx(checkpoint, out or None, dynamic_size, *([] if opset is None else [opset]))
    if not int8:
        return Exported(path)
    from retina_cli.export.quantize import calibration_batches, quantize_int8
    from retina_cli.export.runtime import OnnxBackend

    size = OnnxBackend(path, "cpu").model_cfg.img_size
    return Exported(path, quantize_int8(path, calibration_batches(str(calibration), size, calibration_images)))
