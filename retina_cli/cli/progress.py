"""Rich progress bars behind the engine's reporter interface (``start(name, total)``, ``advance(n)``, ``stop()``)."""

from __future__ import annotations

from rich.console import Console
from rich.progress import Progress


class TransientBar:
    """One bar that disappears when done (``retina eval``'s)."""

    def __init__(self, console: Console) -> None:
        self.bar, self.task = Progress(console=console, transient=True), None

    def start(self, name: str, total: int | None) -> None:
        self.bar.start()
        self.task = self.bar.add_task(name, total=total)

    def advance(self, n: int) -> None:
        if self.task is not None:
            self.bar.advance(self.task, n)

    def stop(self) -> None:
        self.bar.stop()
