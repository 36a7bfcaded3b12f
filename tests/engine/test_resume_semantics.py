"""`retina train DATA --resume last.pt`: the same run on the same data; only where it runs may
change and its length may grow. Contradicting flags, other data, a shorter run and a complete run
that is not extended are refused in one line, and nothing in the run folder is rewritten."""

from __future__ import annotations

import copy
import shutil
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from retina_cli.cli.app import _register, app
from retina_cli.data.synthetic import write_yolo_dataset
from retina_cli.engine.checkpoint import load_checkpoint
from retina_cli.errors import ConfigError, RetinaError
from retina_cli.resume_settings import plan_resume

_register()
runner = CliRunner()
TINY = ["--backbone", "resnet18", "--img-size", "64", "--fpn-levels", "3-5", "--fpn-channels", "32",
        "--head-width", "32", "--head-depth", "1", "--workers", "0", "--batch", "4", "--warmup-iters", "2",
        "--lr", "0.01"]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return write_yolo_dataset(tmp_path_factory.mktemp("resume_data"), n_train=8, n_val=4, size=(64, 80), seed=5,
                              object_size=(14, 30))


@pytest.fixture(scope="module")
def run(data, tmp_path_factory) -> Path:
    """A complete 2-epoch run (2 steps per epoch)."""
    project = tmp_path_factory.mktemp("runs")
    result = runner.invoke(app, ["train", str(data), *TINY, "--epochs", "2", "--project", str(project), "--name", "run"])
    assert result.exit_code == 0, result.output
    return project / "run"


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def _refused(args: list[str], run: Path) -> str:
    before = _snapshot(run)
    result = runner.invoke(app, ["train", *args])
    assert result.exit_code != 0
    # the CLI's main prints a RetinaError as one line "error: ..." (exit 1); see the subprocess test
    assert isinstance(result.exception, RetinaError), result.output
    line = str(result.exception)
    assert "\n" not in line
    assert _snapshot(run) == before  # args.yaml, config.yaml, last.pt, metrics.csv: byte for byte
    return line


def test_a_complete_run_without_extension_is_refused_and_nothing_is_written(data, run):
    last = str(run / "last.pt")
    line = _refused([str(data), "--resume", last], run)
    assert "already complete (2/2 epochs)" in line and "pass --epochs M > 2" in line
    line = _refused([str(data), "--resume", last, "--epochs", "2"], run)  # equal: still nothing to do
    assert "already complete" in line


def test_the_cli_prints_the_refusal_as_one_line_and_exits_1(data, run):
    import os
    import subprocess
    import sys

    before = _snapshot(run)
    proc = subprocess.run([sys.executable, "-m", "retina_cli", "train", str(data), "--resume", str(run / "last.pt")],
                          capture_output=True, text=True, timeout=120, env={**os.environ, "NO_COLOR": "1", "COLUMNS": "300"})
    assert proc.returncode == 1, proc.stdout + proc.stderr
    lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "already complete" in lines[0], proc.stderr
    assert "done" not in proc.stdout
    assert _snapshot(run) == before


def test_other_data_is_refused_naming_both_folders(data, run, tmp_path):
    other = write_yolo_dataset(tmp_path / "other", n_train=8, n_val=4, size=(64, 80), seed=9, object_size=(14, 30))
    line = _refused([str(other), "--resume", str(run / "last.pt"), "--epochs", "3"], run)
    assert f"DATA {other} is not the dataset of the run" in line and str(data.resolve()) in line


