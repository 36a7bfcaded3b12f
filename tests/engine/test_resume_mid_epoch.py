"""Ctrl-C inside an epoch, then --resume: the run goes on at the next batch and ends bit for bit
where an uninterrupted run ends (weights, EMA, optimizer, learning rate, history), without
loading the images it already trained on."""

from __future__ import annotations

import os
import signal
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from retina_cli.config import LossConfig, ModelConfig, PostprocessConfig, TrainConfig
from retina_cli.data.loader import DetectionTorchDataset, EpochSampler
from retina_cli.engine.checkpoint import load_checkpoint
from retina_cli.engine.optim import lr_factor
from retina_cli.engine.reporting import SilentReporter
from retina_cli.engine.trainer import prepare_training

TINY = dict(backbone="resnet18", img_size=64, min_level=3, max_level=5, fpn_channels=32, head_width=32, head_depth=1)
BATCH = 2  # 8 training images: 4 steps per epoch


def _cfgs(data: Path, tmp_path: Path, **train) -> tuple:
    model = ModelConfig(num_classes=1, **TINY)
    base = dict(data=str(data), epochs=2, batch_size=BATCH, workers=0, lr=0.01, warmup_iters=2,
                project=str(tmp_path / "runs"), hflip=0.5, scale_min=0.8, scale_max=1.2, color_jitter=0.2, ema=True)
    base.update(train)
    return model, LossConfig(), PostprocessConfig(), TrainConfig(**base)


