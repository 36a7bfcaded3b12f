"""The training engine: the loss falls, resume is exact, checkpoints and run folder are complete."""

from dataclasses import replace
from pathlib import Path

import pytest
import torch

from retina_cli.config import LossConfig, ModelConfig, PostprocessConfig, TrainConfig
from retina_cli.engine.checkpoint import load_checkpoint, model_from_checkpoint
from retina_cli.engine.reporting import SilentReporter
from retina_cli.engine.trainer import TrainingStopped, prepare_training


TINY = dict(backbone="resnet18", img_size=64, min_level=3, max_level=5, fpn_channels=32, head_width=32, head_depth=1)


def _cfgs(data: Path, tmp_path: Path, **train) -> tuple:
    model = ModelConfig(num_classes=1, **TINY)
    base = dict(data=str(data), epochs=2, batch_size=4, workers=0, lr=0.01, warmup_iters=2, project=str(tmp_path / "runs"),
                hflip=0.5, scale_min=0.9, scale_max=1.1, color_jitter=0.1)
    base.update(train)
    return model, LossConfig(), PostprocessConfig(), TrainConfig(**base)


def test_loss_falls_and_run_folder_is_complete(tiny_yolo, tmp_path):
    torch.set_num_threads(2)
    model, loss, post, cfg = _cfgs(tiny_yolo, tmp_path, epochs=6, lr=0.02, hflip=0.0, scale_min=1.0, scale_max=1.0, color_jitter=0.0)
    trainer = prepare_training(model, loss, post, cfg, reporter=SilentReporter())
    assert trainer.model.cfg.class_names == ("circle", "square", "triangle")
    result = trainer.fit()
    losses = [row["loss"] for row in trainer.history]
    assert len(losses) == 6
    assert losses[-1] < 0.7 * losses[0], losses
    run = result.run_dir
    for name in ("last.pt", "best.pt", "metrics.csv", "config.yaml"):
        assert (run / name).is_file(), name
    rows = (run / "metrics.csv").read_text().strip().splitlines()
    assert rows[0].startswith("epoch,loss,cls,box") and len(rows) == 7
    ckpt = load_checkpoint(run / "last.pt")
    assert ckpt["epoch"] == 5 and ckpt["epoch_complete"] is True
    # the checkpoint alone rebuilds the model
    rebuilt, _ = model_from_checkpoint(run / "last.pt")
    assert rebuilt.cfg.class_names == ("circle", "square", "triangle")
    assert rebuilt.cfg.img_size == 64


def test_resume_gives_the_same_weights_as_an_uninterrupted_run(tiny_yolo, tmp_path, monkeypatch):
    torch.set_num_threads(1)
    model, loss, post, cfg = _cfgs(tiny_yolo, tmp_path, epochs=2, name="full")
    full = prepare_training(model, loss, post, cfg, reporter=SilentReporter())
    full.fit()

    interrupted = prepare_training(model, loss, post, replace(cfg, name="killed"), reporter=SilentReporter())
    end_epoch = interrupted._end_epoch

    def end_epoch_then_die(epoch, stats, last):
        end_epoch(epoch, stats, last)
        raise SystemExit(137)  # killed right after the epoch's checkpoint

    monkeypatch.setattr(interrupted, "_end_epoch", end_epoch_then_die)
    with pytest.raises(SystemExit):
        interrupted.fit()

    resumed = prepare_training(model, loss, post, cfg, resume=str(interrupted.run_dir / "last.pt"), reporter=SilentReporter())
    assert resumed.start_epoch == 1 and resumed.run_dir == interrupted.run_dir
    resumed.fit()
    a, b = full.model.state_dict(), resumed.model.state_dict()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert [r["loss"] for r in full.history] == [r["loss"] for r in resumed.history]
    assert [r["AP"] for r in full.history] == [r["AP"] for r in resumed.history]


