"""Validation report: counts of what happened to boxes and images, and every problem found.

Counting convention: ``kept`` boxes end up in records (``clipped`` of them were moved inside the
image first); ``dropped`` boxes were removed (malformed, NaN/inf, unknown class, degenerate after
clipping); ``negatives`` are kept images with no box; ``skipped_images`` were left out (missing,
unreadable, outside the dataset root).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from retina_cli.errors import DataError


@dataclass(frozen=True)
class Problem:
    """One finding. ``line`` is 1-based for txt/CSV files, None for XML/JSON/images."""

    file: Path
    line: int | None
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line is not None else f"{self.file}"
        return printable(f"{where}: {self.message}")


def printable(text: str) -> str:
    """``text`` with the undecodable bytes of non-UTF-8 file names (held as surrogate escapes, see
    :func:`os.fsdecode`) written as ``\\xe9``, so that it prints on any console instead of raising."""
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # a lone surrogate that is not an escaped byte
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


@dataclass
class ValidationReport:
    """Counts and problems gathered while a dataset is read; ``strict`` turns the first problem into a DataError."""

    strict: bool = False
    images: int = 0
    negatives: int = 0
    skipped_images: int = 0
    kept: int = 0
    clipped: int = 0
    dropped: int = 0
    problems: list[Problem] = field(default_factory=list)

    def warn(self, file: Path | str, line: int | None, message: str) -> None:
        """Record a problem; in strict mode raise it as a DataError instead."""
        problem = Problem(Path(file), line, message)
        if self.strict:
            raise DataError(f"{problem} (strict mode: fix it, or run without --strict to skip it)")
        self.problems.append(problem)

    def merge(self, other: ValidationReport) -> None:
        """Add ``other``'s counts and problems (in their order, each through :meth:`warn`, so
        that strict mode raises on the first)."""
        for p in other.problems:
            self.warn(p.file, p.line, p.message)
        self.images += other.images
        self.negatives += other.negatives
        self.skipped_images += other.skipped_images
        self.kept += other.kept
        self.clipped += other.clipped
        self.dropped += other.dropped

    def summary_rows(self) -> list[tuple[str, int]]:
        return [
            ("images", self.images),
            ("negative images (no boxes)", self.negatives),
            ("skipped images", self.skipped_images),
            ("boxes kept", self.kept),
            ("boxes clipped to the image", self.clipped),
            ("boxes dropped", self.dropped),
            ("problems", len(self.problems)),
        ]