def _ctrl_c_at_step(trainer, step: int) -> None:
    """Send SIGINT to this process in the middle of the forward pass of global step ``step`` (1-based)."""
    real_forward = trainer.train_model.forward
    calls = {"n": 0}

    def forward(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == step:
            os.kill(os.getpid(), signal.SIGINT)  # arrives mid-step: the step must complete first
        return real_forward(*args, **kwargs)

    trainer.train_model.forward = forward


def _assert_same_run(full, resumed) -> None:
    a, b = load_checkpoint(full.run_dir / "last.pt"), load_checkpoint(resumed.run_dir / "last.pt")
    for key in ("model", "train_model"):
        assert a[key].keys() == b[key].keys()
        differ = [k for k in a[key] if not torch.equal(a[key][k], b[key][k])]
        assert not differ, f"{key}: {len(differ)} of {len(a[key])} tensors differ, e.g. {differ[:3]}"
    assert a["scheduler"]["last_epoch"] == b["scheduler"]["last_epoch"] == 2 * full.iters_per_epoch
    assert full.optimizer.param_groups[0]["lr"] == resumed.optimizer.param_groups[0]["lr"]
    sa, sb = a["optimizer"]["state"], b["optimizer"]["state"]
    assert all(torch.equal(sa[i]["momentum_buffer"], sb[i]["momentum_buffer"]) for i in sa)
    assert a["ema"]["updates"] == b["ema"]["updates"]
    strip = lambda rows: [{k: v for k, v in r.items() if k not in ("images_per_s", "epoch_s")} for r in rows]  # noqa: E731
    assert strip(a["history"]) == strip(b["history"])
    assert b["epoch_complete"] is True and b["position"] is None


@pytest.mark.parametrize("workers", [0, 2])
def test_ctrl_c_inside_an_epoch_resumes_bit_identical(tiny_yolo, tmp_path, monkeypatch, workers):
    torch.set_num_threads(1)
    model, loss, post, cfg = _cfgs(tiny_yolo, tmp_path, workers=workers, name="full")
    full = prepare_training(model, loss, post, cfg, reporter=SilentReporter())
    assert full.iters_per_epoch == 4
    full.fit()

    interrupted = prepare_training(model, loss, post, replace(cfg, name="stopped"), reporter=SilentReporter())
    _ctrl_c_at_step(interrupted, 4 + 2)  # step 2 of 4 of the second epoch
    with pytest.raises(KeyboardInterrupt):
        interrupted.fit()
    saved = load_checkpoint(interrupted.run_dir / "last.pt")
    assert saved["epoch"] == 1 and saved["epoch_complete"] is False
    assert saved["position"]["step"] == 2  # the interrupted step was completed, then saved
    assert saved["scheduler"]["last_epoch"] == 4 + 2

    loaded: list = []
    real_getitem = DetectionTorchDataset.__getitem__

    def spy(self, item):
        if isinstance(item, tuple):  # training items are (epoch, index)
            loaded.append(item)
        return real_getitem(self, item)

    if workers == 0:  # the spy sees only what the main process loads
        monkeypatch.setattr(DetectionTorchDataset, "__getitem__", spy)
    resumed = prepare_training(None, LossConfig(), PostprocessConfig(), TrainConfig(workers=workers),
                               resume=str(interrupted.run_dir / "last.pt"), reporter=SilentReporter())
    assert resumed.start_epoch == 1 and resumed.run_dir == interrupted.run_dir
    resumed.fit()
    if workers == 0:
        order = EpochSampler(8, seed=cfg.seed)
        order.set_epoch(1)
        assert loaded == list(order)[2 * BATCH:]  # the 4 images already trained on are not loaded again
    _assert_same_run(full, resumed)


def test_ctrl_c_twice_in_one_epoch_and_in_the_first_epoch(tiny_yolo, tmp_path):
    """Interrupted at step 1 of the first epoch, resumed, interrupted again at step 3 of it: still exact."""
    torch.set_num_threads(1)
    model, loss, post, cfg = _cfgs(tiny_yolo, tmp_path, name="full", ema=False, epochs=1)
    full = prepare_training(model, loss, post, cfg, reporter=SilentReporter())
    full.fit()

    first = prepare_training(model, loss, post, replace(cfg, name="twice"), reporter=SilentReporter())
    _ctrl_c_at_step(first, 1)
    with pytest.raises(KeyboardInterrupt):
        first.fit()
    last = str(first.run_dir / "last.pt")
    second = prepare_training(None, LossConfig(), PostprocessConfig(), TrainConfig(workers=0), resume=last,
                              reporter=SilentReporter())
    _ctrl_c_at_step(second, 2)  # the 2nd step of this process: step 3 of the epoch
    with pytest.raises(KeyboardInterrupt):
        second.fit()
    assert load_checkpoint(last)["position"]["step"] == 3
    third = prepare_training(None, LossConfig(), PostprocessConfig(), TrainConfig(workers=0), resume=last,
                             reporter=SilentReporter())
    third.fit()
    a, b = full.model.state_dict(), third.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert [r["loss"] for r in full.history] == [r["loss"] for r in third.history]


def test_ctrl_c_during_validation_resumes_without_training_the_epoch_again(tiny_yolo, tmp_path, monkeypatch):
    torch.set_num_threads(1)
    model, loss, post, cfg = _cfgs(tiny_yolo, tmp_path, name="full", ema=False)
    full = prepare_training(model, loss, post, cfg, reporter=SilentReporter())
    full.fit()

    stopped = prepare_training(model, loss, post, replace(cfg, name="val"), reporter=SilentReporter())
    evaluate = stopped.evaluate
    calls = {"n": 0}

    def ctrl_c_in_second_validation():
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return evaluate()

    monkeypatch.setattr(stopped, "evaluate", ctrl_c_in_second_validation)
    with pytest.raises(KeyboardInterrupt):
        stopped.fit()
    saved = load_checkpoint(stopped.run_dir / "last.pt")
    assert saved["epoch"] == 1 and saved["epoch_complete"] is False and saved["position"]["step"] == 4
    assert len(saved["history"]) == 1  # the second epoch's row waits for its validation

    resumed = prepare_training(None, LossConfig(), PostprocessConfig(), TrainConfig(workers=0),
                               resume=str(stopped.run_dir / "last.pt"), reporter=SilentReporter())
    steps_before = resumed.scheduler.last_epoch
    resumed.fit()
    assert resumed.scheduler.last_epoch == steps_before == 8  # no step trained twice
    a, b = full.model.state_dict(), resumed.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert [r["loss"] for r in full.history] == [r["loss"] for r in resumed.history]
    assert [r["AP"] for r in full.history] == [r["AP"] for r in resumed.history]


class FakeClock:
    """Every read moves time by ``per_read`` seconds."""

    def __init__(self, per_read: float) -> None:
        self.t, self.per_read = 1000.0, per_read

    def __call__(self) -> float:
        self.t += self.per_read
        return self.t


def test_time_budget_run_resumed_mid_epoch_keeps_its_position_and_its_clock(tiny_yolo, tmp_path):
    torch.set_num_threads(1)
    model, loss, post, cfg = _cfgs(tiny_yolo, tmp_path, epochs=0, time=1.0, ema=False, name="budget")
    clock = FakeClock(per_read=1.0)
    trainer = prepare_training(model, loss, post, cfg, reporter=SilentReporter(), clock=clock)
    _ctrl_c_at_step(trainer, 4 + 3)  # step 3 of the second epoch
    with pytest.raises(KeyboardInterrupt):
        trainer.fit()
    last = trainer.run_dir / "last.pt"
    saved = load_checkpoint(last)
    assert saved["epoch"] == 1 and saved["position"]["step"] == 3 and saved["scheduler"]["last_epoch"] == 7
    assert saved["elapsed_s"] > 0

    resumed = prepare_training(None, LossConfig(), PostprocessConfig(), TrainConfig(workers=0), resume=str(last),
                               reporter=SilentReporter(), clock=FakeClock(per_read=1.0))
    assert resumed.budget.elapsed() >= saved["elapsed_s"]  # the budget goes on with what is left
    assert resumed.total_iters == saved["total_iters"]
    epoch_steps: list[int] = []
    real_train_epoch = resumed._train_epoch

    def counting(epoch):
        before = resumed.scheduler.last_epoch
        out = real_train_epoch(epoch)
        epoch_steps.append(resumed.scheduler.last_epoch - before)
        return out

    resumed._train_epoch = counting
    result = resumed.fit()
    assert epoch_steps[0] == 1  # the interrupted epoch: only its 4th step is left
    assert "time budget" in result.stop_reason
    final = load_checkpoint(last)
    assert final["elapsed_s"] <= 60.0 and final["finished"] is True
    assert final["scheduler"]["last_epoch"] == final["total_iters"]


def test_a_spent_time_budget_extended_on_resume_trains_on(tiny_yolo, tmp_path):
    torch.set_num_threads(1)
    model, loss, post, cfg = _cfgs(tiny_yolo, tmp_path, epochs=0, time=0.5, ema=False, name="short")
    first = prepare_training(model, loss, post, cfg, reporter=SilentReporter(), clock=FakeClock(per_read=1.0))
    first.fit()
    last = first.run_dir / "last.pt"
    saved = load_checkpoint(last)
    assert saved["finished"] is True and "time budget" in saved["stop_reason"]
    steps = saved["scheduler"]["last_epoch"]
    assert steps == saved["total_iters"]

    longer = prepare_training(None, LossConfig(), PostprocessConfig(), TrainConfig(workers=0), resume=str(last),
                              reporter=SilentReporter(), clock=FakeClock(per_read=1.0),
                              resume_changes={"workers": 0, "time": 1.0})
    assert longer.total_iters == 2 * steps  # a first estimate, scaled with the budget; steps correct it
    # the learning rate is re-fit to the longer schedule at once, not after a step of the old one
    assert longer.optimizer.param_groups[0]["lr"] == pytest.approx(cfg.lr * lr_factor(steps, 2 * steps, cfg))
    result = longer.fit()
    final = load_checkpoint(last)
    assert final["scheduler"]["last_epoch"] > steps and "time budget of 1 min" in result.stop_reason
    assert final["train_config"]["time"] == 1.0 and final["elapsed_s"] <= 60.0


def test_a_checkpoint_without_a_position_says_its_epoch_is_trained_again(tiny_yolo, tmp_path):
    from retina_cli.engine.checkpoint import atomic_save

    torch.set_num_threads(1)
    model, loss, post, cfg = _cfgs(tiny_yolo, tmp_path, ema=False, epochs=1, name="old")
    trainer = prepare_training(model, loss, post, cfg, reporter=SilentReporter())
    _ctrl_c_at_step(trainer, 2)
    with pytest.raises(KeyboardInterrupt):
        trainer.fit()
    last = trainer.run_dir / "last.pt"
    old = load_checkpoint(last)
    del old["position"]  # as an older retina wrote it
    atomic_save(old, last)
    warnings: list[str] = []

    class Warns(SilentReporter):
        def warn(self, message: str) -> None:
            warnings.append(message)

    resumed = prepare_training(None, LossConfig(), PostprocessConfig(), TrainConfig(workers=0), resume=str(last),
                               reporter=Warns())
    assert resumed.start_epoch == 0 and resumed._resume_position is None
    assert warnings == ["this checkpoint holds no position inside epoch 1 (an older retina wrote it): "
                        "that epoch is trained again from its start"]
