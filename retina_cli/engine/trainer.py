"""The training engine: epochs over a folder-of-labels dataset, validation mAP, checkpoints, resume,
DDP under torchrun, EMA, AMP, non-finite-loss guard and Ctrl-C handling."""

from __future__ import annotations

import csv
import math
import random
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn

from retina_cli.config import LossConfig, ModelConfig, PostprocessConfig, TrainConfig, stored_train_config, to_dict
from retina_cli.data.loader import make_loader
from retina_cli.data.transforms import AugmentConfig
from retina_cli.engine import distributed as dist_utils
from retina_cli.engine.budget import TimeBudget
from retina_cli.engine.checkpoint import configs_from_checkpoint, load_checkpoint, save_checkpoint, sigint_deferred
from retina_cli.engine.detector import InferenceModel, TrainingModel, probe_input
from retina_cli.engine.evaluate import EvalResult, evaluate_records
from retina_cli.engine.optim import ModelEma, build_optimizer, build_scheduler, lr_factor
from retina_cli.engine.reporting import LineReporter, Reporter, SilentReporter
from retina_cli.engine.time_split import TimeSplit
from retina_cli.errors import ConfigError, RetinaError
from retina_cli.model.retinanet import RetinaNet
from retina_cli.model.freeze import freeze_early_layers
from retina_cli.speed.fold_frozen_bn import fold_frozen_batchnorm
from retina_cli.speed.winograd import winograd_convs

METRIC_FIELDS = ("epoch", "loss", "cls", "box", "lr", "images_per_s", "AP", "AP50", "AP75", "epoch_s")


class TrainingStopped(RetinaError):
    """Training cannot go on (e.g. the loss stayed non-finite); the last good checkpoint is kept."""


@dataclass
class TrainResult:
    run_dir: Path
    best_ap: float
    best_ap50: float
    epochs_done: int
    last_eval: EvalResult | None
    stop_reason: str = ""  # why training ended before --epochs (patience, time budget); "" otherwise
    time_split: TimeSplit | None = None  # where this process's wall time went


def rng_state() -> dict[str, Any]:
    """Every RNG state a run consumes, in checkpoint-safe types (tensors and plain values)."""
    np_state = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), int(np_state[2]), int(np_state[3]), float(np_state[4])],
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n[0], n[1].numpy().astype(np.uint32), n[2], n[3], n[4]))
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def freeze_backbone_bn(model: RetinaNet) -> None:
    """Backbone BatchNorm layers become frozen ones (timm's FrozenBatchNorm2d / FrozenBatchNormAct2d):
    fixed statistics and affine parameters applied as ``x * scale + shift``. Unlike BatchNorm in
    eval mode this keeps no activation for the backward pass (torchvision's detection recipe does
    the same), which saved ~40% of a ResNet-50 training step's memory. Idempotent; the state-dict
    keys stay those of BatchNorm, so checkpoints load into an unfrozen model."""
    from timm.layers import freeze_batch_norm_2d

    model.backbone = freeze_batch_norm_2d(model.backbone)


def fold_training_bn(model: RetinaNet, device: torch.device, memory_format: torch.memory_format) -> int:
    """The frozen backbone BatchNorms folded into their convolutions for training
    (:mod:`retina_cli.speed.fold_frozen_bn`); returns how many."""
    return fold_frozen_batchnorm(model, probe_input(model, device, memory_format))


def augment_config(cfg: TrainConfig) -> AugmentConfig:
    return AugmentConfig(hflip=cfg.hflip, scale_jitter=(cfg.scale_min, cfg.scale_max), color_jitter=cfg.color_jitter)


