"""Output folders are made and probed before any work, and a failed command leaves nothing half-written."""

from __future__ import annotations

import errno
from pathlib import Path

import cv2
import numpy as np
import pytest

from helpers import make_checkpoint
from retina_cli.cli.app import main
from retina_cli.data.synthetic import write_yolo_dataset
from retina_cli.engine import runs
from retina_cli.engine.runs import discard_on_failure, next_run_dir, output_dir, output_file, written_atomically
from retina_cli.errors import ConfigError, DataError

TINY_FLAGS = ["--backbone", "resnet18", "--img-size", "64", "--fpn-levels", "3-5", "--fpn-channels", "32",
              "--head-width", "32", "--head-depth", "1", "--workers", "0", "--batch", "4"]


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "m.pt")[0]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return write_yolo_dataset(tmp_path_factory.mktemp("data"), n_train=4, n_val=2, size=(64, 80), seed=5, object_size=(14, 30))


@pytest.fixture
def a_file(tmp_path) -> Path:
    path = tmp_path / "some_file"
    path.write_text("not a folder\n")
    return path


def run_cli(args: list[str], capsys) -> str:
    """``retina ARGS`` that must fail: exit 1 and exactly one ``error:`` line on stderr (no traceback)."""
    with pytest.raises(SystemExit) as exc:
        main(args)
    assert exc.value.code == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    return err


def unwritable(monkeypatch, folder: Path) -> None:
    """Writes into ``folder`` fail with EACCES (tests run as root, where chmod stops nothing)."""
    real_open = open

    def fake_open(path, *args, **kwargs):
        if Path(path).parent == folder:
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(runs, "open", fake_open, raising=False)


# ---------------------------------------------------------------- the creators


def test_next_run_dir_refuses_a_file_and_a_path_under_a_file(a_file):
    with pytest.raises(ConfigError, match=r"some_file: the output folder cannot be created or written \(a file of that name exists, not a folder\); choose another --project"):
        next_run_dir(a_file)
    with pytest.raises(ConfigError, match=r"some_file/sub: .*\(a part of the path is a file, not a folder\)"):
        next_run_dir(a_file / "sub")
    with pytest.raises(ConfigError, match=r"some_file/x: .*choose another --out"):
        output_dir(a_file / "x")
    with pytest.raises(ConfigError, match=r"some_file: .*a file of that name exists"):
        next_run_dir(a_file.parent, a_file.name, exist_ok=True)


def test_an_unwritable_folder_is_refused_and_the_new_run_folder_removed(tmp_path, monkeypatch):
    project = tmp_path / "runs"
    project.mkdir()
    unwritable(monkeypatch, project / "exp")
    with pytest.raises(ConfigError, match=r"runs/exp: .*\(no permission to write there\)"):
        next_run_dir(project)
    assert list(project.iterdir()) == []  # the probe failed: the folder made for it is gone
    unwritable(monkeypatch, tmp_path / "out")
    (tmp_path / "out").mkdir()
    with pytest.raises(ConfigError, match=r"out: .*no permission"):
        output_dir(tmp_path / "out")


def test_output_file_makes_its_folder_and_refuses_a_folder(tmp_path):
    assert output_file(tmp_path / "a" / "b" / "x.json") == tmp_path / "a" / "b" / "x.json"
    assert (tmp_path / "a" / "b").is_dir() and list((tmp_path / "a" / "b").iterdir()) == []  # probe deleted
    with pytest.raises(ConfigError, match=r"a: is a folder; --plot names the file to write"):
        output_file(tmp_path / "a", "--plot")


def test_discard_on_failure_takes_back_only_this_runs_files(tmp_path):
    fresh = next_run_dir(tmp_path / "p")
    with pytest.raises(DataError):
        with discard_on_failure(fresh, made=[tmp_path / "p"]):
            (fresh / "predictions.json").write_text("[]")
            raise DataError("bad input")
    assert not (tmp_path / "p").exists()
    old = output_dir(tmp_path / "o")
    (old / "mine.txt").write_text("the user's")
    with pytest.raises(DataError):
        with discard_on_failure(old, fresh=False):
            (old / "new.json").write_text("[]")
            (old / "labels").mkdir()
            raise DataError("bad input")
    assert [p.name for p in old.iterdir()] == ["mine.txt"]
    kept = next_run_dir(tmp_path / "k")
    with pytest.raises(DataError):
        with discard_on_failure(kept, keep=runs.holds_checkpoint):
            (kept / "last.pt").write_bytes(b"x")
            raise DataError("late failure")
    assert (kept / "last.pt").is_file()  # a checkpoint can be resumed: the folder stays
    with pytest.raises(KeyboardInterrupt):  # not a refusal: the partial results stay
        with discard_on_failure(kept):
            raise KeyboardInterrupt
    assert kept.is_dir()


def test_written_atomically_publishes_only_a_complete_file(tmp_path):
    target = tmp_path / "model.onnx"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with written_atomically(target) as tmp:
            assert tmp.parent == tmp_path and tmp.suffix == ".onnx" and tmp != target
            tmp.write_bytes(b"half")
            raise RuntimeError("crash")
    assert target.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["model.onnx"]
    with written_atomically(target) as tmp:
        tmp.write_bytes(b"new")
    assert target.read_bytes() == b"new" and [p.name for p in tmp_path.iterdir()] == ["model.onnx"]


