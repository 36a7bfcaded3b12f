"""`retina --help`, `--version`, `CMD --help` and shell completion start without the heavy stack.

Each case runs the CLI in a fresh interpreter (this test process has torch loaded already) and
reports which heavy modules ended up in ``sys.modules``. A failure here means a module on the
start-up path imports one of them at module level: move that import into the function that uses
it (``python -X importtime -c "import retina_cli.cli.main"`` shows the chain).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from retina_cli import __version__

# torch alone is ~4 s and ~800 MB on a 2-core machine; numpy is cheap but not needed to print help
HEAVY = ("torch", "torchvision", "timm", "cv2", "onnx", "onnxruntime", "matplotlib", "numpy")

# argv[0] is "retina" so that click derives the completion variable _RETINA_COMPLETE from it
SCRIPT = """
import json, sys
sys.argv[0] = "retina"
from retina_cli.cli.app import main
code = 0
try:
    main(sys.argv[1:])
except SystemExit as exc:
    code = exc.code or 0
sys.stdout.flush()
print(json.dumps({"code": code, "heavy": [m for m in %r if m in sys.modules]}), file=sys.stderr)
""" % (HEAVY,)


def run_cli(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, list[str]]:
    """Run ``retina ARGS`` in a new interpreter -> (exit code, stdout, heavy modules it imported)."""
    full_env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1", "TERM": "dumb", **(env or {})}
    proc = subprocess.run([sys.executable, "-c", SCRIPT, *args], capture_output=True, text=True, env=full_env, timeout=120)
    report = json.loads(proc.stderr.strip().splitlines()[-1])
    return report["code"], proc.stdout, report["heavy"]


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--help"], ["Usage: retina", "train", "predict", "eval", "export", "data", "analyze-loss"]),
        (["train", "--help"], ["Usage: retina train", "--epochs", "--backbone", "--img-size"]),
        (["predict", "--help"], ["Usage: retina predict", "--conf", "--backend", "--no-save-media"]),
        (["data", "info", "--help"], ["Usage: retina data info", "--format", "--val-fraction"]),
    ],
    ids=["help", "train-help", "predict-help", "data-info-help"],
)
def test_help_imports_no_heavy_modules(args, expected):
    code, out, heavy = run_cli(*args)
    assert code == 0, out
    missing = [text for text in expected if text not in out]
    assert not missing, f"{missing} not in the output of retina {' '.join(args)}:\n{out}"
    assert heavy == [], f"retina {' '.join(args)} imported {heavy}"


def test_version_imports_no_heavy_modules():
    code, out, heavy = run_cli("--version")
    assert (code, out, heavy) == (0, f"retina {__version__}\n", [])


def test_completion_imports_no_heavy_modules():
    env = {"_RETINA_COMPLETE": "complete_bash", "COMP_WORDS": "retina tr", "COMP_CWORD": "1"}
    code, out, heavy = run_cli(env=env)
    assert (code, out.split(), heavy) == (0, ["train"], [])


def test_option_completion_imports_no_heavy_modules():
    env = {"_RETINA_COMPLETE": "complete_bash", "COMP_WORDS": "retina predict --co", "COMP_CWORD": "2"}
    code, out, heavy = run_cli(env=env)
    assert (code, sorted(out.split()), heavy) == (0, ["--codec", "--conf", "--count-line"], [])
