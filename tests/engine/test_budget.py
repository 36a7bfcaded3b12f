"""--time (the budget scheduler, with a fake clock), --patience and the capped warm-up."""

from __future__ import annotations

import math

import pytest
import torch

from retina_cli.config import LossConfig, ModelConfig, PostprocessConfig, TrainConfig
from retina_cli.engine.budget import TimeBudget
from retina_cli.engine.checkpoint import load_checkpoint
from retina_cli.engine.evaluate import EvalResult
from retina_cli.engine.optim import lr_factor, warmup_length
from retina_cli.engine.reporting import SilentReporter
from retina_cli.engine.trainer import prepare_training

TINY = dict(backbone="resnet18", img_size=64, min_level=3, max_level=5, fpn_channels=32, head_width=32, head_depth=1)


class FakeClock:
    """Time that moves only when told (or by ``per_read`` at every read)."""

    def __init__(self, per_read: float = 0.0) -> None:
        self.t = 1000.0
        self.per_read = per_read

    def __call__(self) -> float:
        self.t += self.per_read
        return self.t


def test_budget_counts_the_iterations_that_fit():
    clock = FakeClock()
    budget = TimeBudget(600.0, clock)
    assert budget.iterations_left(10, 20, 1, 4) is None  # nothing measured yet
    budget.record_step(30.0)  # the first step pays for start-up: not counted
    for _ in range(4):
        clock.t += 2.0
        budget.record_step(2.0)
    assert budget.seconds_per_step() == 2.0
    clock.t += 30.0  # with the 4 steps' 8 s: 38 s of the 600 are gone
    # before any validation: 20 images at half a training image each (2 s / batch 4) = 5 s
    assert budget.validation_seconds(20, 4) == pytest.approx(5.0)
    # end of run reserve: validation 5 s + 2 saves x 0 s + margin max(3, 6) = 11 s;
    # per iteration: 2 s + (5 s validation per epoch) / 10 iterations = 2.5 s
    assert budget.iterations_left(10, 20, 1, 4) == math.floor((562 - 11) / 2.5)
    budget.record_validation(8.0, 20)  # measured: 0.4 s per image
    budget.record_save(1.0)
    # reserve 8 + 2 + 6 = 16 s; per iteration 2 + (8 + 1) / 10 = 2.9 s
    assert budget.iterations_left(10, 20, 1, 4) == math.floor((562 - 16) / 2.9)
    # validating every 2nd epoch halves its share
    assert budget.iterations_left(10, 20, 2, 4) == math.floor((562 - 16) / (2 + (4 + 1) / 10))
    assert not budget.exhausted(20, 4)
    clock.t += 562 - 16
    assert budget.exhausted(20, 4) and budget.iterations_left(10, 20, 1, 4) == 0


def test_resumed_budget_goes_on_with_what_is_left():
    clock = FakeClock()
    budget = TimeBudget(600.0, clock, spent=450.0)
    assert budget.remaining() == pytest.approx(150.0)


def test_warmup_is_capped_to_a_fifth_of_the_run():
    cfg = TrainConfig(warmup_iters=100, warmup_factor=0.001, schedule="cosine", min_lr_ratio=0.01)
    assert warmup_length(150, cfg) == 30
    assert warmup_length(5000, cfg) == 100
    assert lr_factor(15, 150, cfg) == pytest.approx(0.001 * 0.5 + 0.5)
    assert lr_factor(30, 150, cfg) == pytest.approx(1.0)  # full lr once the capped warm-up is over
    assert lr_factor(150, 150, cfg) == pytest.approx(0.01)


def _configs(data, tmp_path, **train):
    model = ModelConfig(num_classes=1, **TINY)
    base = dict(data=str(data), epochs=0, batch_size=4, workers=0, lr=0.01, warmup_iters=2, project=str(tmp_path / "runs"),
                hflip=0.0, scale_min=1.0, scale_max=1.0, color_jitter=0.0)
    base.update(train)
    return model, LossConfig(), PostprocessConfig(), TrainConfig(**base)


def test_time_budget_fits_the_schedule_and_ends_with_validation_and_best(tiny_yolo, tmp_path):
    torch.set_num_threads(2)
    # every read of the clock moves it 1 s: each step costs a few seconds of fake time, so a
    # 90 s budget holds a couple of dozen steps of this 2-iteration-per-epoch dataset
    clock = FakeClock(per_read=1.0)
    model, loss, post, cfg = _configs(tiny_yolo, tmp_path, time=1.5)
    trainer = prepare_training(model, loss, post, cfg, reporter=SilentReporter(), clock=clock)
    start = clock.t
    result = trainer.fit()
    used = clock.t - start
    assert "time budget" in result.stop_reason
    assert used <= 90.0, used  # validation and checkpoints included
    assert used >= 0.8 * 90.0, used  # and the budget was used, not left idle
    steps = trainer.scheduler.last_epoch
    assert steps == trainer.total_iters  # the schedule's length is what really ran
    assert result.epochs_done == math.ceil(steps / trainer.iters_per_epoch) > 3
    # the cosine ran its course: the last lr is at the schedule's floor, not mid-way
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(cfg.lr * lr_factor(steps, steps, cfg))
    assert lr_factor(steps - 1, steps, cfg) < 0.05
    assert trainer.history[-1]["AP"] != -1.0  # the last epoch was validated
    run = result.run_dir
    assert (run / "best.pt").is_file() and (run / "last.pt").is_file()
    ckpt = load_checkpoint(run / "last.pt")
    assert ckpt["train_config"]["time"] == 1.5 and ckpt["total_iters"] == steps
    assert 0 < ckpt["elapsed_s"] <= 90.0


def test_time_budget_respects_an_epoch_cap(tiny_yolo, tmp_path):
    clock = FakeClock(per_read=1.0)
    model, loss, post, cfg = _configs(tiny_yolo, tmp_path, time=60.0, epochs=2)
    trainer = prepare_training(model, loss, post, cfg, reporter=SilentReporter(), clock=clock)
    result = trainer.fit()
    assert result.epochs_done == 2 and trainer.scheduler.last_epoch == 2 * trainer.iters_per_epoch
    assert trainer.total_iters == 2 * trainer.iters_per_epoch  # the cosine spans the capped run


def test_patience_stops_and_keeps_the_best(tiny_yolo, tmp_path, monkeypatch):
    model, loss, post, cfg = _configs(tiny_yolo, tmp_path, epochs=10, patience=2)
    trainer = prepare_training(model, loss, post, cfg, reporter=SilentReporter())
    aps = iter([0.10, 0.30, 0.25, 0.20, 0.50, 0.60])

    def scripted_eval():
        ap = next(aps)
        return EvalResult(metrics={"AP": ap, "AP50": 2 * ap, "AP75": ap}, per_class={})

    monkeypatch.setattr(trainer, "evaluate", scripted_eval)
    result = trainer.fit()
    # best at epoch 2; epochs 3 and 4 do not beat it: two stale validations -> stop after epoch 4
    assert result.epochs_done == 4 and "patience" in result.stop_reason
    assert result.best_ap == 0.30 and result.best_ap50 == 0.60
    assert load_checkpoint(result.run_dir / "best.pt")["epoch"] == 1  # 0-based: the second epoch
    assert [r["AP"] for r in trainer.history] == [0.10, 0.30, 0.25, 0.20]
