"""``retina backbones``: providers, their backbones, and providers that failed to load."""

from __future__ import annotations

import json
from typing import Optional

import typer
from rich.table import Table

from retina_cli import plugins
from retina_cli.cli.app import app, console
from retina_cli.errors import PluginLoadError


@app.command("backbones")
def backbones(
    pattern: Optional[str] = typer.Argument(None, help="Filter names: a glob (resnet*) or a substring."),
    provider: Optional[str] = typer.Option(None, "--provider", "-p", help="Only this provider."),
    limit: int = typer.Option(50, "--limit", help="Show at most this many names per provider (0: all)."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON only: every matching name (no --limit), and failures."),
) -> None:
    """List backbone providers (entry-point group retina_cli.backbones) and the backbones they build."""
    from retina_cli import validation

    validation.check_flags(limit=limit)
    out = console()
    entries = plugins.discover()
    if provider and provider not in entries:
        raise typer.BadParameter(f"no provider named {provider!r}; installed: {', '.join(sorted(entries))}")
    failed: list[tuple[str, str]] = []
    found: dict[str, dict] = {}
    table = Table(title="backbones", show_lines=False)
    table.add_column("provider")
    table.add_column("package")
    table.add_column("count", justify="right")
    table.add_column("backbones")
    for name, entry in sorted(entries.items()):
        if provider and name != provider:
            continue
        try:
            prov = plugins.load_provider(name)
            names = prov.list_backbones(pattern)
        except PluginLoadError as exc:
            failed.append((name, str(exc)))
            continue
        found[name] = {"package": entry.distribution, "backbones": names}
        shown = names if limit <= 0 else names[:limit]
        more = f" ... (+{len(names) - len(shown)} more)" if len(shown) < len(names) else ""
        table.add_row(name, entry.distribution, str(len(names)), ", ".join(shown) + more)
    if json_out:
        typer.echo(json.dumps({"providers": found, "failed": dict(failed)}, indent=2))
        return
    out.print(table)
    for name, msg in failed:
        out.print(f"[red]failed to load[/] {name}: {msg}", highlight=False, soft_wrap=True)
