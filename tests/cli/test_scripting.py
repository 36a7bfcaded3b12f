"""What scripts rely on: ``--json`` output that parses to the right numbers, ``--quiet`` runs that
print only paths (no progress bar), colours off without a terminal or with NO_COLOR, completion."""

from __future__ import annotations

import io
import json
from importlib.metadata import EntryPoint
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from helpers import make_checkpoint
from retina_cli import plugins
from retina_cli.cli.app import _register, app, console
from retina_cli.data.synthetic import write_yolo_dataset

_register()
runner = CliRunner()
BAR = "━"  # what rich draws progress bars with
# TTY_COMPATIBLE=1 makes rich treat the captured output as a terminal, so bars would be drawn
AS_TERMINAL = {"TTY_COMPATIBLE": "1", "COLUMNS": "200"}


def test_data_info_json_counts(tmp_path):
    """4 images 40x30 split by folder: train a (cat, dog clipped), b (degenerate cat: dropped) and
    c (no label file); val d (two cats)."""
    root = tmp_path / "d"
    for split, stem in (("train", "a"), ("train", "b"), ("train", "c"), ("val", "d")):
        (root / "images" / split).mkdir(parents=True, exist_ok=True)
        (root / "labels" / split).mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(root / "images" / split / f"{stem}.png"), np.zeros((30, 40, 3), np.uint8))
    (root / "labels/train/a.txt").write_text("0 0.5 0.5 0.5 0.5\n1 0.9 0.5 0.4 0.2\n")
    (root / "labels/train/b.txt").write_text("0 0.5 0.5 0 0.1\n")
    (root / "labels/val/d.txt").write_text("0 0.25 0.5 0.2 0.2\n0 0.75 0.5 0.4 0.4\n")
    (root / "classes.txt").write_text("cat\ndog\n")

    result = runner.invoke(app, ["data", "info", str(root), "--json"], env=AS_TERMINAL)
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    assert (info["format"], info["classes"]) == ("yolo", ["cat", "dog"])
    assert info["splits"] == {
        "train": {"images": 3, "negatives": 2, "boxes": 2, "ignored": 0, "per_class": {"cat": 1, "dog": 1}},
        "val": {"images": 1, "negatives": 0, "boxes": 2, "ignored": 0, "per_class": {"cat": 2, "dog": 0}},
    }
    assert info["validation"] == {"images": 4, "negatives": 2, "skipped_images": 0, "kept": 4, "clipped": 1, "dropped": 1}
    # sqrt(w*h): cat 20x15 -> 17.3, dog clipped to 12x6 -> 8.5, val cats 8x6 -> 6.9 and 16x12 -> 13.9
    assert info["box_sides"]["edges"][:3] == [8, 16, 32]
    assert info["box_sides"]["counts"][:3] == [1, 2, 1] and sum(info["box_sides"]["counts"]) == 4
    assert [(Path(p["file"]).name, p["line"]) for p in info["problems"]] == [("a.txt", 2), ("b.txt", 1)]  # clipped, dropped


def test_backbones_json_lists_every_name_and_failures(monkeypatch):
    real = plugins.discover()
    ep = EntryPoint(name="broken", value="retina_no_such_module:provider", group=plugins.GROUP)
    monkeypatch.setattr(plugins, "discover", lambda: {**real, "broken": plugins.ProviderEntry("broken", ep.value, "retina-broken", ep)})
    plugins.load_provider.cache_clear()
    try:
        result = runner.invoke(app, ["backbones", "resnet1", "--json", "--limit", "1"])
    finally:
        plugins.load_provider.cache_clear()
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["providers"]["torchvision"] == {"package": "retina-torchvision", "backbones": ["resnet101", "resnet18"]}
    assert out["providers"]["timm"]["package"] == "retina-cli"
    assert {"resnet18", "resnet101", "seresnet18"} <= set(out["providers"]["timm"]["backbones"])  # --limit is for tables
    assert list(out["failed"]) == ["broken"]
    assert "No module named 'retina_no_such_module'" in out["failed"]["broken"]


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory) -> Path:
    return write_yolo_dataset(tmp_path_factory.mktemp("quiet_data"), n_train=4, n_val=2, size=(64, 64), seed=3,
                              object_size=(14, 30))


