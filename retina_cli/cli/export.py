"""``retina export CHECKPOINT --format onnx|openvino``: the detector for onnxruntime or OpenVINO."""

from __future__ import annotations

from pathlib import Path

import typer

from retina_cli.cli.app import app, console


@app.command("export")
def export(
    checkpoint: Path = typer.Argument(..., help="A retina checkpoint (.pt)."),
    fmt: str = typer.Option("onnx", "--format", help="onnx (onnxruntime) or openvino (OpenVINO IR: .xml + .bin)."),
    out: str = typer.Option("", "--out", help="Output file (default: the checkpoint's path with .onnx, or .xml for openvino)."),
    dynamic_size: bool = typer.Option(True, "--dynamic-size/--fixed-size", help="Dynamic height and width (the default: predict and eval then run rectangular inputs, 640x480 at 640x512 rather than 640x640); --fixed-size: only the checkpoint's square img_size."),
    opset: int = typer.Option(17, "--opset", help="ONNX opset (17 or newer)."),
    int8: bool = typer.Option(False, "--int8", help="Also write <name>.int8.onnx: convolutions quantised to int8 (static, calibrated on --calibration images)."),
    calibration: str = typer.Option("", "--calibration", help="Dataset whose images calibrate --int8 (its training split)."),
    calibration_images: int = typer.Option(32, "--calibration-images", help="How many images calibrate --int8."),
) -> None:
    """Export network + box decoding to ONNX or OpenVINO IR (dynamic batch and size); NMS runs in
    `retina predict model.onnx` (or model.xml).
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