@pytest.mark.parametrize("flag, value, run_value", [
    ("--img-size", "128", "64"),
    ("--backbone", "resnet34", "resnet18"),
    ("--lr", "0.02", "0.01"),
    ("--batch-size", "2", "4"),
    ("--model", "nano", "small"),
    ("--gamma", "1.5", "2"),
    ("--fpn-levels", "3-7", "3-5"),
    ("--seed", "1", "0"),
    ("--time", "5", None),
    ("--epochs", "1", None),
])
def test_a_flag_that_contradicts_the_run_is_refused_naming_both_values(data, run, flag, value, run_value):
    line = _refused([str(data), "--resume", str(run / "last.pt"), "--epochs", "3", flag, value], run)
    if flag == "--epochs":  # the given one wins over the --epochs 3 before it
        assert "--epochs 1: the run" in line and "already trained 2 of its 2 epochs" in line
    elif flag == "--time":
        assert "--time 5: the run" in line and "no time budget" in line
    else:
        if flag == "--model":
            run_value = load_checkpoint(run / "last.pt")["train_config"]["preset"]
        assert f"{flag} {value}: the run {run / 'last.pt'} has {run_value};" in line, line


def test_the_runs_own_args_yaml_does_not_contradict_it(data, run):
    line = _refused([str(data), "--resume", str(run / "last.pt"), "--config", str(run / "args.yaml")], run)
    assert "already complete" in line  # not a contradiction: every value is the run's


def test_a_larger_epochs_extends_the_run_and_records_it_truthfully(data, run, tmp_path, monkeypatch):
    from retina_cli.config import TrainConfig, from_dict
    from retina_cli.engine.optim import lr_factor

    copy_dir = tmp_path / "run"
    shutil.copytree(run, copy_dir)
    args_before = (copy_dir / "args.yaml").read_bytes()
    config_before = (copy_dir / "config.yaml").read_bytes()
    monkeypatch.chdir(data.parent)  # DATA by a relative path with a trailing slash: the same folder
    result = runner.invoke(app, ["train", data.name + "/", "--resume", str(copy_dir / "last.pt"), "--epochs", "3",
                                 "--img-size", "60", "--backbone", "resnet18", "--workers", "0"])
    assert result.exit_code == 0, result.output
    assert "extending the run from 2 to 3 epochs: the learning-rate schedule is re-fit to 3 epochs from iteration 4" \
        in result.output
    ckpt = load_checkpoint(copy_dir / "last.pt")
    assert ckpt["epoch"] == 2 and ckpt["train_config"]["epochs"] == 3 and len(ckpt["history"]) == 3
    cfg = from_dict(TrainConfig, ckpt["train_config"])
    # the cosine now ends at the new length: the last step's lr is the schedule's floor for 6 iterations
    assert ckpt["scheduler"]["last_epoch"] == 6
    assert ckpt["optimizer"]["param_groups"][0]["lr"] == pytest.approx(0.01 * lr_factor(6, 6, cfg))
    assert (copy_dir / "args.yaml").read_bytes() == args_before  # the settings the run started with
    assert (copy_dir / "config.yaml").read_bytes() == config_before
    record = yaml.safe_load((copy_dir / "resume.yaml").read_text())
    assert len(record) == 1 and record[0]["changed"] == {"epochs": {"from": 2, "to": 3}}
    assert record[0]["epochs_done"] == 2 and record[0]["iteration"] == 4
    # extended, it is complete again at its new length
    line = _refused([str(data), "--resume", str(copy_dir / "last.pt")], copy_dir)
    assert "already complete (3/3 epochs); pass --epochs M > 3" in line


# ---------------------------------------------------------------- the rules, on the checkpoint alone
@pytest.fixture
def ckpt(run) -> dict:
    return copy.deepcopy(load_checkpoint(run / "last.pt"))


def _unfinished(ckpt: dict, epochs_done: int = 1) -> dict:
    ckpt.update(epoch=epochs_done - 1, epoch_complete=True, finished=False, stop_reason="")
    return ckpt


def test_same_folder_by_other_paths_is_the_same_data(ckpt, data, run, monkeypatch):
    _unfinished(ckpt)
    monkeypatch.chdir(data.parent)
    for spelling in (str(data), str(data) + "/", data.name, f"./{data.name}/", f"../{data.parent.name}/{data.name}"):
        plan_resume(ckpt, run / "last.pt", spelling, {})
    link = data.parent / "link"
    link.symlink_to(data, target_is_directory=True)
    plan_resume(ckpt, run / "last.pt", link, {})


