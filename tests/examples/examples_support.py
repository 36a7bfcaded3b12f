"""Load the scripts of ``examples/`` as modules for their smoke tests."""

import importlib.util
from pathlib import Path
from types import ModuleType

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
# the smallest `retina train` model: one head conv of 32 channels on P3-P5 of a resnet18
TINY_TRAIN_ARGS = ("--backbone resnet18 --backbone-weights '' --no-freeze-bn --fpn-levels 3-5 --anchor-sizes '' "
                   "--fpn-channels 32 --head-width 32 --head-depth 1 --batch 4")


def load_example(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
