"""retina: a RetinaNet object-detection toolkit - the ``retina`` command and this Python API.

    import retina_cli
    detector = retina_cli.load("runs/train/exp/best.pt")
    results = detector.predict("street.jpg")      # list of retina_cli.Result, boxes in image pixels

The names below load on first use (PEP 562 ``__getattr__``): ``import retina_cli`` (and so
``retina --help``) does not import torch, OpenCV or timm. See docs/API.md.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> the module that defines it
_LAZY = {
    "load": "retina_cli.api.detector",
    "Detector": "retina_cli.api.detector",
    "Result": "retina_cli.engine.results",
    "Metrics": "retina_cli.api.metrics",
    "train": "retina_cli.api.training",
    "RetinaError": "retina_cli.errors",
}

__all__ = ["Detector", "Metrics", "Result", "RetinaError", "__version__", "load", "train"]

if TYPE_CHECKING:
    from retina_cli.api.detector import Detector, load
    from retina_cli.api.metrics import Metrics
    from retina_cli.engine.results import Result
    from retina_cli.api.training import train
    from retina_cli.errors import RetinaError


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'retina_cli' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value  # later look-ups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
