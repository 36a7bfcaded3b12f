"""examples/gamma_sweep.py on a tiny synthetic dataset: two pairs, one epoch, a tiny model."""

import csv
import math

import cv2
import yaml
from examples_support import TINY_TRAIN_ARGS, load_example

sweep = load_example("gamma_sweep")


def test_parse_pairs():
    assert sweep.parse_pairs(sweep.PAIRS) == [(0.0, 0.75), (0.5, 0.5), (1.0, 0.25), (2.0, 0.25), (5.0, 0.25)]


def test_recipe_scales_the_anchors_and_lets_later_flags_win():
    flags = sweep.recipe(384, 4, 2, "cpu")
    assert flags[flags.index("--anchor-sizes") + 1] == "20.5714,41.1429,82.2857,164.571"
    assert flags[flags.index("--epochs") + 1] == "4" and flags[flags.index("--val-interval") + 1] == "4"


def test_sweep_writes_tables_and_plot(tiny_data, tmp_path):
    out = sweep.main([str(tiny_data), "--pairs", "0:0.75,2:0.25", "--split", "val", "--epochs", "1", "--img-size", "64",
                      "--workers", "0", "--device", "cpu", "--out", str(tmp_path), "--train-args", TINY_TRAIN_ARGS])
    assert out == tmp_path / "exp"
    with open(out / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(r["gamma"], r["alpha"]) for r in rows] == [("0.0000", "0.7500"), ("2.0000", "0.2500")]
    for r in rows:
        for key in ("mAP50-95", "AP50", "AP75", "AP circle", "AP square", "AP triangle"):
            assert 0.0 <= float(r[key]) <= 1.0 and math.isfinite(float(r[key])), key
        assert float(r["AP50"]) >= float(r["mAP50-95"])
        assert 0 < float(r["train_min"]) <= float(r["total_min"])
    md = (out / "results.md").read_text().splitlines()
    assert md[2].startswith("| gamma | alpha | mAP50-95 | AP50 | AP75 | AP circle")
    assert md[4].startswith("| 0 | 0.75 |") and md[5].startswith("| 2 | 0.25 |")
    image = cv2.imread(str(out / "ap_vs_gamma.png"))
    assert image is not None and image.shape[0] > 100
    # each pair trained with its own loss and evaluated on the asked split
    loss = yaml.safe_load((out / "train" / "gamma0_alpha0.75" / "config.yaml").read_text())["loss"]
    assert (loss["gamma"], loss["alpha"]) == (0.0, 0.75)
    model = yaml.safe_load((out / "train" / "gamma2_alpha0.25" / "config.yaml").read_text())["model"]
    assert model["backbone"] == "resnet18" and model["img_size"] == 64 and model["prior"] == 0.01
    assert (out / "eval" / "gamma2_alpha0.25" / "metrics.json").is_file()
