"""Where commands write: output folders made and checked before any work, and nothing half-written.

- :func:`next_run_dir`: numbered run folders ``runs/<task>/exp``, ``exp2``, ``exp3``, ...
- :func:`output_dir`: an explicit folder (``--out DIR``); :func:`output_file`: the folder of an
  explicit file (``--out x.onnx``).
- :func:`discard_on_failure`: a run that fails on its input takes back what it wrote.
- :func:`written_atomically`: a file appears under its name complete, or not at all.

Every folder is created and probed (a file written and deleted) here, so a path naming a file, a
path under a file or a folder that cannot be written is a one-line ConfigError naming the path,
found before a model is loaded or an image is read.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable, Iterator, Sequence

from retina_cli.errors import ConfigError, RetinaError

_PROBE = ".retina-write-test"


def _reason(exc: OSError) -> str:
    if isinstance(exc, FileExistsError) or exc.errno == errno.EEXIST:
        return "a file of that name exists, not a folder"
    if isinstance(exc, NotADirectoryError) or exc.errno == errno.ENOTDIR:
        return "a part of the path is a file, not a folder"
    if isinstance(exc, PermissionError):
        return "no permission to write there"
    return exc.strerror or str(exc)


def _refuse(path: Path, exc: OSError, flag: str) -> ConfigError:
    return ConfigError(f"{path}: the output folder cannot be created or written ({_reason(exc)}); choose another {flag}")


def check_writable(folder: Path, flag: str = "--project") -> None:
    """ConfigError naming ``folder`` unless a file can be created and deleted in it (root ignores
    permission bits, so only a real write tells)."""
    probe = Path(folder) / _PROBE
    try:
        with open(probe, "wb") as f:
            f.write(b"ok")
        probe.unlink()
    except OSError as exc:
        raise _refuse(Path(folder), exc, flag) from exc


def check_can_create(folder: str | os.PathLike, flag: str = "--project") -> None:
    """ConfigError unless ``folder`` could be made and written, decided without making it: the
    nearest existing part of the path must be a folder that takes a probe file. For commands
    whose folder comes after long work (train reads the data and builds the model first)."""
    folder = Path(folder)
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        why = "a file of that name exists, not a folder" if existing == folder else "a part of the path is a file, not a folder"
        raise ConfigError(f"{folder}: the output folder cannot be created or written ({why}); choose another {flag}")
    try:
        check_writable(existing, flag)
    except ConfigError as exc:
        raise ConfigError(str(exc).replace(str(existing), str(folder), 1)) from exc.__cause__


def _make_dir(folder: Path, flag: str) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _refuse(folder, exc, flag) from exc
    if not folder.is_dir():  # mkdir(exist_ok) on an existing file raises, but a symlink to one may not
        raise ConfigError(f"{folder}: the output folder cannot be created or written (a file of that name exists, not a folder); choose another {flag}")


def next_run_dir(base: Path, name: str | None = None, exist_ok: bool = False, flag: str = "--project") -> Path:
    """Create and return the first free folder among ``base/name``, ``base/name2``, ``base/name3``, ...

    name None means "exp". The folder is created here (``mkdir`` without exist_ok), so two
    processes started together never share one. ``exist_ok`` reuses ``base/name`` as it is.
    A folder that cannot be created or written is a ConfigError naming it (``flag`` is the option
    the user should change), found before any work starts.
    """
    base = Path(base)
    stem = name or "exp"
    _make_dir(base, flag)
    if exist_ok:
        _make_dir(base / stem, flag)
        check_writable(base / stem, flag)
        return base / stem
    k = 1
    while True:
        candidate = base / (stem if k == 1 else f"{stem}{k}")
        try:
            candidate.mkdir()
        except FileExistsError:
            k += 1
            continue
        except OSError as exc:
            raise _refuse(candidate, exc, flag) from exc
        try:
            check_writable(candidate, flag)
        except ConfigError:
            candidate.rmdir()
            raise
        return candidate


def output_dir(folder: str | os.PathLike, flag: str = "--out") -> Path:
    """An explicit output folder (it may exist): created if needed and checked writable."""
    folder = Path(folder)
    _make_dir(folder, flag)
    check_writable(folder, flag)
    return folder


def output_file(path: str | os.PathLike, flag: str = "--out") -> Path:
    """An explicit output file: its folder created and checked writable; ConfigError when the path
    is a folder."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{path}: is a folder; {flag} names the file to write")
    output_dir(path.parent, flag)
    return path


def absent_folders(folder: str | os.PathLike) -> list[Path]:
    """``folder`` and those of its parents that do not exist yet, innermost first: what creating
    it makes (pass them as ``made`` to :func:`discard_on_failure`)."""
    folder, absent = Path(folder), []
    while not folder.exists() and folder != folder.parent:
        absent.append(folder)
        folder = folder.parent
    return absent


@contextlib.contextmanager
def discard_on_failure(folder: Path, fresh: bool = True, keep: Callable[[Path], bool] = lambda folder: False,
                       made: Sequence[Path] = ()) -> Iterator[Path]:
    """A RetinaError inside the block takes back what this run wrote into ``folder``.

    fresh: ``folder`` was created empty for this run, so all it holds is this run's: it is removed
    whole. Otherwise (an existing ``--out`` folder) only the entries that were not there when the
    block began are removed. made: folders created for this run (e.g. a new ``--project``),
    innermost first, removed too when that leaves them empty. ``keep(folder)`` true at the failure
    (e.g. a checkpoint was saved) leaves everything. Other exceptions (bugs, KeyboardInterrupt)
    leave the folder as it is.
    """
    folder = Path(folder)
    before = set() if fresh or not folder.is_dir() else set(os.listdir(folder))
    try:
        yield folder
    except RetinaError:
        if folder.is_dir() and not keep(folder):
            if fresh:
                shutil.rmtree(folder, ignore_errors=True)
            else:
                for entry in set(os.listdir(folder)) - before:
                    target = folder / entry
                    if target.is_dir() and not target.is_symlink():
                        shutil.rmtree(target, ignore_errors=True)
                    else:
                        target.unlink(missing_ok=True)
            for parent in made:
                with contextlib.suppress(OSError):  # not empty: something else is in it now
                    parent.rmdir()
        raise


def holds_checkpoint(folder: Path) -> bool:
    """A run folder with a checkpoint in it: worth keeping after a failure (it can be resumed)."""
    return any(Path(folder).glob("*.pt"))


@contextlib.contextmanager
def written_atomically(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary name beside ``path`` (same folder, same suffix) for the block to write;
    a clean exit renames it to ``path``, any exception removes it (an old ``path`` stays intact)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
