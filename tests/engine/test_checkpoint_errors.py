"""Checkpoint write and read failures are one line: which file, why, and what is left."""

from __future__ import annotations

import errno
import os
import pickle
import warnings
from pathlib import Path

import pytest
import torch

from retina_cli.engine import checkpoint
from retina_cli.engine.checkpoint import atomic_save, load_checkpoint
from retina_cli.errors import CheckpointError

class _DiskFills:
    """A file object whose writes fail with ENOSPC once ``limit`` bytes went through (a disk that
    fills mid-checkpoint); torch's zip writer then raises its own RuntimeError on top."""

    def __init__(self, f, limit: int) -> None:
        self.f, self.limit, self.written = f, limit, 0

    def write(self, data) -> int:
        self.written += len(data)
        if self.written > self.limit:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return self.f.write(data)

    def flush(self) -> None:
        self.f.flush()

    def fileno(self) -> int:
        return self.f.fileno()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.f.close()


@pytest.fixture
def disk_fills(monkeypatch):
    real = os.fdopen
    monkeypatch.setattr(checkpoint.os, "fdopen", lambda fd, mode: _DiskFills(real(fd, mode), limit=5000))


def test_a_full_disk_keeps_the_previous_checkpoint_and_says_so(tmp_path, monkeypatch):
    last = tmp_path / "last.pt"
    atomic_save({"format": "x", "value": torch.arange(10)}, last)
    before = last.read_bytes()
    real = os.fdopen
    monkeypatch.setattr(checkpoint.os, "fdopen", lambda fd, mode: _DiskFills(real(fd, mode), limit=5000))
    with pytest.raises(CheckpointError) as err:
        atomic_save({"format": "x", "value": torch.zeros(100_000)}, last)
    msg = str(err.value)
    assert msg == f"{last}: could not write the checkpoint (No space left on device); the previous last.pt is intact"
    assert last.read_bytes() == before  # byte-identical
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]  # no temporary file left


def test_a_full_disk_on_the_first_checkpoint_says_nothing_was_written(tmp_path, disk_fills):
    with pytest.raises(CheckpointError, match=r"best\.pt: could not write the checkpoint \(No space left on device\); nothing was written$"):
        atomic_save({"value": torch.zeros(100_000)}, tmp_path / "best.pt")
    assert list(tmp_path.iterdir()) == []


def test_a_failing_torch_save_is_a_checkpoint_error_and_a_bug_stays_a_bug(tmp_path, monkeypatch):
    def enospc(obj, f):
        f.write(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpoint.torch, "save", enospc)
    with pytest.raises(CheckpointError, match=r"x\.pt: could not write the checkpoint \(No space left on device\)"):
        atomic_save({}, tmp_path / "x.pt")

    def bug(obj, f):
        raise RuntimeError("shape mismatch in something")

    monkeypatch.setattr(checkpoint.torch, "save", bug)
    with pytest.raises(RuntimeError, match="shape mismatch"):  # not a write failure: a traceback
        atomic_save({}, tmp_path / "x.pt")
    assert list(tmp_path.iterdir()) == []


def test_the_trainer_save_path_gives_the_one_line_error(tmp_path, disk_fills):
    from helpers import make_model

    with pytest.raises(CheckpointError, match=r"last\.pt: could not write the checkpoint \(No space left on device\)"):
        checkpoint.save_checkpoint(tmp_path / "run" / "last.pt", make_model())


class _Evil:
    """Unpickled, it would run ``touch marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("layout", ["torch-zip", "raw-pickle"])
def test_a_crafted_checkpoint_is_refused_without_running_it_or_advising_weights_only(tmp_path, layout):
    marker = tmp_path / "PWNED"
    path = tmp_path / "evil.pt"
    if layout == "torch-zip":
        torch.save({"format": checkpoint.FORMAT, "model": _Evil(marker)}, path)
    else:
        path.write_bytes(pickle.dumps({"model": _Evil(marker)}, protocol=4))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. the safe unpickler's pickle-protocol note would be a second line
        with pytest.raises(CheckpointError) as err:
            load_checkpoint(path)
    msg = str(err.value)
    assert msg == (f"{path}: refused: the file holds Python objects that are not plain tensors/containers (os.system); "
                   "a retina checkpoint holds only tensors and plain values")
    assert "weights_only" not in msg and "\n" not in msg
    assert not marker.exists()  # nothing was executed


def test_a_damaged_checkpoint_names_the_file_in_one_line_without_torch_advice(tmp_path):
    good = tmp_path / "good.pt"
    atomic_save({"format": checkpoint.FORMAT, "v": torch.zeros(1000)}, good)
    cut = tmp_path / "cut.pt"
    cut.write_bytes(good.read_bytes()[:2000])
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(cut)
    msg = str(err.value)
    assert msg.startswith(f"{cut}: not a readable checkpoint (RuntimeError: PytorchStreamReader failed reading zip archive")
    assert "\n" not in msg and "weights_only" not in msg and "high likelihood" not in msg



def test_retina_train_on_a_full_disk_is_one_line(tmp_path, disk_fills, capsys):
    from retina_cli.cli.app import main
    from retina_cli.data.synthetic import write_yolo_dataset

    data = write_yolo_dataset(tmp_path / "d", n_train=4, n_val=0, size=(64, 80), seed=1, object_size=(14, 30))
    flags = ["--backbone", "resnet18", "--img-size", "64", "--fpn-levels", "3-5", "--fpn-channels", "32",
             "--head-width", "32", "--head-depth", "1", "--workers", "0", "--batch", "4", "--epochs", "1", "--device", "cpu"]
    with pytest.raises(SystemExit) as exc:
        main(["train", str(data), *flags, "--project", str(tmp_path / "runs"), "--quiet"])
    assert exc.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ") and err[-1].endswith("could not write the checkpoint (No space left on device); nothing was written"), err
    assert "Traceback" not in "\n".join(err)
