"""`retina train --model`: the preset and every setting it resolved to reach config.yaml, args.yaml
and the checkpoint; flags override their part; --help lists the presets."""

from pathlib import Path

import yaml
from typer.testing import CliRunner

from retina_cli.cli.app import _register, app
from retina_cli.engine.checkpoint import load_checkpoint
from retina_cli.data.synthetic import write_yolo_dataset

_register()
runner = CliRunner()


def test_help_lists_every_preset():
    res = runner.invoke(app, ["train", "--help"], env={"COLUMNS": "200", "NO_COLOR": "1"})
    assert res.exit_code == 0
    for name in ("nano:", "small:", "paper:"):
        assert name in res.output
    assert "--time" in res.output and "--patience" in res.output and "--model" in res.output


def test_preset_settings_reach_the_run_and_flags_override(tmp_path: Path):
    data = write_yolo_dataset(tmp_path / "data", n_train=4, n_val=2, size=(64, 64), seed=3, object_size=(14, 30))
    res = runner.invoke(app, ["train", str(data), "--model", "nano", "--backbone", "resnet18", "--img-size", "50",
                              "--fpn-levels", "3-5", "--fpn-channels", "16", "--head-width", "24", "--epochs", "1",
                              "--workers", "0", "--batch", "4", "--project", str(tmp_path / "runs")])
    assert res.exit_code == 0, res.output
    assert "--img-size 50 is not a multiple of 32 (the stride of P5): using 64" in res.output
    run = tmp_path / "runs" / "exp"
    resolved = yaml.safe_load((run / "config.yaml").read_text())
    assert resolved["train"]["preset"] == "nano"
    assert resolved["model"]["head_depth"] == 2 and resolved["model"]["head_norm"] == "gn"  # from nano
    assert resolved["model"]["head_width"] == 24 and resolved["model"]["img_size"] == 64  # flags win
    assert resolved["train"]["optimizer"] == "adamw"
    args = yaml.safe_load((run / "args.yaml").read_text())
    # the preset's anchors (3 x stride) are what the run started from; --anchors check may have fitted them
    assert args["anchor_sizes"] == "3x" and args["anchors"] == "check"
    assert resolved["model"]["anchors"]["size_per_stride"] == 3.0 or resolved["model"]["anchors"]["sizes"]
    assert args["model"] == "nano" and args["img_size"] == 64 and args["lr"] == 2e-3
    ckpt = load_checkpoint(run / "last.pt")
    assert ckpt["train_config"]["preset"] == "nano" and ckpt["model_config"]["head_depth"] == 2
    # the run's args.yaml repeats it
    res = runner.invoke(app, ["train", str(data), "--config", str(run / "args.yaml"), "--name", "again"])
    assert res.exit_code == 0, res.output
    again = yaml.safe_load((tmp_path / "runs" / "again" / "config.yaml").read_text())
    assert again["model"] == resolved["model"] and again["train"]["preset"] == "nano"
