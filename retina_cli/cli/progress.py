"""Rich progress bars behind the engine's reporter interface (:mod:`retina_cli.engine.reporting`)."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.progress import Progress


class RichReporter:
    """The engine's :class:`~retina_cli.engine.reporting.Reporter` on a rich console: a bar with a
    status line per unit of work where a person watches a terminal; on a log file or a pipe no bar
    (the lines the engine logs say it all). Warnings in yellow."""

    def __init__(self, console: Console, transient: bool = False) -> None:
        self.console = console
        self.transient = transient
        self.bar: Progress | None = None
        self.task = None

    def start(self, name: str, total: int | None) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        self.stop()
        if not self.console.is_terminal:
            return
        self.bar = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[status]}"),
            TimeElapsedColumn(), TimeRemainingColumn(), console=self.console, transient=self.transient,
        )
        self.bar.start()
        self.task = self.bar.add_task(name, total=total, status="")

    def advance(self, n: int = 1, status: str = "") -> None:
        if self.bar is not None:
            self.bar.update(self.task, advance=n, status=status)

    def stop(self) -> None:
        if self.bar is not None:
            self.bar.stop()
            self.bar, self.task = None, None

    def log(self, message: str) -> None:
        self.console.print(message, highlight=False, markup=False, soft_wrap=True)

    def warn(self, message: str) -> None:
        self.console.print(f"[yellow]warning[/]: {escape(message)}", highlight=False, soft_wrap=True)
