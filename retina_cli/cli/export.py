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
) -> None:
    """Export network + box decoding to ONNX (dynamic batch); NMS runs in `retina predict model.onnx`."""
    if fmt not in FORMATS:
        raise ConfigError(f"--format {fmt!r}: supported formats are {', '.join(FORMATS)}")
    from retina_cli.export.onnx import export_onnx

    path = export_onnx(checkpoint, out or None, dynamic_size, opset)
    console().print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB); run it with: retina predict {path} SOURCE", highlight=False)
