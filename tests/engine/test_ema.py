"""ModelEma: the averaging window follows the length of the run."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from retina_cli.engine.optim import ModelEma


def _ema(total, decay=0.9998):
    torch.manual_seed(0)
    return ModelEma(nn.Linear(3, 2), decay, total)


def test_window_is_a_tenth_of_a_short_run():
    ema = _ema(600)
    assert ema.window() == pytest.approx(60.0)
    ema.updates = 10_000  # warm-up over
    assert ema.current_decay() == pytest.approx(1 - 1 / 60, rel=1e-6)


def test_window_capped_by_decay_on_long_runs():
    ema = _ema(10**7)
    assert ema.window() == pytest.approx(5000.0)
    ema.updates = 10**6
    assert ema.current_decay() == pytest.approx(0.9998, abs=1e-9)


def test_window_follows_a_corrected_estimate():
    total = {"n": 600}
    ema = _ema(lambda: total["n"])
    assert ema.window() == pytest.approx(60.0)
    total["n"] = 2000  # a time budget's estimate grows as the run goes
    assert ema.window() == pytest.approx(200.0)


def test_decay_warms_up_from_zero():
    ema = _ema(600)
    ema.updates = 1
    first = ema.current_decay()
    ema.updates = 12  # one warm-up constant (window / 5)
    assert 0 < first < 0.2
    assert ema.current_decay() == pytest.approx((1 - 1 / 60) * (1 - math.exp(-1)), rel=1e-9)


def test_average_tracks_recent_weights_on_a_short_run():
    """A 600-step run: the average after the run is close to the last ~60 steps' weights, not the
    first ones (a fixed 0.9998 would keep ~90% of the step-100 weights)."""
    torch.manual_seed(0)
    model = nn.Linear(1, 1, bias=False)
    ema = ModelEma(model, 0.9998, 600)
    for step in range(600):
        with torch.no_grad():
            model.weight.fill_(float(step))
        ema.update(model)
    got = ema.module.weight.item()
    assert 599 - 80 < got < 599  # the mean age of an EMA with window 60 is ~60 steps
