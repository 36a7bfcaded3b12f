"""Numbered output folders: ``runs/<task>/exp``, ``exp2``, ``exp3``, ..."""

from __future__ import annotations

from pathlib import Path


def next_run_dir(base: Path, name: str | None = None) -> Path:
    """Create and return the first free folder among ``base/name``, ``base/name2``, ``base/name3``, ...

    name None means "exp". The folder is created here (``mkdir`` without exist_ok), so two
    processes started together never share one.
    """
    base = Path(base)
    stem = name or "exp"
    base.mkdir(parents=True, exist_ok=True)
    k = 1
    while True:
        candidate = base / (stem if k == 1 else f"{stem}{k}")
        try:
            candidate.mkdir()
            return candidate
        except FileExistsError:
            k += 1
