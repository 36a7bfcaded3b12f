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
    int8: bool = typer.Option(False, "--int8", help="Also write <name>.int8.onnx (or .int8.xml for openvino): convolutions quantised to int8 (static, calibrated on --calibration images)."),
    calibration: str = typer.Option("", "--calibration", help="Dataset whose images calibrate --int8 (its training split; openvino also checks mAP on its val split)."),
    calibration_images: int = typer.Option(32, "--calibration-images", help="How many images calibrate --int8."),
    max_drop: float = typer.Option(0.005, "--max-drop", help="openvino --int8: the val mAP50-95 int8 may lose against fp32; the layers that cost most go back to float until it holds."),
    accuracy_control: bool = typer.Option(True, "--accuracy-control/--no-accuracy-control", help="openvino --int8: check int8 against fp32 on the val split (--max-drop); --no-accuracy-control quantises without checking."),
    timing: bool = typer.Option(True, "--timing/--no-timing", help="Time the fp32 model against the checkpoint on this CPU (a few seconds; about 30 s for the paper model) and record it beside the checkpoint: `retina predict CHECKPOINT` then runs the export where it was faster."),
) -> None:
    """Export network + box decoding to ONNX or OpenVINO IR (dynamic batch and size); NMS runs in
    `retina predict model.onnx` (or model.xml).
    `--int8 --calibration DATA` adds a statically quantised model: for onnxruntime's integer
    kernels, or (openvino) quantised with NNCF and kept within --max-drop mAP50-95 of fp32 on
    DATA's val split."""
    from retina_cli import validation

    validation.check_flags(opset=opset, calibration_images=calibration_images, max_drop=max_drop)
    from retina_cli.export.formats import export_model

    out_console = console()
    err = console(stderr=True)
    done = export_model(checkpoint, fmt, out or None, dynamic_size, opset, int8, calibration, calibration_images,
                        max_drop if accuracy_control else None, progress=lambda msg: err.print(msg, highlight=False),
                        timing=timing)
    path = done.path
    out_console.print(f"wrote {path} ({_megabytes(path)} MB); run it with: retina predict {path} SOURCE", highlight=False)
    if done.int8 is not None:
        q = done.int8
        out_console.print(f"wrote {q} ({_megabytes(q)} MB, int8, calibrated on {calibration_images} images of {calibration})", highlight=False)
    if done.report is not None:
        out_console.print(int8_summary(done.report), highlight=False)
    if done.timing is not None:
        out_console.print(timing_summary(checkpoint, done.timing), highlight=False, soft_wrap=True)


def timing_summary(checkpoint: Path, timing) -> str:
    """One line: the medians, and what `retina predict CHECKPOINT` runs from now on."""
    from retina_cli.export.timing import faster_export

    faster = faster_export(checkpoint)
    runs = (f"`retina predict {checkpoint}` now runs {faster[0].name} ({faster[1].backend}; --backend torch runs the checkpoint)"
            if faster else f"`retina predict {checkpoint}` keeps PyTorch (the export is not faster here)")
    return f"timed: {timing.describe()}; {runs}"


def _megabytes(path: Path) -> str:
    """The model's size: an IR's .xml with its .bin."""
    size = path.stat().st_size
    if path.suffix == ".xml" and path.with_suffix(".bin").is_file():
        size += path.with_suffix(".bin").stat().st_size
    return f"{size / 1e6:.1f}"


def int8_summary(report) -> str:
    """One line: how much of the model runs in int8, and what it costs on the val split."""
    line = f"int8: {report.quantized} of {report.convolutions} convolutions quantised"
    if report.scope == "backbone":
        line += " (the backbone only: the FPN and head kept in float to keep mAP)"
    if report.groups:
        shown = ", ".join(report.groups[:4]) + (", ..." if len(report.groups) > 4 else "")
        line += f" ({len(report.restored)} put back in float to keep mAP: {shown})"
    if report.fp32_map is None:
        return line + "; not checked against fp32 (no val split, or --no-accuracy-control)"
    return (line + f"; val mAP50-95 {report.fp32_map:.4f} fp32 -> {report.int8_map:.4f} int8 on {report.validation_images} images"
            f" (allowed drop {report.max_drop})")
