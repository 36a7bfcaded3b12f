"""``retina export CHECKPOINT --format onnx``: the detector as an ONNX file for onnxruntime."""

from __future__ import annotations

from pathlib import Path

import typer

from retina_cli.cli.app import app, console
from retina_cli.errors import ConfigError

FORMATS = ("onnx",)


@app.command("export")
def export(
    checkpoint: Path = typer.Argument(..., help="A retina checkpoint (.pt)."),
    fmt: str = typer.Option("onnx", "--format", help="Export format (onnx)."),
    out: str = typer.Option("", "--out", help="Output file (default: the checkpoint's path with .onnx)."),
    dynamic_size: bool = typer.Option(False, "--dynamic-size", help="Dynamic height and width too (default: fixed to the checkpoint's img_size)."),
    opset: int = typer.Option(17, "--opset", help="ONNX opset (17 or newer)."),
    int8: bool = typer.Option(False, "--int8", help="Also write <name>.int8.onnx: convolutions quantised to int8 (static, calibrated on --calibration images)."),
    calibration: str = typer.Option("", "--calibration", help="Dataset whose images calibrate --int8 (its training split)."),
    calibration_images: int = typer.Option(32, "--calibration-images", help="How many images calibrate --int8."),
) -> None:
    """Export network + box decoding to ONNX (dynamic batch); NMS runs in `retina predict model.onnx`.
    `--int8 --calibration DATA` adds a statically quantised model for onnxruntime's integer kernels."""
    if fmt not in FORMATS:
        raise ConfigError(f"--format {fmt!r}: supported formats are {', '.join(FORMATS)}")
    if int8 and not calibration:
        raise ConfigError("--int8 needs --calibration DATA: images of the kind the model will see set the int8 ranges")
    from retina_cli.export.onnx import export_onnx

    out_console = console()
    path = export_onnx(checkpoint, out or None, dynamic_size, opset)
    out_console.print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB); run it with: retina predict {path} SOURCE", highlight=False)
    if int8:
        from retina_cli.export.quantize import calibration_batches, quantize_int8
        from retina_cli.export.runtime import OnnxBackend

        size = OnnxBackend(path, "cpu").model_cfg.img_size
        q = quantize_int8(path, calibration_batches(calibration, size, calibration_images))
        out_console.print(f"wrote {q} ({q.stat().st_size / 1e6:.1f} MB, int8, calibrated on {calibration_images} images of {calibration})", highlight=False)
