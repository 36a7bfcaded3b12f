"""Numbered output folders: ``runs/<task>/exp``, ``exp2``, ``exp3``, ..."""

from __future__ import annotations

from pathlib import Path

from retina_cli.errors import ConfigError


def next_run_dir(base: Path, name: str | None = None, exist_ok: bool = False) -> Path:
    """Create and return the first free folder among ``base/name``, ``base/name2``, ``base/name3``, ...

    name None means "exp". The folder is created here (``mkdir`` without exist_ok), so two
    processes started together never share one. ``exist_ok`` reuses ``base/name`` as it is.
    A folder that cannot be created is a ConfigError, found before any work starts.
    """
    base = Path(base)
    stem = name or "exp"
    try:
        base.mkdir(parents=True, exist_ok=True)
        if exist_ok:
            (base / stem).mkdir(exist_ok=True)
            return base / stem
        k = 1
        while True:
            candidate = base / (stem if k == 1 else f"{stem}{k}")
            try:
                candidate.mkdir()
                return candidate
            except FileExistsError:
                k += 1
    except PermissionError as exc:
        raise ConfigError(f"{exc.filename or base}: no permission to create the output folder; choose another one") from exc
    except OSError as exc:
        if isinstance(exc, FileExistsError):
            raise
        raise ConfigError(f"{exc.filename or base}: cannot create the output folder ({exc.strerror})") from exc
