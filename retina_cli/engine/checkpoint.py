"""Checkpoint files: weights plus the configs needed to rebuild and run the model.

Written atomically (temp file in the same folder, fsync, rename) and read with
``torch.load(weights_only=True)``: a checkpoint can hold tensors and plain values, never code.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import signal
import tempfile
import threading
from pathlib import Path
from typing import Any

import torch

from retina_cli.config import LossConfig, ModelConfig, PostprocessConfig, from_dict, to_dict
from retina_cli.errors import CheckpointError, ConfigError
from retina_cli.model.retinanet import RetinaNet

FORMAT = "retina-cli/1"


@contextlib.contextmanager
def sigint_deferred():
    """Hold Ctrl-C until the block ends, then raise it: an interrupt inside torch.save's zip
    writer would otherwise surface as a RuntimeError instead of a KeyboardInterrupt."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: received.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if received:
        raise KeyboardInterrupt


def atomic_save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` to ``path`` so that a crash mid-write never leaves a truncated file there;
    Ctrl-C during the write is held until the file is complete."""
    with sigint_deferred():
        _atomic_save(obj, path)


def _atomic_save(obj: Any, path: str | os.PathLike) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_checkpoint(
    path: str | os.PathLike,
    model: RetinaNet,
    loss_cfg: LossConfig | None = None,
    post_cfg: PostprocessConfig | None = None,
    **extra: Any,
) -> None:
    """Write model weights and configs; ``extra`` (optimizer state, epoch, metrics...) rides along."""
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    ckpt = {
        "format": FORMAT,
        "model_config": to_dict(model.cfg),
        "loss_config": to_dict(loss_cfg or LossConfig()),
        "postprocess_config": to_dict(post_cfg or PostprocessConfig()),
        "model": state,
        **extra,
    }
    atomic_save(ckpt, path)


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read a checkpoint without unpickling code; CheckpointError when it is not one of ours."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(f"{path}: refused to load: the file holds objects other than tensors and plain values ({exc})") from exc
    except Exception as exc:
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(exc).__name__}: {exc})") from exc
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a retina checkpoint (no '{FORMAT}' format marker); torchvision weights go through `retina convert`")
    return ckpt


def configs_from_checkpoint(ckpt: dict[str, Any]) -> tuple[ModelConfig, LossConfig, PostprocessConfig]:
    try:
        return (
            from_dict(ModelConfig, ckpt["model_config"]),
            from_dict(LossConfig, ckpt.get("loss_config", {})),
            from_dict(PostprocessConfig, ckpt.get("postprocess_config", {})),
        )
    except (ConfigError, KeyError, TypeError) as exc:
        raise CheckpointError(f"checkpoint config is invalid: {exc}") from exc


def model_from_checkpoint(path: str | os.PathLike) -> tuple[RetinaNet, dict[str, Any]]:
    """Rebuild the model from the checkpoint alone and load its weights; returns (model, checkpoint)."""
    ckpt = load_checkpoint(path)
    model_cfg, _, _ = configs_from_checkpoint(ckpt)
    model = RetinaNet(model_cfg)
    try:
        model.load_state_dict(ckpt["model"])
    except (RuntimeError, KeyError) as exc:
        raise CheckpointError(f"{path}: weights do not fit the model described in the checkpoint: {exc}") from exc
    model.eval()
    return model, ckpt
