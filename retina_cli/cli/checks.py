"""``retina checks``: versions, device, threads and backbone plugins, for bug reports."""

from __future__ import annotations

import json
import platform
from importlib import metadata

import typer
from rich.table import Table

from retina_cli import __version__, plugins
from retina_cli.cli.app import app, console
from retina_cli.errors import PluginLoadError

PACKAGES = ("torch", "torchvision", "timm", "typer", "rich", "pycocotools", "opencv-python-headless", "numpy",
            "onnx", "onnxruntime", "av", "matplotlib")


def environment() -> dict:
    """What is installed and where retina would run, as plain values."""
    import torch

    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    providers, failed = {}, {}
    for name, entry in sorted(plugins.discover().items()):
        try:
            plugins.load_provider(name)
            providers[name] = entry.distribution
        except PluginLoadError as exc:
            failed[name] = str(exc)
    cuda = torch.cuda.is_available()
    return {
        "retina": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": versions,
        "device": "cuda" if cuda else "cpu",
        "cuda": {"available": cuda, "version": torch.version.cuda,
                 "devices": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if cuda else []},
        "threads": torch.get_num_threads(),
        "providers": providers,
        "failed_providers": failed,
    }


@app.command("checks")
def checks(json_out: bool = typer.Option(False, "--json", help="Print machine-readable JSON.")) -> None:
    """Versions of torch, torchvision, timm, onnxruntime...; device, threads, CUDA; backbone plugins."""
    env = environment()
    if json_out:
        typer.echo(json.dumps(env, indent=2))
        return
    out = console()
    table = Table(title=f"retina {env['retina']} on Python {env['python']}", show_header=False)
    table.add_column("what")
    table.add_column("value")
    for name, version in env["packages"].items():
        table.add_row(name, version or "[dim]not installed[/]")
    table.add_row("device", env["device"] + (f" ({', '.join(env['cuda']['devices'])})" if env["cuda"]["devices"] else ""))
    table.add_row("torch threads", str(env["threads"]))
    table.add_row("backbone providers", ", ".join(f"{k} ({v})" for k, v in env["providers"].items()) or "none")
    out.print(table)
    for name, msg in env["failed_providers"].items():
        out.print(f"[red]failed to load[/] {name}: {msg}", highlight=False, soft_wrap=True)
