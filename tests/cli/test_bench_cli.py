"""``retina bench``: the table, the JSON and the speed/accuracy mode from the command line."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from helpers import make_checkpoint
from retina_cli.cli.app import _register, app

_register()
runner = CliRunner()
ENV = {"COLUMNS": "200", "NO_COLOR": "1"}
SMALL = ["--backbone", "resnet18", "--img-size", "128", "--fpn-levels", "3-5", "--fpn-channels", "64",
         "--head-width", "64", "--head-depth", "1", "--runs", "2", "--warmup", "0"]


def test_bench_prints_tables_and_writes_json(tmp_path):
    out = tmp_path / "bench.json"
    res = runner.invoke(app, ["bench", *SMALL, "--train-batch", "1", "--out", str(out)], env=ENV)
    assert res.exit_code == 0, res.output
    assert "inference, ms per batch" in res.output and "training step, ms" in res.output
    payload = json.loads(out.read_text())
    (ours,) = payload["results"]
    assert ours["name"] == "retina" and ours["detections"] > 0
    assert set(ours["inference_ms"]) == {"preprocess", "network", "postprocess", "total"}
    for stat in ours["inference_ms"].values():
        assert stat["min"] <= stat["median"] <= stat["max"]
    assert ours["peak_memory_mb"]["train"] > 0
    assert payload["options"]["levels"] == [3, 5] and payload["options"]["runs"] == 2


def test_bench_json_only_on_stdout():
    res = runner.invoke(app, ["bench", *SMALL, "--no-train", "--no-memory", "--json"], env=ENV)
    assert res.exit_code == 0, res.output
    payload = json.loads(res.stdout)
    assert payload["results"][0]["train_ms"] == {} and payload["ratios_to_torchvision"] == {}


def test_bench_bad_flags_are_one_line_errors():
    from retina_cli.cli.app import main
    import pytest

    with pytest.raises(SystemExit) as exc:
        main(["bench", "--compare", "torchvision", "--backbone", "resnet18"])
    assert exc.value.code == 1
    with pytest.raises(SystemExit):
        main(["bench", "--compare", "detectron2"])


def test_bench_speed_accuracy_mode(tmp_path):
    from retina_cli.data.synthetic import write_yolo_dataset

    data = write_yolo_dataset(tmp_path / "data", n_train=2, n_val=2, size=(96, 128))
    names = ("circle", "square", "triangle")
    a, _ = make_checkpoint(tmp_path / "a.pt", seed=0, names=names)
    b, _ = make_checkpoint(tmp_path / "b.pt", seed=1, names=names)
    res = runner.invoke(app, ["bench", str(a), str(b), "--data", str(data), "--runs", "1", "--warmup", "0",
                              "--plot", str(tmp_path / "sa.png"), "--json"], env=ENV)
    assert res.exit_code == 0, res.output
    rows = json.loads(res.stdout)["speed_accuracy"]
    assert [r["checkpoint"] for r in rows] == [str(a), str(b)]
    assert all(0 <= r["AP"] <= 1 for r in rows) and (tmp_path / "sa.png").is_file()


def test_bench_of_a_checkpoint_keeps_its_image_size(tmp_path):
    ckpt, _ = make_checkpoint(tmp_path / "m.pt")  # img_size 128
    res = runner.invoke(app, ["bench", str(ckpt), "--runs", "1", "--warmup", "0", "--no-train", "--no-memory", "--json"], env=ENV)
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["options"]["img_size"] == 128
    res = runner.invoke(app, ["bench", str(ckpt), "--img-size", "256", "--runs", "1", "--warmup", "0", "--no-train",
                              "--no-memory", "--json"], env=ENV)
    assert json.loads(res.stdout)["options"]["img_size"] == 256
