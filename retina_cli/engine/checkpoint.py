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
import warnings
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
    # in another thread nothing can be held; inside another held block, that block raises at its end
    if threading.current_thread() is not threading.main_thread() or getattr(signal.getsignal(signal.SIGINT), "holds_sigint", False):
        yield
        return
    received: list[int] = []

    def hold(signum: int, frame: Any) -> None:
        received.append(signum)

    hold.holds_sigint = True  # type: ignore[attr-defined]
    previous = signal.signal(signal.SIGINT, hold)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if received:
        raise KeyboardInterrupt


def atomic_save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` to ``path`` so that a crash mid-write never leaves a truncated file there;
    Ctrl-C during the write is held until the file is complete.

    A failed write (disk full, folder gone, no permission) is a one-line CheckpointError naming
    ``path`` and the reason; the previous file at ``path``, if any, is left as it was.
    """
    path = Path(path)
    existed = path.is_file()
    try:
        with sigint_deferred():
            _atomic_save(obj, path)
    except (OSError, RuntimeError) as exc:
        reason = _write_failure(exc)
        if reason is None:
            raise
        kept = f"the previous {path.name} is intact" if existed else "nothing was written"
        raise CheckpointError(f"{path}: could not write the checkpoint ({reason}); {kept}") from exc


def _write_failure(exc: BaseException) -> str | None:
    """Why a write failed (an OSError's strerror, found under torch's RuntimeError), or None when
    ``exc`` is not a failed write (a bug: re-raised)."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OSError):
            return seen.strerror or str(seen)
        seen = seen.__cause__ or seen.__context__
    # torch's C++ zip writer reports its own failed writes without an OSError
    if isinstance(exc, RuntimeError) and "write" in str(exc).lower():
        return str(exc).splitlines()[0]
    return None


def _atomic_save(obj: Any, path: Path) -> None:
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
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # e.g. the safe unpickler's "pickle protocol 4" note
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        # never PyTorch's advice (re-run with weights_only=False): that would run the file's code
        found = _foreign_globals(path)
        what = f" ({', '.join(found)})" if found else ""
        raise CheckpointError(
            f"{path}: refused: the file holds Python objects that are not plain tensors/containers{what}; "
            "a retina checkpoint holds only tensors and plain values"
        ) from None
    except Exception as exc:
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(exc).__name__}: {_first_sentence(exc)})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a retina checkpoint (no '{FORMAT}' format marker); torchvision weights go through `retina convert`")
    return ckpt


def _first_sentence(exc: BaseException) -> str:
    """The first sentence of an error from torch.load (its later ones are advice, some of it unsafe)."""
    text = " ".join(str(exc).split())
    return text.split(". ")[0].rstrip(".")


# what torch.save itself writes: not worth naming in a refusal
_EXPECTED = ("collections.OrderedDict", "_codecs.encode")
_OS_MODULES = {"posix": "os", "nt": "os"}  # pickle records os.system as posix.system
_MAX_OPS = 1_000_000


def _foreign_globals(path: Path) -> list[str]:
    """The classes or functions a refused pickle names (e.g. ``posix.system``), read from its
    opcodes without running anything; at most three, [] when the file cannot be scanned."""
    import pickletools
    import zipfile

    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as zf:
                name = next((n for n in zf.namelist() if n.endswith("data.pkl")), None)
                data = zf.read(name) if name else b""
        else:
            data = path.read_bytes()
        found: list[str] = []
        strings: list[str] = []
        for i, (op, arg, _) in enumerate(pickletools.genops(data)):
            if i > _MAX_OPS or len(found) >= 3:
                break
            if op.name == "GLOBAL":
                name = str(arg).replace(" ", ".")
            elif op.name == "STACK_GLOBAL" and len(strings) >= 2:
                name = f"{strings[-2]}.{strings[-1]}"
            else:
                if isinstance(arg, str):
                    strings.append(arg)
                continue
            module, _, attr = name.rpartition(".")
            name = f"{_OS_MODULES.get(module, module)}.{attr}"
            if not name.startswith("torch.") and name not in _EXPECTED and name not in found:
                found.append(name)
        return found
    except Exception:  # a damaged pickle: the refusal stands without the names
        return []


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
