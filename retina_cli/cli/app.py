"""The Typer application and the entry point that turns user errors into one-line messages."""

from __future__ import annotations

import os
import sys

import typer
from rich.console import Console

from retina_cli import __version__
from retina_cli.errors import RetinaError
from retina_cli.speed.host_memory import keep_freed_memory

app = typer.Typer(
    name="retina",
    help="RetinaNet object detection from the command line: train on a folder of labels, evaluate, predict.",
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
)

_state = {"debug": False}


def console(stderr: bool = False) -> Console:
    """A rich console that drops colours when not a TTY or with NO_COLOR.

    Not a TTY (a log file, a pipe), lines are not wrapped at 80 columns, so paths stay whole.
    """
    out = Console(stderr=stderr, no_color=bool(os.environ.get("NO_COLOR")))
    out.soft_wrap = not out.is_terminal
    return out


def _version(value: bool) -> None:
    if value:
        typer.echo(f"retina {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit."),
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks for errors."),
) -> None:
    _state["debug"] = debug


def _register() -> None:
    # each command module adds itself to ``app``; imported here so `retina --help` lists them
    from retina_cli.cli import backbones  # noqa: F401
    from retina_cli.cli import predict, export  # noqa: F401
    from retina_cli.cli import convert  # noqa: F401
    from retina_cli.cli import viz, data  # noqa: F401
    from retina_cli.cli import anchors  # noqa: F401
    from retina_cli.cli import train, eval, demo, checks  # noqa: F401
    from retina_cli.cli import bench  # noqa: F401
    from retina_cli.cli import analyze_loss  # noqa: F401


def main(argv: list[str] | None = None) -> None:
    keep_freed_memory()  # before any tensor exists: see retina_cli.speed.host_memory
    _register()
    try:
        # in non-standalone mode an Exit (Ctrl-C becomes Exit(130)) comes back as the return value
        code = app(args=argv, standalone_mode=False)
        if isinstance(code, int) and code:
            sys.exit(code)
    except RetinaError as exc:
        if _state["debug"]:
            raise
        console(stderr=True).print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
    except SystemExit:
        raise
    except Exception as exc:
        # usage errors of click (or of the copy of click that typer carries) in non-standalone mode
        if hasattr(exc, "show") and hasattr(exc, "exit_code"):
            exc.show()
            sys.exit(exc.exit_code)
        if type(exc).__name__ == "Abort":
            sys.exit(130)
        raise