def test_train_quiet_prints_only_the_weights(tiny_data, tmp_path):
    flags = ["train", str(tiny_data), "--backbone", "resnet18", "--img-size", "64", "--fpn-levels", "3-5",
             "--fpn-channels", "16", "--head-width", "16", "--head-depth", "1", "--workers", "0", "--batch", "4",
             "--epochs", "1", "--project", str(tmp_path)]
    # (that rich draws bars under AS_TERMINAL is shown by the predict test below, at less cost)
    quiet = runner.invoke(app, [*flags, "--quiet"], env=AS_TERMINAL)
    assert quiet.exit_code == 0, quiet.output
    assert quiet.stdout.splitlines() == [str(tmp_path / "exp" / "best.pt"), str(tmp_path / "exp" / "last.pt")]
    assert BAR not in quiet.stdout + quiet.stderr and "\x1b[" not in quiet.stderr
    # one line per epoch, on stderr, and it is the last thing said
    assert [ln for ln in quiet.stderr.splitlines() if ln.startswith("epoch ")] == [quiet.stderr.splitlines()[-1]]
    assert quiet.stderr.splitlines()[-1].startswith("epoch 1/1: loss ")
    args = yaml.safe_load((tmp_path / "exp" / "args.yaml").read_text())
    assert args["epochs"] == 1 and "quiet" not in args  # a display flag, not a setting of the run


def test_predict_quiet_prints_only_the_paths(tmp_path, monkeypatch):
    ckpt, _ = make_checkpoint(tmp_path / "m.pt")
    for name in ("a.png", "b.png"):
        cv2.imwrite(str(tmp_path / name), np.full((48, 64, 3), 90, np.uint8))
    monkeypatch.chdir(tmp_path)
    loud = runner.invoke(app, ["predict", str(ckpt), "*.png", "--device", "cpu"], env=AS_TERMINAL)
    assert loud.exit_code == 0, loud.output
    assert BAR in loud.stderr and "done: 2 frames" in loud.stdout  # what --quiet removes
    result = runner.invoke(app, ["predict", str(ckpt), "*.png", "--device", "cpu", "--quiet", "--save-txt"], env=AS_TERMINAL)
    assert result.exit_code == 0, result.output
    out = Path("runs/predict/exp2")
    assert result.stdout.splitlines() == [
        str(out / "a.png"), str(out / "b.png"), str(out / "predictions.json"), str(out / "predictions.csv"), str(out / "labels"),
    ]
    assert result.stderr == ""  # no bar, no summary
    assert all(Path(p).exists() for p in result.stdout.splitlines())


def _printed(env: dict[str, str], monkeypatch, text: str = "[red]error[/] " + "x" * 100) -> str:
    for key in ("NO_COLOR", "TTY_COMPATIBLE", "FORCE_COLOR"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    out = console()
    out.file = io.StringIO()
    out.print(text)
    return out.file.getvalue()


def test_colours_only_on_a_terminal_without_no_color(monkeypatch):
    assert "\x1b[31m" in _printed({"TTY_COMPATIBLE": "1"}, monkeypatch)
    assert "\x1b[" not in _printed({"TTY_COMPATIBLE": "1", "NO_COLOR": "1"}, monkeypatch)
    # not a terminal: plain and not wrapped at 80 columns (a path in a log stays whole)
    assert _printed({}, monkeypatch) == "error " + "x" * 100 + "\n"


def test_shell_completion_is_enabled():
    env = {"_RETINA_COMPLETE": "complete_bash", "COMP_WORDS": "retina da", "COMP_CWORD": "1"}
    result = runner.invoke(app, [], env=env, prog_name="retina")
    assert result.stdout.split() == ["data"]
    env = {"_RETINA_COMPLETE": "complete_bash", "COMP_WORDS": "retina data info --js", "COMP_CWORD": "3"}
    assert runner.invoke(app, [], env=env, prog_name="retina").stdout.split() == ["--json"]
    assert "--install-completion" in runner.invoke(app, ["--help"], env={"COLUMNS": "200"}).stdout
