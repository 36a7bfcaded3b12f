"""Where a training run's time went (:mod:`retina_cli.engine.time_split`), phase by phase, with a fake clock."""

from __future__ import annotations

import pytest
import torch

from retina_cli.config import LossConfig, ModelConfig, PostprocessConfig, TrainConfig
from retina_cli.engine.evaluate import EvalResult
from retina_cli.engine.reporting import SilentReporter
from retina_cli.engine.time_split import TimeSplit
from retina_cli.engine.trainer import prepare_training

TINY = dict(backbone="resnet18", img_size=64, min_level=3, max_level=5, fpn_channels=32, head_width=32, head_depth=1)


class ManualClock:
    """Time that moves only when a test moves it."""

    def __init__(self) -> None:
        self.t = 500.0

    def __call__(self) -> float:
        return self.t


def test_split_summary_lists_every_phase_and_what_is_left():
    split = TimeSplit(total=1800.0)
    split.add("steps", 1500.0)
    split.add("validation", 180.0)
    split.add("data", 6.0)
    split.add("checkpoints", 4.0)
    split.add("start-up", 50.0)
    assert split.other == pytest.approx(60.0)
    assert split.summary() == (
        "time 30.0 min: training steps 25.0 min (83%), waiting for data 6.0 s (0%), validation 3.0 min (10%), "
        "checkpoints 4.0 s (0%), start-up 50.0 s (3%), other 1.0 min (3%)"
    )
    assert split.as_dict() == {"steps": 1500.0, "data": 6.0, "validation": 180.0, "checkpoints": 4.0,
                               "start-up": 50.0, "other": 60.0, "total": 1800.0}
    with pytest.raises(KeyError, match="unknown phase"):
        split.add("eval", 1.0)


def test_trainer_books_each_phase_where_it_happens(tiny_yolo, tmp_path, monkeypatch):
    torch.set_num_threads(2)
    clock = ManualClock()
    cfg = TrainConfig(data=str(tiny_yolo), epochs=2, batch_size=4, workers=0, warmup_iters=1,
                      project=str(tmp_path / "runs"), hflip=0.0, scale_min=1.0, scale_max=1.0, color_jitter=0.0)
    trainer = prepare_training(ModelConfig(num_classes=1, **TINY), LossConfig(), PostprocessConfig(), cfg,
                               reporter=SilentReporter(), clock=clock, started=clock.t - 5.0)  # 5 s of start-up

    class SlowLoader:  # each batch takes 2 s to arrive
        def __init__(self, loader):
            self.loader, self.sampler = loader, loader.sampler

        def __len__(self):
            return len(self.loader)

        def __iter__(self):
            for batch in self.loader:
                clock.t += 2.0
                yield batch

    def tick(seconds):
        def hook(*_args):
            clock.t += seconds
        return hook

    trainer.train_loader = SlowLoader(trainer.train_loader)
    trainer.train_model.register_forward_pre_hook(tick(3.0))  # each step takes 3 s
    aps = iter([0.1, 0.2])

    def evaluate():  # each validation 7 s, and each one better: best.pt is written twice
        clock.t += 7.0
        ap = next(aps)
        return EvalResult(metrics={"AP": ap, "AP50": ap, "AP75": ap}, per_class={})

    monkeypatch.setattr(trainer, "evaluate", evaluate)
    save = trainer._save

    def slow_save(*args, **kwargs):  # each checkpoint 0.5 s
        clock.t += 0.5
        return save(*args, **kwargs)

    monkeypatch.setattr(trainer, "_save", slow_save)
    result = trainer.fit()
    steps = trainer.scheduler.last_epoch
    assert steps == 2 * trainer.iters_per_epoch == 4
    split = result.time_split.as_dict()
    assert split["steps"] == pytest.approx(3.0 * steps)
    assert split["data"] == pytest.approx(2.0 * steps)
    assert split["validation"] == pytest.approx(14.0)
    assert split["checkpoints"] == pytest.approx(4 * 0.5)  # last.pt and best.pt, each epoch
    assert split["start-up"] == pytest.approx(5.0)
    assert split["other"] == pytest.approx(0.0)
    assert split["total"] == pytest.approx(5.0 + 5.0 * steps + 14.0 + 2.0)
