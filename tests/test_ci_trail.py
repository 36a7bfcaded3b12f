"""The root conftest's test trail: .ci/run names the test a signal-killed run died in."""

import importlib.util
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _root_conftest():
    spec = importlib.util.spec_from_file_location("retina_root_conftest", ROOT / "conftest.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_trail_holds_the_test_that_started_last(tmp_path, monkeypatch):
    trail = tmp_path / "trail"
    hook = _root_conftest().pytest_runtest_logstart
    monkeypatch.delenv("RETINA_TEST_TRAIL", raising=False)
    hook("tests/a.py::test_one", None)
    assert not trail.exists()  # off unless asked for
    monkeypatch.setenv("RETINA_TEST_TRAIL", str(trail))
    hook("tests/a.py::test_one", None)
    hook("tests/a.py::test_two", None)
    assert trail.read_text() == "tests/a.py::test_two\n"


def test_a_segfaulting_run_leaves_the_crashing_test_in_the_trail(tmp_path):
    (tmp_path / "conftest.py").write_text((ROOT / "conftest.py").read_text())
    (tmp_path / "test_crash.py").write_text(
        "import ctypes\n\ndef test_fine():\n    pass\n\ndef test_crash():\n    ctypes.string_at(0)\n")
    trail = tmp_path / "trail"
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
                          cwd=tmp_path, env={"RETINA_TEST_TRAIL": str(trail), "PATH": "/usr/bin:/bin"},
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == -11, proc.stdout + proc.stderr
    assert trail.read_text().strip().endswith("test_crash.py::test_crash")
