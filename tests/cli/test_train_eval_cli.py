"""`retina train`, `retina eval` and `retina demo` through the CLI, and train under torchrun."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from retina_cli.cli.app import _register, app
from retina_cli.data.synthetic import write_yolo_dataset

_register()
runner = CliRunner()
TINY_FLAGS = ["--backbone", "resnet18", "--img-size", "64", "--fpn-levels", "3-5", "--fpn-channels", "32",
              "--head-width", "32", "--head-depth", "1", "--workers", "0", "--batch", "4"]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return write_yolo_dataset(tmp_path_factory.mktemp("cli_data"), n_train=8, n_val=4, size=(64, 80), seed=5,
                              object_size=(14, 30))


@pytest.fixture(scope="module")
def trained(data, tmp_path_factory) -> Path:
    project = tmp_path_factory.mktemp("runs")
    result = runner.invoke(app, ["train", str(data), *TINY_FLAGS, "--epochs", "2", "--project", str(project)])
    assert result.exit_code == 0, result.output
    # the run ends by saying where its time went
    time_line = next(line for line in result.output.splitlines() if line.startswith("time "))
    for phase in ("training steps", "waiting for data", "validation", "checkpoints", "start-up", "other"):
        assert phase in time_line, time_line
    return project / "exp"


def test_train_writes_a_complete_run_folder(trained):
    for name in ("last.pt", "best.pt", "metrics.csv", "config.yaml", "args.yaml"):
        assert (trained / name).is_file(), name
    args = yaml.safe_load((trained / "args.yaml").read_text())
    assert args["img_size"] == 64 and args["epochs"] == 2 and args["backbone"] == "resnet18"
    resolved = yaml.safe_load((trained / "config.yaml").read_text())
    assert resolved["model"]["class_names"] == ["circle", "square", "triangle"]
    assert resolved["model"]["min_level"] == 3 and resolved["model"]["max_level"] == 5
    assert resolved["loss"]["gamma"] == 2.0 and resolved["loss"]["alpha"] == 0.25


def test_config_file_supplies_defaults_and_flags_win(data, tmp_path, trained):
    cfg = tmp_path / "args.yaml"
    args = yaml.safe_load((trained / "args.yaml").read_text())
    args.update(epochs=1, gamma=1.5, project=str(tmp_path / "runs"), name="fromcfg")
    cfg.write_text(yaml.safe_dump(args))
    result = runner.invoke(app, ["train", str(data), "--config", str(cfg), "--gamma", "0.5"])
    assert result.exit_code == 0, result.output
    resolved = yaml.safe_load((tmp_path / "runs" / "fromcfg" / "config.yaml").read_text())
    assert resolved["train"]["epochs"] == 1  # from the file
    assert resolved["loss"]["gamma"] == 0.5  # the flag beats the file


def test_unknown_config_key_is_a_one_line_error(data, tmp_path):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("epochz: 3\n")
    result = runner.invoke(app, ["train", str(data), "--config", str(cfg)])
    assert result.exit_code != 0
    assert "epochz" in str(result.exception) or "epochz" in result.output


def test_eval_writes_metrics_and_coco_detections(trained, data, tmp_path):
    result = runner.invoke(app, ["eval", str(trained / "best.pt"), str(data), "--workers", "0", "--json",
                                 "--project", str(tmp_path), "--conf", "0.01"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.output)
    assert set(payload["metrics"]) >= {"AP", "AP50", "AP75", "APs", "APm", "APl", "AR100"}
    assert set(payload["per_class"]) == {"circle", "square", "triangle"}
    saved = json.loads((tmp_path / "exp" / "metrics.json").read_text())
    assert saved["metrics"] == payload["metrics"] and saved["images"] == 4
    dets = json.loads((tmp_path / "exp" / "detections.json").read_text())
    assert dets and {"image_id", "category_id", "bbox", "score", "file_name"} <= set(dets[0])


def test_eval_refuses_a_dataset_with_other_classes(trained, tmp_path):
    other = write_yolo_dataset(tmp_path / "other", n_train=2, n_val=2, size=(64, 80), object_size=(14, 30))
    (other / "data.yaml").write_text("train: images/train\nval: images/val\nnames:\n  0: cat\n  1: dog\n  2: bird\n")
    result = runner.invoke(app, ["eval", str(trained / "best.pt"), str(other), "--workers", "0", "--project", str(tmp_path)])
    assert result.exit_code != 0
    assert "do not match the checkpoint" in str(result.exception)


def test_torchrun_two_processes_on_cpu(data, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "NO_COLOR": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29533",
           "-m", "retina_cli", "train", str(data), *TINY_FLAGS, "--batch", "2", "--epochs", "1", "--project", str(tmp_path)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "x2 processes" in proc.stdout
    # rank 0 alone measures the anchors (--anchors check) and every rank takes its answer
    assert 1 <= sum(line.startswith("anchors check:") for line in (proc.stdout + proc.stderr).splitlines()) <= 2
    # rank 0 alone writes: one run folder, one metrics row
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exp"]
    rows = (tmp_path / "exp" / "metrics.csv").read_text().strip().splitlines()
    assert len(rows) == 2


def test_demo_runs_end_to_end_on_tiny_settings(tmp_path):
    result = runner.invoke(app, ["demo", "--out", str(tmp_path), "--epochs", "1", "--train-images", "8",
                                 "--img-size", "64", "--workers", "0"])
    assert result.exit_code == 0, result.output
    run = tmp_path / "exp"
    assert (run / "train" / "best.pt").is_file()
    assert (run / "eval" / "metrics.json").is_file()
    assert (run / "predict" / "clip.mp4").is_file() and (run / "predict" / "predictions.json").is_file()
    assert list((run / "viz").glob("*.png"))
    assert "demo done" in result.output and "val mAP50" in result.output