def test_an_unfinished_run_goes_on_unchanged_and_where_it_runs_may_change(ckpt, data, run):
    _unfinished(ckpt)
    plan = plan_resume(ckpt, run / "last.pt", data, {"epochs": 2, "img_size": 64, "lr": 0.01, "device": "cpu",
                                                      "workers": 3})
    assert plan.changes == {"device": "cpu", "workers": 3}  # --epochs equal: a no-op continuation
    assert plan.changed == {"device": ("auto", "cpu"), "workers": (0, 3)} and plan.notes == []
    assert plan.settings["epochs"] == 2 and plan.settings["workers"] == 3


def test_a_shorter_run_is_refused_even_before_its_end(ckpt, data, run):
    _unfinished(ckpt, epochs_done=1)
    ckpt["train_config"]["epochs"] = 4
    with pytest.raises(ConfigError, match=r"--epochs 3 is below the run's 4 .*extend a run, not shorten it"):
        plan_resume(ckpt, run / "last.pt", data, {"epochs": 3})
    with pytest.raises(ConfigError, match=r"--epochs 0: the run .* has already trained 1 of its 4 epochs"):
        plan_resume(ckpt, run / "last.pt", data, {"epochs": 0})


def test_time_budget_runs_extend_by_time_only(ckpt, data, run):
    _unfinished(ckpt)
    ckpt["train_config"].update(time=5.0, epochs=0)
    path = run / "last.pt"
    with pytest.raises(ConfigError, match=r"--time 3 is below the run's budget of 5 min"):
        plan_resume(ckpt, path, data, {"time": 3.0})
    with pytest.raises(ConfigError, match=r"--epochs 4: the run .* has no epoch limit"):
        plan_resume(ckpt, path, data, {"epochs": 4})
    plan = plan_resume(ckpt, path, data, {"time": 8.0})
    assert plan.changes == {"time": 8.0} and "extending the time budget from 5 to 8 min" in plan.notes[0]
    ckpt.update(finished=True, stop_reason="time budget of 5 min (5.0 min used)")
    with pytest.raises(ConfigError, match=r"already complete \(its --time budget of 5 min is used\); pass --time M > 5"):
        plan_resume(ckpt, path, data, {})
    assert plan_resume(ckpt, path, data, {"time": 6.0}).changes == {"time": 6.0}


def test_a_run_stopped_by_patience_cannot_be_resumed(ckpt, data, run):
    ckpt.update(finished=True, stop_reason="val mAP has not improved for 2 validations (--patience 2); best 0.1")
    with pytest.raises(ConfigError, match=r"already complete: it stopped early \(val mAP has not improved"):
        plan_resume(ckpt, run / "last.pt", data, {"epochs": 5})


def test_equivalent_spellings_of_the_runs_values_are_accepted(ckpt, data, run):
    _unfinished(ckpt)
    anchors = ckpt["model_config"]["anchors"]  # the preset's (e.g. 3x) or those --anchors check fitted
    per_stride = anchors["size_per_stride"]
    sizes = ",".join(f"{v!r}" for v in anchors["sizes"]) or ",".join(f"{per_stride * 2**lvl:g}" for lvl in (3, 4, 5))
    ratios = ",".join(f"{v!r}" for v in anchors["ratios"])  # the same anchors, spelt out
    same = {"img_size": 60, "fpn_levels": "3-5", "backbone": "timm:resnet18", "anchor_sizes": sizes,
            "anchor_ratios": ratios, "gamma": 2, "lr": "0.01", "project": str(run.parent), "backbone_weights": "none"}
    assert plan_resume(ckpt, run / "last.pt", data, same).changed == {}
    with pytest.raises(ConfigError, match=r"--anchor-sizes 1000,2000,4000: the run .* has "):
        plan_resume(ckpt, run / "last.pt", data, {"anchor_sizes": "1000,2000,4000"})
    with pytest.raises(ConfigError, match=r"--format voc: the run"):
        plan_resume(ckpt, run / "last.pt", data, {"data_format": "voc"})