# ---------------------------------------------------------------- the commands


def test_predict_checks_the_folder_before_loading_the_model_or_reading_an_image(ckpt, a_file, tmp_path, monkeypatch, capsys):
    import retina_cli.engine.predict as predict

    img = tmp_path / "x.png"
    cv2.imwrite(str(img), np.full((60, 80, 3), 90, np.uint8))

    def no_work(*args, **kwargs):
        raise AssertionError("work started before the output folder was checked")

    monkeypatch.setattr(predict, "load_backend", no_work)
    monkeypatch.setattr(predict, "iter_images", no_work)
    for flags, expected in [
        (["--project", str(a_file)], "some_file: the output folder cannot be created or written (a file of that name exists"),
        (["--out", str(a_file)], "choose another --out"),
        (["--out", str(a_file / "sub")], "a part of the path is a file"),
    ]:
        err = run_cli(["predict", str(ckpt), str(img), "--device", "cpu", *flags], capsys)
        assert expected in err, err
    (tmp_path / "ro").mkdir()
    unwritable(monkeypatch, tmp_path / "ro")
    err = run_cli(["predict", str(ckpt), str(img), "--device", "cpu", "--out", str(tmp_path / "ro")], capsys)
    assert "ro: the output folder cannot be created or written (no permission to write there)" in err


def test_eval_train_export_refuse_a_project_that_is_a_file(ckpt, data, a_file, capsys):
    err = run_cli(["eval", str(ckpt), str(data), "--device", "cpu", "--project", str(a_file)], capsys)
    assert "some_file: the output folder cannot be created or written" in err and "--project" in err
    err = run_cli(["train", str(data), *TINY_FLAGS, "--epochs", "1", "--device", "cpu", "--project", str(a_file)], capsys)
    assert "some_file: the output folder cannot be created or written" in err and "--project" in err
    err = run_cli(["export", str(ckpt), "--out", str(a_file / "x.onnx")], capsys)
    assert "some_file: the output folder cannot be created or written" in err and "--out" in err


def test_a_failed_eval_leaves_no_run_folder(ckpt, data, tmp_path, capsys):
    # the tiny dataset's classes are not the checkpoint's: refused after the folder was made
    err = run_cli(["eval", str(ckpt), str(data), "--device", "cpu", "--project", str(tmp_path / "new" / "eval")], capsys)
    assert "do not match the checkpoint's" in err
    assert not (tmp_path / "new").exists()
    (tmp_path / "old").mkdir()
    run_cli(["eval", str(ckpt), str(tmp_path / "nodata"), "--device", "cpu", "--project", str(tmp_path / "old")], capsys)
    assert (tmp_path / "old").is_dir() and list((tmp_path / "old").iterdir()) == []  # the user's folder stays


def test_a_train_failing_on_its_input_takes_back_its_folder(data, tmp_path, monkeypatch, capsys):
    from retina_cli.engine.trainer import Trainer

    def fails(self):
        assert (self.run_dir / "config.yaml").is_file()  # the folder was made and written
        raise DataError(f"{data}: every image of the batch is unreadable")

    monkeypatch.setattr(Trainer, "fit", fails)
    project = tmp_path / "runs" / "train"
    err = run_cli(["train", str(data), *TINY_FLAGS, "--epochs", "1", "--device", "cpu", "--project", str(project)], capsys)
    assert "every image of the batch is unreadable" in err
    assert not (tmp_path / "runs").exists()


def test_a_failed_int8_export_leaves_no_fp32_model(ckpt, tmp_path, monkeypatch, capsys):
    import retina_cli.export.quantize as quantize
    from retina_cli.export import ExportError

    out = tmp_path / "exp" / "model.onnx"
    out.parent.mkdir()
    out.write_bytes(b"an older export")
    monkeypatch.setattr(quantize, "calibration_batches", lambda *a, **k: [np.zeros((1, 128, 128, 3), np.uint8)])

    def fails(*args, **kwargs):
        raise ExportError("int8 quantisation failed")

    monkeypatch.setattr(quantize, "quantize_int8", fails)
    err = run_cli(["export", str(ckpt), "--out", str(out), "--int8", "--calibration", str(tmp_path)], capsys)
    assert "int8 quantisation failed" in err
    assert [p.name for p in out.parent.iterdir()] == ["model.onnx"] and out.read_bytes() == b"an older export"
    fresh = tmp_path / "new" / "m.onnx"
    run_cli(["export", str(ckpt), "--out", str(fresh), "--int8", "--calibration", str(tmp_path)], capsys)
    assert not (tmp_path / "new").exists()


def test_train_refuses_its_project_before_reading_the_data(data, a_file, tmp_path, monkeypatch, capsys):
    import retina_cli.data as data_pkg

    def no_reading(*args, **kwargs):
        raise AssertionError("the dataset was read before the output folder was checked")

    monkeypatch.setattr(data_pkg, "load_dataset", no_reading)
    for project in (a_file, a_file / "sub"):
        err = run_cli(["train", str(data), *TINY_FLAGS, "--epochs", "1", "--device", "cpu", "--project", str(project)], capsys)
        assert "the output folder cannot be created or written" in err and "--project" in err


def test_check_can_create_makes_nothing(tmp_path):
    from retina_cli.engine.runs import check_can_create

    check_can_create(tmp_path / "a" / "b")
    assert list(tmp_path.iterdir()) == []  # neither the folders nor the probe
