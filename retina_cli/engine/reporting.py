"""How the engine reports progress: a small interface it calls, never a terminal library.

``start(name, total)`` opens a unit of work (an epoch, an evaluation, a video) of ``total`` steps
(None: unknown), ``advance(n, status)`` moves it on with a one-line status, ``stop()`` closes it,
``log(message)`` and ``warn(message)`` say one line each. The CLI passes a rich implementation
(:mod:`retina_cli.cli.progress`: bars on a terminal, plain lines in a log); the Python API passes
:class:`LineReporter` (lines to stderr) or :class:`SilentReporter`.
"""

from __future__ import annotations

import sys
from typing import Protocol, TextIO


class Reporter(Protocol):
    def start(self, name: str, total: int | None) -> None: ...
    def advance(self, n: int = 1, status: str = "") -> None: ...
    def stop(self) -> None: ...
    def log(self, message: str) -> None: ...
    def warn(self, message: str) -> None: ...


class SilentReporter:
    """Says nothing."""

    def start(self, name: str, total: int | None) -> None: ...
    def advance(self, n: int = 1, status: str = "") -> None: ...
    def stop(self) -> None: ...
    def log(self, message: str) -> None: ...
    def warn(self, message: str) -> None: ...


class LineReporter(SilentReporter):
    """Messages as plain lines on ``stream`` (stderr by default); no progress bars."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream

    def _write(self, text: str) -> None:
        out = self.stream or sys.stderr
        out.write(text + "\n")
        out.flush()

    def log(self, message: str) -> None:
        self._write(message)

    def warn(self, message: str) -> None:
        self._write(f"warning: {message}")
