"""`import retina_cli` stays light; the public names load on first use (PEP 562)."""

from __future__ import annotations

import subprocess
import sys

import pytest

import retina_cli


def test_import_loads_no_heavy_module_and_names_resolve_lazily():
    code = (
        "import sys, retina_cli\n"
        "heavy = ('torch', 'cv2', 'timm', 'onnxruntime')\n"
        "print([m for m in heavy if m in sys.modules])\n"
        "retina_cli.Result, retina_cli.Metrics, retina_cli.RetinaError\n"
        "print([m for m in heavy if m in sys.modules])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split("\n")
    assert out[:2] == ["[]", "[]"]  # Result and Metrics need numpy only


def test_public_names():
    from retina_cli.api.detector import Detector, load
    from retina_cli.engine.results import Result

    assert retina_cli.load is load and retina_cli.Detector is Detector and retina_cli.Result is Result
    assert {"load", "Detector", "Result", "Metrics", "train", "RetinaError"} <= set(retina_cli.__all__)
    assert set(retina_cli.__all__) <= set(dir(retina_cli))
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        retina_cli.nope  # noqa: B018