def test_non_finite_loss_is_skipped_then_stops(tiny_yolo, tmp_path, monkeypatch):
    model, loss, post, cfg = _cfgs(tiny_yolo, tmp_path, epochs=1, max_bad_steps=2)
    trainer = prepare_training(model, loss, post, cfg, reporter=SilentReporter())
    before = {k: v.detach().clone() for k, v in trainer.model.named_parameters()}
    real_forward = trainer.train_model.forward

    def nan_forward(*args, **kwargs):
        out = real_forward(*args, **kwargs)
        out["loss"] = out["loss"] * float("nan")
        return out

    monkeypatch.setattr(trainer.train_model, "forward", nan_forward)
    with pytest.raises(TrainingStopped, match="non-finite 2 steps in a row"):
        trainer.fit()
    # no optimizer step was taken: every parameter is as it was (BN running stats may move in forward)
    after = dict(trainer.model.named_parameters())
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_best_checkpoint_stores_the_f1_best_threshold_of_its_validation(tiny_yolo, tmp_path, monkeypatch):
    import numpy as np

    from retina_cli.analysis.thresholds import ClassMatches
    from retina_cli.engine.evaluate import EvalResult

    model, loss, post, cfg = _cfgs(tiny_yolo, tmp_path, epochs=3)
    trainer = prepare_training(model, loss, post, cfg, reporter=SilentReporter())
    names = trainer.model.cfg.class_names

    def validation(ap: float, fp_score: float) -> EvalResult:
        # per class 2 boxes: tp .9, tp .8, then a false positive at fp_score: F1 1.0 from fp_score + .01 up
        m = ClassMatches(np.array([0.9, 0.8, fp_score]), np.array([1, 1, 0], dtype=bool), 2)
        per_class = {n: {"AP": ap, "AP50": ap} for n in names}
        return EvalResult({"AP": ap, "AP50": ap, "AP75": ap}, per_class, None, [], [m] * len(names))

    results = iter([validation(0.2, 0.3), validation(0.4, 0.5), validation(0.3, 0.1)])  # epoch 2 is the best
    monkeypatch.setattr(trainer, "evaluate", lambda: next(results))
    monkeypatch.setattr(trainer, "write_report", lambda: None)
    trainer.fit()
    best = load_checkpoint(trainer.run_dir / "best.pt")
    assert best["epoch"] == 1 and best["postprocess_config"]["predict_conf"] == 0.51
    assert best["postprocess_config"]["score_thresh"] == post.score_thresh  # validation's threshold is kept


def test_frozen_backbone_batchnorm_stays_frozen_in_train_mode():
    from helpers import make_model
    from retina_cli.engine.trainer import freeze_backbone_bn

    model = make_model()
    freeze_backbone_bn(model)
    before = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    model.train()  # what every epoch does: no re-freeze needed
    model(torch.randn(2, 3, 128, 128) * 3 + 1)
    after = model.backbone.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # running statistics untouched
    assert not any(p.requires_grad for n, p in model.backbone.named_parameters() if "bn" in n)


def test_winograd_training_on_cpu_keeps_the_checkpoint_layout(tiny_yolo, tmp_path):
    from retina_cli.model.retinanet import RetinaNet
    from retina_cli.speed.winograd import WinogradConv2d

    model_cfg, loss, post, cfg = _cfgs(tiny_yolo, tmp_path, epochs=1)
    model_cfg = replace(model_cfg, img_size=128, fpn_channels=96, head_width=96)  # P3 16x16: Winograd sizes
    trainer = prepare_training(model_cfg, loss, post, cfg, reporter=SilentReporter())
    assert sum(isinstance(m, WinogradConv2d) for m in trainer.model.modules()) >= 5  # head tower + FPN outputs
    result = trainer.fit()
    assert all(torch.isfinite(torch.tensor(row["loss"])) for row in trainer.history)
    state = load_checkpoint(result.run_dir / "last.pt")["model"]
    assert set(state) == set(RetinaNet(trainer.model.cfg).state_dict())
    off = prepare_training(model_cfg, loss, post, replace(cfg, winograd=False, name="direct"), reporter=SilentReporter())
    assert not any(isinstance(m, WinogradConv2d) for m in off.model.modules())