class Trainer:
    """Owns one run: model, optimiser, loaders and the run folder. Build it with :func:`prepare_training`."""

    def __init__(
        self,
        model: RetinaNet,
        loss_cfg: LossConfig,
        post_cfg: PostprocessConfig,
        cfg: TrainConfig,
        dataset: Any,
        run_dir: Path,
        device: torch.device,
        dist: dist_utils.DistInfo,
        reporter: Reporter | None = None,
        resume: dict[str, Any] | None = None,
        clock: Callable[[], float] = time.monotonic,
        started: float | None = None,
        data_path: str | None = None,
    ) -> None:
        self.model = model.to(device)
        self.memory_format = torch.channels_last if cfg.channels_last else torch.contiguous_format
        model.to(memory_format=self.memory_format)
        self.loss_cfg, self.post_cfg, self.cfg = loss_cfg, post_cfg, cfg
        self.dataset = dataset
        # the data's absolute path: a later --resume finds (and checks) it from any working directory
        self.data_path = str(Path(data_path or cfg.data).resolve())
        self.run_dir = run_dir
        self.device = device
        self.dist = dist
        # rank 0 alone reports (and writes); the others train silently
        self.reporter: Reporter = (reporter or LineReporter()) if dist.is_main else SilentReporter()
        self.img_size = model.cfg.img_size

        if cfg.freeze_backbone:
            for p in model.backbone.parameters():
                p.requires_grad_(False)
        if cfg.freeze_bn or cfg.freeze_backbone:
            freeze_backbone_bn(model)
        if cfg.freeze_stride and not cfg.freeze_backbone:
            freeze_early_layers(model.backbone, cfg.freeze_stride)
        if cfg.winograd and device.type == "cpu" and not cfg.amp:
            winograd_convs(model)  # same parameters and state_dict; only the forward/backward change
        if cfg.fold_bn:  # after Winograd: a folded convolution may be a Winograd one
            fold_training_bn(model, device, self.memory_format)

        self.train_model: nn.Module = TrainingModel(model, loss_cfg).to(device)
        if dist.enabled:
            self.train_model = nn.parallel.DistributedDataParallel(
                self.train_model, device_ids=[device.index] if device.type == "cuda" else None,
            )
        train_records = dataset.splits["train"]
        if not train_records:
            raise ConfigError(f"{dataset.root}: the training split has no images")
        sampler = None
        if dist.enabled:
            sampler = torch.utils.data.DistributedSampler(train_records, dist.world_size, dist.rank, shuffle=True, seed=cfg.seed)
        self.train_loader = make_loader(
            train_records, self.img_size, cfg.batch_size, train=True, workers=cfg.workers,
            augment=augment_config(cfg), sampler=sampler, seed=cfg.seed,
            rect_stride=model.cfg.top_stride if cfg.rect else None,
        )
        self.val_records = dataset.splits.get("val") or []
        self.val_loader = (
            # rectangular, as `retina eval` and predict run the model: the val mAP is theirs
            make_loader(self.val_records, self.img_size, cfg.batch_size, train=False, workers=cfg.workers,
                        rect_stride=model.cfg.top_stride)
            if self.val_records else None
        )
        self.iters_per_epoch = len(self.train_loader)
        # with --time the budget sets (and keeps correcting) the length of the run; --epochs caps it
        self.max_iters = self.iters_per_epoch * cfg.epochs if cfg.epochs else None
        # until the first steps are timed, a budget run's length is a placeholder (its warm-up cap)
        self.total_iters = self.max_iters or self.iters_per_epoch * 100
        self.clock = clock
        self._started = clock() if started is None else started
        self.time_split = TimeSplit()
        self._startup_open = True
        self.budget = None
        if cfg.time > 0:
            spent = float(resume.get("elapsed_s", 0.0)) if resume else (clock() - started if started is not None else 0.0)
            self.budget = TimeBudget(cfg.time * 60.0, clock, spent=spent)
        self.optimizer = build_optimizer(self.train_model, cfg)
        self.scheduler = build_scheduler(self.optimizer, lambda: self.total_iters, cfg)
        self.use_amp = cfg.amp
        self.amp_dtype = torch.float16 if device.type == "cuda" else torch.bfloat16
        self.scaler = torch.amp.GradScaler("cuda", enabled=cfg.amp and device.type == "cuda")
        self.ema = ModelEma(model, cfg.ema_decay, lambda: self.total_iters) if cfg.ema else None
        self.start_epoch = 0
        self.best_ap = -1.0
        self.best_ap50 = -1.0
        self.stale_validations = 0  # validations since the best one (--patience)
        self.best_result: EvalResult | None = None  # this session's best validation (report.html)
        self.stop_reason = ""
        self.history: list[dict[str, float]] = []
        self.tb = None
        self._steps_since_save = 0
        self.finished = False  # the last epoch's checkpoint is written: nothing is left to train
        # where the current epoch stands, saved by a Ctrl-C so that --resume goes on at the next batch
        self._step_in_epoch = 0
        self._bad_steps = 0
        self._epoch_sums = torch.zeros(4, dtype=torch.float64)  # loss, cls, box, images
        self._epoch_spent = False
        self._epoch_rng: dict[str, Any] | None = None  # the RNG states before the epoch's loader started
        self._resume_position: dict[str, Any] | None = None
        # imported now, not at the first epoch's end: a Ctrl-C in the middle of importing
        # matplotlib surfaces as a RuntimeError instead of a KeyboardInterrupt
        self._plot_curves = _curve_plotter() if dist.is_main else None
        if resume is not None:
            self._load_resume(resume)

    # ---------------------------------------------------------------- checkpoints
    def _train_state(self, epoch: int, epoch_complete: bool) -> dict[str, Any]:
        position = None
        if not epoch_complete:  # what --resume needs to go on with the next batch of this epoch
            position = {
                "step": self._step_in_epoch, "sums": self._epoch_sums.clone(), "bad_steps": self._bad_steps,
                "spent": self._epoch_spent, "rng_at_start": self._epoch_rng,
            }
        return {
            "train_config": to_dict(self.cfg),
            "data_path": self.data_path,
            "epoch": epoch,
            "epoch_complete": epoch_complete,
            "position": position,
            "finished": self.finished,
            "stop_reason": self.stop_reason,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "ema": self.ema.state_dict() if self.ema else None,
            "rng": rng_state(),
            "best_ap": self.best_ap,
            "best_ap50": self.best_ap50,
            "stale_validations": self.stale_validations,
            "total_iters": self.total_iters,
            "elapsed_s": self.budget.elapsed() if self.budget else 0.0,
            "history": self.history,
        }

    def _inference_net(self) -> RetinaNet:
        return self.ema.module if self.ema else self.model

    def save(self, name: str, epoch: int, epoch_complete: bool = True) -> Path:
        t0 = self.clock()
        path = self._save(name, epoch, epoch_complete)
        seconds = self.clock() - t0
        self.time_split.add("checkpoints", seconds)
        if self.budget is not None:
            self.budget.record_save(seconds)
        return path

    def _save(self, name: str, epoch: int, epoch_complete: bool) -> Path:
        path = self.run_dir / name
        self._steps_since_save = 0  # before the write: a Ctrl-C held during it is raised at its end
        # "model" holds the weights to run (EMA when on); "train_model" the raw weights to resume from
        save_checkpoint(
            path, self._inference_net(), self.loss_cfg, self.post_cfg,
            train_model={k: v.detach().cpu() for k, v in self.model.state_dict().items()},
            **self._train_state(epoch, epoch_complete),
        )
        return path

    def _load_resume(self, ckpt: dict[str, Any]) -> None:
        self.model.load_state_dict(ckpt.get("train_model") or ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        self.scaler.load_state_dict(ckpt["scaler"])
        if self.ema and ckpt.get("ema"):
            self.ema.load_state_dict(ckpt["ema"])
        self.best_ap = float(ckpt.get("best_ap", -1.0))
        self.best_ap50 = float(ckpt.get("best_ap50", -1.0))
        self.history = list(ckpt.get("history", []))
        self.stale_validations = int(ckpt.get("stale_validations", 0))
        saved_total = int(ckpt.get("total_iters", self.total_iters))
        if self.budget is not None:  # the budget's latest estimate; with epochs the length is known
            self.total_iters = saved_total
            saved_time = float(ckpt["train_config"].get("time", 0.0))
            if self.cfg.time > saved_time > 0:  # a longer budget: scaled now, corrected once steps are timed
                self.total_iters = int(saved_total * self.cfg.time / saved_time)
            saved_epochs = int(ckpt["train_config"].get("epochs", 0))
            if self.max_iters is not None and self.cfg.epochs > saved_epochs > 0:  # a higher epoch cap
                self.total_iters += self.max_iters - self.iters_per_epoch * saved_epochs
            if self.max_iters is not None:
                self.total_iters = min(self.total_iters, self.max_iters)
        if self.total_iters != saved_total:
            # an extended run: the schedule is re-fit to the new length from the current iteration
            it = self.scheduler.last_epoch
            for group, base in zip(self.optimizer.param_groups, self.scheduler.base_lrs):
                group["lr"] = base * lr_factor(it, self.total_iters, self.cfg)
        self.start_epoch = int(ckpt["epoch"]) + (1 if ckpt.get("epoch_complete", True) else 0)
        if ckpt.get("epoch_complete", True):
            set_rng_state(ckpt["rng"])
        elif ckpt.get("position") is not None:
            # interrupted inside an epoch: it goes on after the batches already trained, with the
            # RNG states of that moment (restored in _train_epoch, once the loader has started)
            self._resume_position = {**ckpt["position"], "epoch": self.start_epoch, "rng": ckpt["rng"]}
        else:
            self.reporter.warn(f"this checkpoint holds no position inside epoch {self.start_epoch + 1} (an older "
                               "retina wrote it): that epoch is trained again from its start")

    # ---------------------------------------------------------------- evaluation
    def evaluate(self) -> EvalResult | None:
        if self.val_loader is None:
            return None
        net = self._inference_net()
        was_training = net.training
        net.eval()
        infer = InferenceModel(net, self.post_cfg)
        result = evaluate_records(
            infer, self.val_loader, self.val_records, self.model.cfg.class_names, self.device,
            self.amp_dtype if self.use_amp else None,
        )
        net.train(was_training)  # frozen BatchNorm ignores train(): nothing to re-freeze
        return result

    # ---------------------------------------------------------------- training
    def fit(self) -> TrainResult:
        cfg = self.cfg
        last_eval: EvalResult | None = None
        epoch = self.start_epoch
        if self.dist.is_main and cfg.tensorboard:
            self.tb = _tensorboard_writer(self.run_dir, self.reporter)
        epochs_done = self.start_epoch
        try:
            while not self._done(epoch):
                stats, budget_spent = self._train_epoch(epoch)
                last = budget_spent or self._done(epoch + 1)
                last_eval = self._end_epoch(epoch, stats, last)
                epochs_done = epoch + 1
                if last or self.stop_reason:
                    break
                epoch += 1
        except KeyboardInterrupt:
            if self.dist.is_main:
                path = self.run_dir / "last.pt"
                if self._steps_since_save:  # else last.pt already holds exactly this state
                    self.save("last.pt", epoch, epoch_complete=False)
                self.reporter.warn(f"interrupted: saved {path}; resume with --resume {path}")
            raise
        finally:
            if self.tb is not None:
                self.tb.close()
            for loader in (self.train_loader, self.val_loader):
                _stop_workers(loader)
        if self.dist.is_main:
            self.write_report()
        self.time_split.total = self.clock() - self._started
        return TrainResult(self.run_dir, self.best_ap, self.best_ap50, epochs_done, last_eval, self.stop_reason,
                           self.time_split)

    def write_report(self) -> Path:
        """``report.html``: settings, data summary, curves, epochs and the best validation explained."""
        import yaml

        from retina_cli.report.training import write_train_report

        args = self.run_dir / "args.yaml"
        settings = yaml.safe_load(args.read_text()) if args.is_file() else to_dict(self.cfg)
        report = self.dataset.report
        return write_train_report(
            self.run_dir, dict(settings or {}), report.summary_rows(), [str(p) for p in report.problems], self.history,
            self.best_result, self.val_records, self.model.cfg.class_names, self.stop_reason,
        )

    def _done(self, next_epoch: int) -> bool:
        """Nothing left to train before ``next_epoch``: the epochs asked for are done, or (with a
        time budget) the iterations that fit in it."""
        if self.cfg.epochs and next_epoch >= self.cfg.epochs:
            return True
        return self.budget is not None and self.scheduler.last_epoch >= self.total_iters

    def _epoch_label(self, epoch: int) -> str:
        if self.budget is None:
            return f"{epoch + 1}/{self.cfg.epochs}"
        expected = max(math.ceil(self.total_iters / max(self.iters_per_epoch, 1)), epoch + 1)
        return f"{epoch + 1}/~{expected}"

    def _update_budget(self, step_seconds: float) -> bool:
        """After a step: correct the run's length from the budget; True when it is spent.
        Rank 0 decides and every rank follows, so all ranks stop at the same step."""
        if self.budget is None:
            return False
        self.budget.record_step(step_seconds)
        val_images = len(self.val_records)
        left = self.budget.iterations_left(self.iters_per_epoch, val_images, self.cfg.val_interval, self.cfg.batch_size)
        done = self.scheduler.last_epoch
        total = self.total_iters if left is None else done + left
        if self.max_iters is not None:
            total = min(total, self.max_iters)
        spent = self.budget.exhausted(val_images, self.cfg.batch_size) or done >= total
        if self.dist.enabled:
            decision = dist_utils.broadcast_tensor(torch.tensor([total, int(spent)], dtype=torch.int64))
            total, spent = int(decision[0]), bool(decision[1])
        self.total_iters = max(total, done)
        return spent

    def _train_epoch(self, epoch: int) -> tuple[dict[str, float], bool]:
        """One pass over the training split (or until the time budget is spent) -> (stats, spent).

        A run resumed inside this epoch starts after the batches it already trained on (they are
        not loaded), with the sums and RNG states of that moment: it goes on bit for bit.
        """
        pos, self._resume_position = self._resume_position, None
        if pos is not None and pos["epoch"] != epoch:
            pos = None
        self.train_model.train()  # frozen BatchNorm (see __init__) stays frozen in train mode
        # order and augmentation are functions of (seed, epoch) alone, so a resumed run sees the same data
        skip = int(pos["step"]) if pos else 0
        self.train_loader.sampler.set_epoch(epoch, skip=skip * self.cfg.batch_size)
        # starting the loader draws its worker base seed from the global RNG: a resumed epoch starts
        # it from the state the epoch began with, then takes the states of the interrupted moment
        if pos is not None and pos.get("rng_at_start") is not None:
            set_rng_state(pos["rng_at_start"])
        self._epoch_rng = rng_state()
        self._step_in_epoch = skip
        self._bad_steps = int(pos["bad_steps"]) if pos else 0
        self._epoch_sums = pos["sums"].clone().to(torch.float64) if pos else torch.zeros(4, dtype=torch.float64)
        self._epoch_spent = bool(pos["spent"]) if pos else False
        t0 = time.perf_counter()
        self._t_step = self._t_ready = self.clock()
        if self._startup_open:  # the first epoch of this process: until now, start-up
            self.time_split.add("start-up", self._t_step - self._started)
            self._startup_open = False
        self.reporter.start(f"epoch {self._epoch_label(epoch)}", self.iters_per_epoch)
        try:
            batches = iter(self.train_loader)
            if pos is not None:
                set_rng_state(pos["rng"])
                if skip:
                    self.reporter.advance(skip, f"resumed after step {skip}")
            if not self._epoch_spent:
                for images, targets, _metas in batches:
                    # a Ctrl-C during a step is raised once the step is complete: the saved position
                    # is then that of a whole number of steps (BatchNorm statistics included)
                    with sigint_deferred():
                        self._step(epoch, images, targets, t0)
                    if self._epoch_spent:
                        break
        finally:
            self.reporter.stop()
        sums = dist_utils.all_reduce_sum(self._epoch_sums.clone())
        elapsed = time.perf_counter() - t0
        images_seen = max(sums[3].item(), 1.0)
        return {
            "loss": sums[0].item() / images_seen, "cls": sums[1].item() / images_seen, "box": sums[2].item() / images_seen,
            "lr": self.optimizer.param_groups[0]["lr"], "images_per_s": images_seen / max(elapsed, 1e-9), "epoch_s": elapsed,
        }, self._epoch_spent

    def _step(self, epoch: int, images: torch.Tensor, targets: Any, t0: float) -> None:
        """One optimisation step on a batch; updates the epoch's position (step, sums, budget)."""
        cfg = self.cfg
        began = self.clock()  # since the last step ended: waiting for this batch
        self.time_split.add("data", began - self._t_ready)
        images = images.to(self.device, non_blocking=True).float().contiguous(memory_format=self.memory_format)
        targets = targets.to(self.device)
        with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.use_amp):
            out = self.train_model(images, targets)
        loss = out["loss"]
        self._step_in_epoch += 1
        self._steps_since_save += 1
        if not torch.isfinite(loss):
            self._bad_steps += 1
            self.optimizer.zero_grad(set_to_none=True)
            self.reporter.warn(f"non-finite loss at epoch {epoch + 1}, step skipped "
                               f"({self._bad_steps}/{cfg.max_bad_steps} in a row)")
            if self._bad_steps >= cfg.max_bad_steps:
                raise TrainingStopped(
                    f"the loss was non-finite {self._bad_steps} steps in a row at epoch {epoch + 1}; stopped. "
                    f"The last good checkpoint is {self.run_dir / 'last.pt'}; try a lower --lr or --grad-clip"
                )
            self.scheduler.step()
            self._t_ready = self.clock()
            self.time_split.add("steps", self._t_ready - began)
            return
        self._bad_steps = 0
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if cfg.grad_clip > 0:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.train_model.parameters(), cfg.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        if self.ema:
            self.ema.update(self.model)
        n = images.shape[0]
        parts = torch.stack([loss.detach(), out["cls"].detach(), out["box"].detach()]).double().cpu() * n
        sums = self._epoch_sums = self._epoch_sums + torch.cat([parts, torch.tensor([n], dtype=torch.float64)])
        elapsed = time.perf_counter() - t0
        mean = (sums[:3] / sums[3]).tolist()
        self.reporter.advance(1, f"loss {mean[0]:.4f} (cls {mean[1]:.4f} box {mean[2]:.4f}) "
                                 f"lr {self.optimizer.param_groups[0]['lr']:.2e} "
                                 f"{sums[3].item() * self.dist.world_size / max(elapsed, 1e-9):.1f} img/s")
        now = self.clock()
        self.time_split.add("steps", now - began)
        self._epoch_spent = self._update_budget(now - self._t_step)
        self._t_step = self._t_ready = now

    def _end_epoch(self, epoch: int, stats: dict[str, float], last: bool) -> EvalResult | None:
        cfg = self.cfg
        result = None
        if self.dist.is_main and ((epoch + 1) % cfg.val_interval == 0 or last):
            t0 = self.clock()
            result = self.evaluate()
            seconds = self.clock() - t0
            self.time_split.add("validation", seconds)
            if self.budget is not None and result is not None:
                self.budget.record_validation(seconds, len(self.val_records))
        row = {"epoch": epoch + 1, **stats, "AP": -1.0, "AP50": -1.0, "AP75": -1.0}
        if result is not None:
            row.update(AP=result.metrics["AP"], AP50=result.metrics["AP50"], AP75=result.metrics["AP75"])
        improved = result is not None and result.metrics["AP"] > self.best_ap
        # the epoch's record and its checkpoints change together: a Ctrl-C in between waits for them
        with sigint_deferred():
            self.history.append(row)
            if self.dist.is_main:
                if improved:
                    self.best_ap, self.best_ap50 = result.metrics["AP"], result.metrics["AP50"]
                    self.best_result = result
                    self.post_cfg = with_predict_conf(self.post_cfg, result, self.model.cfg.class_names)
                    self.stale_validations = 0
                elif result is not None:
                    self.stale_validations += 1
                if cfg.patience and self.stale_validations >= cfg.patience and not last:
                    self.stop_reason = (f"val mAP has not improved for {self.stale_validations} validations "
                                        f"(--patience {cfg.patience}); best {self.best_ap:.4f}")
                elif last and self.budget is not None:
                    self.stop_reason = f"time budget of {cfg.time:g} min ({self.budget.elapsed() / 60:.1f} min used)"
                self.finished = last or bool(self.stop_reason)
                self.save("last.pt", epoch)
                if improved or (result is None and last):
                    self.save("best.pt", epoch)
        if self.dist.is_main:
            self._write_metrics()
            msg = (f"epoch {self._epoch_label(epoch) if not last else f'{epoch + 1}/{epoch + 1}'}: loss {stats['loss']:.4f} (cls {stats['cls']:.4f}, box {stats['box']:.4f}), "
                   f"{stats['images_per_s']:.1f} img/s")
            if result is not None:
                msg += f", val mAP {result.metrics['AP']:.4f}, mAP50 {result.metrics['AP50']:.4f}" + (" (best)" if improved else "")
            self.reporter.log(msg)
            if self.tb is not None:
                for k, v in row.items():
                    if k != "epoch" and v != -1.0:
                        self.tb.add_scalar(k, v, epoch + 1)
            if self.stop_reason and not last:
                self.reporter.log(f"early stop: {self.stop_reason}")
        self.stop_reason = dist_utils.broadcast_object(self.stop_reason)
        dist_utils.barrier()
        return result

    def _write_metrics(self) -> None:
        with open(self.run_dir / "metrics.csv", "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=METRIC_FIELDS, extrasaction="ignore")
            w.writeheader()
            for row in self.history:
                w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
        if self._plot_curves is not None:
            self._plot_curves(self.history, self.run_dir / "curves.png")


def with_predict_conf(post: PostprocessConfig, result: EvalResult, class_names: Sequence[str]) -> PostprocessConfig:
    """``post`` with predict's default threshold set to the F1-best of ``result`` (a validation),
    kept within [score_thresh, 0.99]; unchanged when that validation found nothing to rank."""
    from retina_cli.analysis.thresholds import threshold_curves

    conf = threshold_curves(result.matches, class_names).suggested_conf if result.matches else None
    if conf is None:
        return post
    return replace(post, predict_conf=min(max(float(conf), post.score_thresh), 0.99))


def _stop_workers(loader: Any) -> None:
    """End a loader's persistent worker processes now. Left to the garbage collector (a Trainer
    sits in a reference cycle with its scheduler), torch's shutdown loses its stop messages and
    waits 5 s for each worker before it kills it."""
    iterator = getattr(loader, "_iterator", None)
    if iterator is not None:
        if hasattr(iterator, "_shutdown_workers"):
            iterator._shutdown_workers()
        loader._iterator = None


def _curve_plotter() -> Callable[..., None] | None:
    """The training-curve plot function, or None without matplotlib (the ``plots`` extra)."""
    try:
        from retina_cli.drawing.plots import plot_training_curves
    except ImportError:
        return None
    return plot_training_curves


def _tensorboard_writer(run_dir: Path, reporter: Reporter) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        reporter.warn("--tensorboard needs the tensorboard package (pip install retina-cli[tensorboard])")
        return None
    return SummaryWriter(str(run_dir / "tensorboard"))


def prepare_training(
    model_cfg: ModelConfig | None,
    loss_cfg: LossConfig,
    post_cfg: PostprocessConfig,
    cfg: TrainConfig,
    resume: str | None = None,
    reporter: Reporter | None = None,
    on_dataset: Callable[[Any], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
    started: float | None = None,
    checkpoint: dict[str, Any] | None = None,
    resume_changes: dict[str, Any] | None = None,
    fit_model: Callable[[ModelConfig, Any], ModelConfig] | None = None,
) -> Trainer:
    """Everything before the first step: process group, device, dataset, model, run folder.

    With ``resume`` the configs and the data come from the checkpoint (``checkpoint``: the file
    already loaded) and the run continues in the checkpoint's folder, with the ``TrainConfig``
    fields of ``resume_changes`` (default: ``device`` and ``workers`` of ``cfg``; the API checks
    what a user may change in :func:`retina_cli.resume_settings.plan_resume`: a longer
    ``epochs``/``time`` re-fits the schedule). ``model_cfg`` without class names gets the
    dataset's. ``started``: the ``clock()`` time the run began (a ``--time`` budget counts from
    it; default: now). ``fit_model``: for a new run, ``(model_cfg, dataset) -> model_cfg`` once the
    data is loaded and before the model is built, on every rank (``retina train --anchors``).
    """
    started = clock() if started is None else started
    from retina_cli.data import load_dataset
    from retina_cli.engine.runs import next_run_dir

    reporter = reporter or LineReporter()
    ckpt = None
    data_path = cfg.data
    if resume:
        ckpt = checkpoint if checkpoint is not None else load_checkpoint(resume)
        model_cfg, loss_cfg, post_cfg = configs_from_checkpoint(ckpt)
        # the run goes on as it was configured; only where it runs (and, checked, its length) may change
        changes = resume_changes if resume_changes is not None else {"device": cfg.device, "workers": cfg.workers}
        cfg = replace(stored_train_config(ckpt["train_config"]), **changes)
        data_path = ckpt.get("data_path") or cfg.data
    dist = dist_utils.init_distributed(cfg.device)
    device = dist_utils.select_device(cfg.device, dist.local_rank)
    seed_everything(cfg.seed + dist.rank)

    if ckpt is None and dist.is_main:  # --project FILE / unwritable: refused before the data is read
        from retina_cli.engine.runs import check_can_create

        check_can_create(Path(cfg.project))
    dataset = load_dataset(data_path, cfg.data_format, strict=cfg.strict, val_fraction=cfg.val_fraction, seed=cfg.seed)
    if on_dataset is not None and dist.is_main:
        on_dataset(dataset)
    assert model_cfg is not None
    if ckpt is None:
        model_cfg = replace(model_cfg, num_classes=len(dataset.class_names), class_names=tuple(dataset.class_names))
        if fit_model is not None:
            model_cfg = fit_model(model_cfg, dataset)
    elif tuple(dataset.class_names) != tuple(model_cfg.class_names):
        raise ConfigError(
            f"{data_path}: classes {list(dataset.class_names)} differ from the checkpoint's {list(model_cfg.class_names)}"
        )

    torch.manual_seed(cfg.seed)  # identical initial weights on every rank
    model = RetinaNet(model_cfg, pretrained=cfg.pretrained and ckpt is None)
    if cfg.backbone_weights and ckpt is None:
        from retina_cli.model.weights import load_retinanet_backbone_weights

        report = load_retinanet_backbone_weights(model, cfg.backbone_weights)
        if dist.is_main:
            reporter.log(report.summary())
    # the run folder comes after everything that can refuse the configuration (backbone name,
    # levels, weights file), so a refused run leaves no empty exp folder behind
    if ckpt is not None:
        run_dir = Path(resume).resolve().parent
    else:
        run_dir = None
        if dist.is_main:
            run_dir = next_run_dir(Path(cfg.project), cfg.name or None, exist_ok=cfg.exist_ok)  # made and probed
        run_dir = Path(dist_utils.broadcast_object(str(run_dir) if run_dir else None))
    seed_everything(cfg.seed + dist.rank)
    if dist.is_main and ckpt is None:
        _write_resolved_config(run_dir, model_cfg, loss_cfg, post_cfg, cfg)
    return Trainer(model, loss_cfg, post_cfg, cfg, dataset, run_dir, device, dist, reporter, resume=ckpt,
                   clock=clock, started=started, data_path=data_path)


def _write_resolved_config(run_dir: Path, model_cfg: ModelConfig, loss_cfg: LossConfig, post_cfg: PostprocessConfig, cfg: TrainConfig) -> None:
    import yaml

    data = {"model": to_dict(model_cfg), "loss": to_dict(loss_cfg), "postprocess": to_dict(post_cfg), "train": to_dict(cfg)}
    (run_dir / "config.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
