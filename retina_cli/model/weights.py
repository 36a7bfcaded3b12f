"""``--backbone-weights FILE``: load a local classification checkpoint into a detection backbone.

A classification checkpoint rarely uses the backbone's parameter names: torchvision, timm, TF ports
and ``efficientnet_pytorch`` each name the same network differently. Tensors are matched by name
first (same key, same shape); the rest are matched by order, which works across naming schemes
because every implementation registers a network's layers in the order they run. Order matching is
strict: the i-th unmatched backbone tensor pairs with the i-th unmatched file tensor and their
shapes must agree, so a checkpoint of another architecture fails loudly instead of loading into
the wrong layers. File tensors left over at the end (the classifier, a head conv the detection
backbone drops) are fine and are reported as unused.
"""

from __future__ import annotations

import pickle
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from retina_cli.errors import CheckpointError
from retina_cli.plugins import load_provider

if TYPE_CHECKING:
    from retina_cli.model.retinanet import RetinaNet

# checkpoint containers seen in the wild: {"state_dict": ...} (lightning, mmcv), {"model": ...}
# (detectron2, DeiT, many training scripts), {"model_state_dict": ...}
_CONTAINER_KEYS = ("state_dict", "model", "model_state_dict", "module")


@dataclass(frozen=True)
class WeightsReport:
    """What :func:`load_backbone_weights` did.

    by_name / by_order: backbone tensors filled from the file, matched each way.
    unused: file tensors that went nowhere (a classifier, a dropped head conv), by file key.
    ``num_batches_tracked`` counters are ignored on both sides and counted nowhere.
    """

    path: str
    by_name: int
    by_order: int
    unused: tuple[str, ...]

    @property
    def matched(self) -> int:
        return self.by_name + self.by_order

    def summary(self) -> str:
        """One line for the CLI."""
        how = f"{self.by_name} by name, {self.by_order} by order"
        return f"backbone weights {self.path}: {self.matched} tensors loaded ({how}), {len(self.unused)} unused"


def read_state_dict(path: str | Path) -> dict[str, Tensor]:
    """The tensors of a ``.pth``/``.pt``/``.bin``/``.ckpt`` or ``.safetensors`` file, in file order.

    Pickled files are read with ``weights_only=True``: a file that needs arbitrary Python objects
    (and so could run code while loading) is refused with a CheckpointError. Common containers are
    unwrapped and a ``module.`` prefix (DataParallel / DDP) is dropped. Non-tensor entries are
    skipped.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"backbone weights file {path} does not exist")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            obj: Any = load_file(str(path), device="cpu")
        except (SafetensorError, OSError) as exc:
            raise CheckpointError(f"cannot read backbone weights {path}: {exc}") from exc
    else:
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # torch raises KeyError, RuntimeError, EOFError... for a file it cannot parse
            reason = _unpickling_reason(exc)
            if "GLOBAL" in reason:
                raise CheckpointError(
                    f"refused to load backbone weights {path}: it holds Python objects beyond tensors, which "
                    f"could run code when unpickled ({reason}); only plain state dicts are read: re-save it "
                    f"with torch.save(model.state_dict(), ...) or as .safetensors"
                ) from exc
            raise CheckpointError(
                f"cannot read backbone weights {path} as a PyTorch state dict ({reason}); expected a "
                f"torch.save file of tensors or a .safetensors file"
            ) from exc
    while isinstance(obj, Mapping):
        inner = next((obj[k] for k in _CONTAINER_KEYS if isinstance(obj.get(k), Mapping)), None)
        if inner is None:
            break
        obj = inner
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"backbone weights {path} hold a {type(obj).__name__}, not a state dict")
    tensors = {str(k): v for k, v in obj.items() if isinstance(v, Tensor)}
    if tensors and all(k.startswith("module.") for k in tensors):
        tensors = {k[len("module."):]: v for k, v in tensors.items()}
    if not tensors:
        raise CheckpointError(f"backbone weights {path} contain no tensors")
    return tensors


def _unpickling_reason(exc: Exception) -> str:
    """The informative line of a ``torch.load`` error (its weights-only refusals are mostly boilerplate)."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    if isinstance(exc, pickle.UnpicklingError):
        specific = [ln for ln in lines if "GLOBAL" in ln or ln.startswith("Unsupported")]
        if specific:
            return specific[0]
    return f"{type(exc).__name__}: {lines[0] if lines else ''}"


def _shape(t: Tensor) -> tuple[int, ...]:
    return tuple(t.shape)


def load_backbone_weights(module: nn.Module, path: str | Path) -> WeightsReport:
    """Copy the tensors of the classification checkpoint ``path`` into ``module`` (in place).

    Every parameter and buffer of ``module`` (but ``num_batches_tracked``) must be filled, by name
    or by order (see the module docstring); otherwise a CheckpointError names the file and the
    first backbone tensor that has no partner, with both shapes. ``module`` is untouched on error.
    """
    file_sd = {k: v for k, v in read_state_dict(path).items() if not k.endswith("num_batches_tracked")}
    own = {k: v for k, v in module.state_dict().items() if not k.endswith("num_batches_tracked")}

    by_name = {k: k for k, v in own.items() if k in file_sd and _shape(file_sd[k]) == _shape(v)}
    rest_own = [k for k in own if k not in by_name]
    taken = set(by_name.values())
    rest_file = [k for k in file_sd if k not in taken]
    if len(rest_file) < len(rest_own):
        first = rest_own[len(rest_file)]
        raise CheckpointError(
            f"backbone weights {path} do not fit: the backbone has {len(own)} tensors, the file {len(file_sd)}; "
            f"{len(by_name)} match by name and the file runs out at backbone tensor {first!r} "
            f"{list(own[first].shape)} when matching the rest by order"
        )
    by_order: dict[str, str] = {}
    for own_key, file_key in zip(rest_own, rest_file):
        if _shape(own[own_key]) != _shape(file_sd[file_key]):
            raise CheckpointError(
                f"backbone weights {path} do not fit this backbone: matching by order, backbone tensor "
                f"{own_key!r} {list(own[own_key].shape)} meets file tensor {file_key!r} "
                f"{list(file_sd[file_key].shape)} ({len(by_name)} matched by name, {len(by_order)} by order "
                f"before it); is the file for another architecture?"
            )
        by_order[own_key] = file_key
    mapping = {**by_name, **by_order}
    missing, _ = module.load_state_dict({k: file_sd[f] for k, f in mapping.items()}, strict=False)
    assert all(k.endswith("num_batches_tracked") for k in missing), missing
    used = set(mapping.values())
    return WeightsReport(
        path=str(path),
        by_name=len(by_name),
        by_order=len(by_order),
        unused=tuple(k for k in file_sd if k not in used),
    )


def backbone_weights_module(model: RetinaNet) -> nn.Module:
    """The part of a RetinaNet's backbone that a classification checkpoint maps onto.

    The provider's ``weights_module(backbone)`` when it has one (e.g. timm's ``features_only``
    body, without the adapter around it), else the backbone module itself.
    """
    provider = load_provider(model.cfg.provider)
    hook = getattr(provider, "weights_module", None)
    return hook(model.backbone) if hook is not None else model.backbone


def load_retinanet_backbone_weights(model: RetinaNet, path: str | Path) -> WeightsReport:
    """:func:`load_backbone_weights` into a RetinaNet's backbone (see :func:`backbone_weights_module`)."""
    return load_backbone_weights(backbone_weights_module(model), path)
