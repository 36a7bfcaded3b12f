"""User errors end in one line on stderr and a non-zero exit, found before any work starts."""

import subprocess
import sys

import pytest

from retina_cli.data.synthetic import write_yolo_dataset


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_yolo_dataset(tmp_path_factory.mktemp("err"), n_train=2, n_val=2, size=(64, 80), object_size=(14, 30))


def _retina(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "retina_cli", *args], capture_output=True, text=True, timeout=120,
                          env={"NO_COLOR": "1", "COLUMNS": "300", "PATH": "/usr/bin:/bin"})


def _one_line_error(proc: subprocess.CompletedProcess, *needles: str) -> None:
    assert proc.returncode == 1, proc.stdout + proc.stderr
    lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_unwritable_output_folder_is_found_before_training(data, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    _one_line_error(_retina("train", str(data), "--backbone", "resnet18", "--project", str(blocker / "runs")),
                    "output folder", str(blocker))


def test_unknown_backbone_suggests_close_names(data, tmp_path):
    _one_line_error(_retina("train", str(data), "--backbone", "resnet51", "--project", str(tmp_path)),
                    "unknown backbone 'resnet51'", "resnet50")
    assert not list(tmp_path.iterdir())  # found before a run folder was made


def test_a_refused_weights_file_leaves_no_run_folder(data, tmp_path):
    # the model is built and its weights loaded before the run folder is made
    bogus = tmp_path / "weights.pth"
    bogus.write_text("not weights")
    project = tmp_path / "runs"
    _one_line_error(_retina("train", str(data), "--backbone", "resnet18", "--backbone-weights", str(bogus),
                            "--project", str(project)), str(bogus))
    assert not project.exists() or not list(project.iterdir())


def test_a_file_that_is_not_a_checkpoint(data, tmp_path):
    bogus = tmp_path / "model.pt"
    bogus.write_text("hello")
    _one_line_error(_retina("eval", str(bogus), str(data)), str(bogus), "not a readable checkpoint")


def test_debug_shows_the_traceback(data, tmp_path):
    bogus = tmp_path / "model.pt"
    bogus.write_text("hello")
    proc = _retina("--debug", "eval", str(bogus), str(data))
    assert proc.returncode != 0 and "Traceback" in proc.stderr
