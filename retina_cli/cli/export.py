"""``retina export CHECKPOINT --format onnx``: the detector as an ONNX file for onnxruntime."""

from __future__ import annotations

from pathlib import Path

import typer

from retina_cli.cli.app import app, console


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
    from retina_cli import validation

    validation.check_flags(opset=opset, calibration_images=calibration_images)
    from retina_cli.export.formats import export_model

    out_console = console()
    done = export_model(checkpoint, fmt, out or None, dynamic_size, opset, int8, calibration, calibration_images)
    path = done.path
    out_console.print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB); run it with: retina predict {path} SOURCE", highlight=False)
    if done.int8 is not None:
        q = done.int8
        out_console.print(f"wrote {q} ({q.stat().st_size / 1e6:.1f} MB, int8, calibrated on {calibration_images} images of {calibration})", highlight=False)
