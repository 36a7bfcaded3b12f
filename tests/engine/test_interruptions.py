"""Interruptions lose nothing: SIGINT saves last.pt and exits 130, SIGKILL + --resume ends where an
uninterrupted run ends, and a crash during a checkpoint write never truncates the previous file."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch


from retina_cli.config import LossConfig, PostprocessConfig, TrainConfig
from retina_cli.engine.checkpoint import atomic_save, load_checkpoint
from retina_cli.engine.reporting import SilentReporter
from retina_cli.engine.trainer import prepare_training
from retina_cli.data.synthetic import write_yolo_dataset

FLAGS = ["--backbone", "resnet18", "--img-size", "64", "--fpn-levels", "3-5", "--fpn-channels", "32",
         "--head-width", "32", "--head-depth", "1", "--workers", "0", "--batch", "4", "--warmup-iters", "2"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "NO_COLOR": "1"}


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return write_yolo_dataset(tmp_path_factory.mktemp("intr"), n_train=8, n_val=4, size=(64, 80), seed=7,
                              object_size=(14, 30))


def _train(data: Path, project: Path, *extra: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "retina_cli", "train", str(data), *FLAGS, "--project", str(project), *extra]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=ENV)


def _wait_for_rows(metrics: Path, rows: int, proc: subprocess.Popen, timeout: float = 120) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if metrics.is_file() and len(metrics.read_text().strip().splitlines()) >= rows + 1:
            return
        if proc.poll() is not None:
            pytest.fail(f"training ended early: {proc.stdout.read()[-2000:]}")
        time.sleep(0.05)
    pytest.fail("no epoch finished in time")


def test_sigint_saves_last_pt_and_exits_130(data, tmp_path):
    proc = _train(data, tmp_path, "--epochs", "200", "--name", "run")
    _wait_for_rows(tmp_path / "run" / "metrics.csv", 1, proc)
    time.sleep(0.5)  # into the second epoch
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, out[-2000:]
    ckpt = load_checkpoint(tmp_path / "run" / "last.pt")
    # either the end of a finished epoch or the middle of a later one, with the steps done in it
    assert (ckpt["epoch"] >= 0 and ckpt["epoch_complete"]) or (ckpt["epoch"] >= 1 and not ckpt["epoch_complete"])
    trainer = prepare_training(None, LossConfig(), PostprocessConfig(), TrainConfig(workers=0),
                               resume=str(tmp_path / "run" / "last.pt"), reporter=SilentReporter())
    assert trainer.start_epoch == ckpt["epoch"] + (1 if ckpt["epoch_complete"] else 0)
    if not ckpt["epoch_complete"]:  # resume goes on after the last whole step, not from the epoch's start
        steps = ckpt["position"]["step"]
        assert 0 <= steps <= trainer.iters_per_epoch and trainer._resume_position["step"] == steps
        assert ckpt["scheduler"]["last_epoch"] == ckpt["epoch"] * trainer.iters_per_epoch + steps
    assert trainer.run_dir == tmp_path / "run"
    assert "resume with --resume" in out


def test_sigkill_then_resume_matches_an_uninterrupted_run(data, tmp_path):
    full = _train(data, tmp_path, "--epochs", "3", "--name", "full")
    out, _ = full.communicate(timeout=180)
    assert full.returncode == 0, out[-2000:]

    killed = _train(data, tmp_path, "--epochs", "3", "--name", "killed")
    _wait_for_rows(tmp_path / "killed" / "metrics.csv", 1, killed)
    killed.send_signal(signal.SIGKILL)
    killed.wait(timeout=30)
    saved = load_checkpoint(tmp_path / "killed" / "last.pt")  # complete despite the kill
    assert saved["epoch_complete"] is True and saved["epoch"] in (0, 1)

    resumed = subprocess.run([sys.executable, "-m", "retina_cli", "train", str(data), "--resume",
                              str(tmp_path / "killed" / "last.pt"), "--workers", "0"],
                             capture_output=True, text=True, env=ENV, timeout=180)
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-2000:]
    a = load_checkpoint(tmp_path / "full" / "last.pt")
    b = load_checkpoint(tmp_path / "killed" / "last.pt")
    assert b["epoch"] == 2
    for k, v in a["model"].items():
        assert torch.equal(v, b["model"][k]), k
    assert [r["loss"] for r in a["history"]] == [r["loss"] for r in b["history"]]
    assert _metrics(tmp_path / "full") == _metrics(tmp_path / "killed")


def _metrics(run: Path) -> list[dict]:
    """metrics.csv rows without the timing columns, which differ between any two runs."""
    import csv

    with open(run / "metrics.csv") as f:
        return [{k: v for k, v in row.items() if k not in ("images_per_s", "epoch_s")} for row in csv.DictReader(f)]


def test_a_crash_during_a_checkpoint_write_keeps_the_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    atomic_save({"format": "x", "value": torch.arange(3)}, path)
    before = path.read_bytes()

    def dying_save(obj, f, *args, **kwargs):
        f.write(b"half a checkpoint")
        raise KeyboardInterrupt  # killed mid-write

    monkeypatch.setattr(torch, "save", dying_save)
    with pytest.raises(KeyboardInterrupt):
        atomic_save({"format": "x", "value": torch.arange(1000)}, path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]  # no temp file left behind


def test_ctrl_c_during_a_checkpoint_write_is_raised_after_the_file_is_complete(tmp_path, monkeypatch):
    from retina_cli.engine.checkpoint import sigint_deferred

    real_save = torch.save

    def save_then_ctrl_c(obj, f, *args, **kwargs):
        os.kill(os.getpid(), signal.SIGINT)  # arrives in the middle of the write
        real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save_then_ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        atomic_save({"format": "x", "value": torch.arange(5)}, tmp_path / "last.pt")
    assert torch.equal(torch.load(tmp_path / "last.pt", weights_only=True)["value"], torch.arange(5))
    with sigint_deferred():  # nothing pending: the block ends normally
        pass


def test_ctrl_c_in_nested_held_blocks_is_raised_at_the_outer_end():
    """The trainer holds Ctrl-C over an epoch's record and both its checkpoints; the write of the
    first must not raise it before the second is written."""
    from retina_cli.engine.checkpoint import sigint_deferred

    reached = []
    before = signal.getsignal(signal.SIGINT)  # SIG_IGN when the suite runs in a background job
    with pytest.raises(KeyboardInterrupt):
        with sigint_deferred():
            with sigint_deferred():
                os.kill(os.getpid(), signal.SIGINT)
            reached.append("after the inner block")
    assert reached == ["after the inner block"]
    assert signal.getsignal(signal.SIGINT) == before  # the handler that was there is back
