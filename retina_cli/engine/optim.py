"""Optimizer, per-iteration learning-rate schedule (linear warm-up, then cosine / step) and EMA."""

from __future__ import annotations

import copy
import math
from typing import Callable

import torch
from torch import nn

from retina_cli.config import TrainConfig


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """SGD with momentum (paper) or AdamW; no weight decay on biases and norm parameters."""
    decay, no_decay = [], []
    for _, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim <= 1 else decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr)
    return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum)


# a warm-up never takes more than this share of the run: a 100-iteration warm-up in a 150-iteration
# run would otherwise leave no time at the full learning rate
WARMUP_MAX_SHARE = 0.2


def warmup_length(total: int, cfg: TrainConfig) -> int:
    """Warm-up iterations for a run of ``total``: ``cfg.warmup_iters``, at most a fifth of the run."""
    return min(cfg.warmup_iters, int(total * WARMUP_MAX_SHARE))


def lr_factor(it: int, total: int, cfg: TrainConfig) -> float:
    """Multiplier of the base lr at iteration ``it`` of ``total``."""
    warm = warmup_length(total, cfg)
    if it < warm:
        alpha = it / warm
        return cfg.warmup_factor * (1 - alpha) + alpha
    if cfg.schedule == "constant":
        return 1.0
    if cfg.schedule == "step":
        return 0.1 ** sum(it >= total * f for f in (2 / 3, 8 / 9))
    progress = (it - warm) / max(total - warm, 1)
    return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))


def build_scheduler(
    optimizer: torch.optim.Optimizer, total_iters: int | Callable[[], int], cfg: TrainConfig,
) -> torch.optim.lr_scheduler.LambdaLR:
    """Per-iteration schedule over ``total_iters``; a callable is asked at every step, so a time
    budget can correct the length of the run as it goes."""
    total = total_iters if callable(total_iters) else (lambda: total_iters)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda it: lr_factor(it, total(), cfg))


class ModelEma:
    """Exponential moving average of a model's weights.

    The averaging window follows the length of the run: at most ``1 / (1 - decay)`` updates (5000
    for 0.9998), and at most a tenth of ``total_iters`` (asked at every update, so a time budget's
    corrected estimate counts). A fixed 0.9998 would average a 600-iteration run's final weights
    with the ones of its first minutes; its warm-up (``exp(-n / 2000)``) would make it a no-op.
    The decay also warms up over the first fifth of a window (the early weights are noise).
    """

    WINDOW_SHARE = 0.1  # the window as a share of the run

    def __init__(self, model: nn.Module, decay: float = 0.9998,
                 total_iters: int | Callable[[], int] | None = None) -> None:
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        self.decay = decay
        self.total_iters = total_iters
        self.updates = 0

    def window(self) -> float:
        """Updates averaged (``1 / (1 - d)``) once the warm-up is over."""
        window = 1.0 / max(1.0 - self.decay, 1e-12)
        total = self.total_iters() if callable(self.total_iters) else self.total_iters
        if total:
            window = min(window, max(1.0, self.WINDOW_SHARE * total))
        return window

    def current_decay(self) -> float:
        window = self.window()
        tau = max(window / 5.0, 1.0)
        return (1.0 - 1.0 / window) * (1.0 - math.exp(-self.updates / tau))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        d = self.current_decay()
        ema_state = self.module.state_dict()
        for k, v in model.state_dict().items():
            if v.dtype.is_floating_point:
                ema_state[k].mul_(d).add_(v.detach(), alpha=1 - d)
            else:
                ema_state[k].copy_(v)

    def state_dict(self) -> dict:
        return {"module": self.module.state_dict(), "updates": self.updates, "decay": self.decay}

    def load_state_dict(self, state: dict) -> None:
        self.module.load_state_dict(state["module"])
        self.updates = int(state["updates"])
        self.decay = float(state["decay"])