def test_frozen_batchnorm_is_folded_in_training_and_the_checkpoint_keeps_its_layout(tiny_yolo, tmp_path):
    from retina_cli.model.retinanet import RetinaNet
    from retina_cli.speed.fold_frozen_bn import folded_count

    model_cfg, loss, post, cfg = _cfgs(tiny_yolo, tmp_path, epochs=1, freeze_bn=True)
    trainer = prepare_training(model_cfg, loss, post, cfg, reporter=SilentReporter())
    frozen = sum(type(m).__name__.endswith("FrozenBatchNorm2d") for m in trainer.model.backbone.modules())
    assert frozen and folded_count(trainer.model) == frozen
    result = trainer.fit()
    assert all(torch.isfinite(torch.tensor(row["loss"])) for row in trainer.history)
    state = load_checkpoint(result.run_dir / "last.pt")["model"]
    off = prepare_training(model_cfg, loss, post, replace(cfg, fold_bn=False, name="unfolded"), reporter=SilentReporter())
    assert folded_count(off.model) == 0
    unfolded = off.model.state_dict()  # what the same run without the fold would save
    assert list(state) == list(unfolded) and all(state[k].shape == unfolded[k].shape for k in unfolded)
    RetinaNet(trainer.model.cfg).load_state_dict(state, strict=False)  # and a fresh model takes it


def test_freeze_stride_keeps_the_stem_fixed_and_trains_the_rest(tiny_yolo, tmp_path):
    torch.set_num_threads(2)
    model_cfg, loss, post, cfg = _cfgs(tiny_yolo, tmp_path, epochs=1, freeze_stride=4, val_interval=10)
    trainer = prepare_training(model_cfg, loss, post, cfg, reporter=SilentReporter())
    body = trainer.model.backbone.body
    before = {n: p.detach().clone() for n, p in body.named_parameters()}
    trainer.fit()
    after = dict(body.named_parameters())
    assert torch.equal(after["conv1.weight"], before["conv1.weight"])
    assert torch.equal(after["layer1.1.conv2.weight"], before["layer1.1.conv2.weight"])
    assert not torch.equal(after["layer2.0.conv1.weight"], before["layer2.0.conv1.weight"])
    # the configuration is in the checkpoint, so a resumed run freezes the same layers
    assert load_checkpoint(trainer.run_dir / "last.pt")["train_config"]["freeze_stride"] == 4


def test_training_batches_are_rectangular_by_default_and_old_runs_resume_on_squares(tiny_yolo, tmp_path):
    """80x64 images at img_size 80 with P3-P4 train on 64 x 80 canvases (the image's own
    rectangle, as eval and predict see it); --no-rect keeps the square; a checkpoint written
    before the setting existed resumes on squares, the recipe it was trained with."""
    from retina_cli.config import stored_train_config, to_dict

    model = ModelConfig(num_classes=1, **{**TINY, "img_size": 80, "max_level": 4})
    _, loss, post, cfg = _cfgs(tiny_yolo, tmp_path, epochs=1)
    assert cfg.rect
    for rect, shape in ((True, (64, 80)), (False, (80, 80))):
        trainer = prepare_training(model, loss, post, replace(cfg, rect=rect, name=f"rect{rect}"), reporter=SilentReporter())
        images, targets, _ = next(iter(trainer.train_loader))
        assert tuple(images.shape[2:]) == shape
        assert (targets.boxes[..., 1::2] <= shape[0]).all() and (targets.boxes[..., 0::2] <= shape[1]).all()
    old = {k: v for k, v in to_dict(cfg).items() if k != "rect"}
    assert stored_train_config(old).rect is False
    assert stored_train_config(to_dict(cfg)) == cfg
