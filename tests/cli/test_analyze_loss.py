"""`retina analyze-loss`: hardest-fraction shares by hand, and the command end to end on tiny data."""

import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from helpers import make_checkpoint, make_model
from retina_cli.cli.app import _register, app
from retina_cli.config import LossConfig
from retina_cli.data import load_dataset
from retina_cli.data.loader import make_loader
from retina_cli.analysis.focal_loss import SampledLogits, analyze, collect_logits, loss_distribution
from retina_cli.data.synthetic import CLASSES, write_yolo_dataset

_register()
runner = CliRunner()


def test_loss_distribution_by_hand():
    # 10 examples: nine of loss 1 and one of 11 (total 20); the hardest 10% is that one
    dist = loss_distribution(torch.tensor([1.0, 11.0, 1, 1, 1, 1, 1, 1, 1, 1]), fractions=(0.01, 0.1, 0.5))
    assert dist.hardest == pytest.approx({0.01: 0.55, 0.1: 0.55, 0.5: 15 / 20})
    assert dist.count == 10 and dist.mean_loss == pytest.approx(2.0)
    np.testing.assert_allclose(dist.fraction, [0.0] + [i / 10 for i in range(1, 11)])
    np.testing.assert_allclose(dist.cumulative, [0.0] + [i / 20 for i in range(1, 10)] + [1.0])
    # 30 examples: 10% is exactly 3 of them, although 0.1 * 30 is a hair above 3 in floating point
    losses = torch.arange(1.0, 31.0)
    assert loss_distribution(losses).hardest[0.1] == pytest.approx((28 + 29 + 30) / losses.sum().item())


def test_focal_concentration_by_hand():
    # negatives: nine logits 0 (p = 1/2) and one logit log(511) (p = 511/512). At gamma 0 without
    # alpha the loss is BCE = log(1 + e^x): ln 2 each and ln 512 = 9 ln 2 for the hard one.
    neg = torch.tensor([0.0] * 9 + [math.log(511.0)], dtype=torch.float64)
    # positives: loss log(1 + e^-x): logit 0 -> ln 2, logit -log(3) -> ln 4 = 2 ln 2
    pos = torch.tensor([0.0, 0.0, -math.log(3.0)], dtype=torch.float64)
    res = analyze(SampledLogits(pos, neg, num_negatives=10, keep_prob=1.0, images=1), gammas=(0.0, 2.0), alpha=-1.0)
    g0, g2 = res.results
    assert g0.negative.hardest[0.1] == pytest.approx(0.5)
    assert g0.positive.hardest[0.1] == pytest.approx(0.5)  # 2 ln 2 of 4 ln 2
    # gamma 2 multiplies each negative's loss by p^2: 1/4 for the easy ones, (511/512)^2 for the hard one
    hard = (511 / 512) ** 2 * 9
    assert g2.negative.hardest[0.1] == pytest.approx(hard / (hard + 9 * 0.25))
    assert g2.negative.hardest[0.1] > g0.negative.hardest[0.1]
    assert g0.neg_loss_share == pytest.approx(18 / (18 + 4))  # in units of ln 2
    assert res.num_positives == 3 and res.num_negatives == 10 and res.sampled_negatives == 10


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("analyze")
    data = write_yolo_dataset(root / "data", n_train=6, n_val=2, size=(64, 80), seed=5, object_size=(14, 30))
    ckpt, _ = make_checkpoint(root / "ckpt.pt", names=CLASSES)
    return data, ckpt


def _run(args):
    result = runner.invoke(app, ["analyze-loss", *map(str, args), "--workers", "0"])
    assert result.exit_code == 0, result.output + repr(result.exception)
    return result.output


def test_analyze_loss_end_to_end(setup, tmp_path):
    data, ckpt = setup
    png = tmp_path / "fig4.png"
    payload = json.loads(_run([ckpt, data, "--out", png, "--json", "--gammas", "0,2", "--max-images", "4"]))
    assert payload["images"] == 4 and payload["img_size"] == 128 and payload["alpha"] == 0.25
    assert payload["num_positives"] > 0
    assert payload["num_negatives"] % len(CLASSES) == 0  # every class entry of each background anchor
    assert payload["sampled_negatives"] == payload["num_negatives"]  # below --max-negatives: all kept
    for g in payload["gammas"]:
        for kind in ("positive", "negative"):
            x, y = (np.array(g[kind]["curve"][k]) for k in ("fraction", "cumulative"))
            assert x[0] == 0 and y[0] == 0 and x[-1] == 1.0 and y[-1] == 1.0
            assert (np.diff(x) > 0).all() and (np.diff(y) >= 0).all()
            assert 0 < g[kind]["hardest_share"]["0.01"] < g[kind]["hardest_share"]["0.1"] < 1
    g0, g2 = payload["gammas"]
    assert g2["negative"]["hardest_share"]["0.1"] > g0["negative"]["hardest_share"]["0.1"]
    image = cv2.imread(str(png))
    assert image is not None and image.shape[0] > 200 and image.shape[1] > 400
    assert json.loads(png.with_suffix(".json").read_text())["gammas"] == payload["gammas"]


def test_negatives_are_a_seeded_uniform_sample(setup):
    data, _ = setup
    model = make_model(names=CLASSES)
    loader = make_loader(load_dataset(data).splits["train"][:2], model.cfg.img_size, 2, train=False)
    runs = [collect_logits(model, loader, LossConfig(), torch.device("cpu"), 2, max_negatives=2000, seed=seed)
            for seed in (0, 0, 1)]
    everything = collect_logits(model, loader, LossConfig(), torch.device("cpu"), 2)
    total = everything.num_negatives
    assert everything.negative.numel() == total > 10_000 and everything.keep_prob == 1.0
    assert runs[0].num_negatives == total and runs[0].keep_prob == pytest.approx(2000 / (2 * 3024 * 3))
    assert abs(runs[0].negative.numel() - 2000) < 200  # Bernoulli(q) per negative
    assert torch.equal(runs[0].negative, runs[1].negative)  # same seed, same sample
    assert not torch.equal(runs[0].negative, runs[2].negative)
    assert set(runs[0].negative.tolist()) <= set(everything.negative.tolist())
    assert torch.equal(runs[0].positive, everything.positive)  # positives are never sampled


def test_table_and_default_run_folder(setup, tmp_path, monkeypatch):
    data, ckpt = setup
    monkeypatch.chdir(tmp_path)
    out = _run([ckpt, data, "--max-images", "2", "--gammas", "0,1"])
    assert "neg 10%" in out and "pos 1%" in out
    assert (tmp_path / "runs" / "analyze" / "exp" / "loss_cdf.png").is_file()
    rows = [line for line in out.splitlines() if line.strip().startswith("│")]
    assert [r.split("│")[1].strip() for r in rows] == ["0", "1"]


def test_bad_gammas_are_a_one_line_error(setup):
    data, ckpt = setup
    result = runner.invoke(app, ["analyze-loss", str(ckpt), str(data), "--gammas", "0,-1"])
    assert result.exit_code != 0 and "--gammas" in str(result.exception)
