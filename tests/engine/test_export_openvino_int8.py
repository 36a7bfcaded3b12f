"""int8 OpenVINO (NNCF): the cases of ``openvino_int8_cases.py``, run by pytest in a process of their own.

NNCF loads torch extensions and thread pools into the process that imports it; the suite's process,
after several hundred tests, segfaulted twice in later tests once NNCF had run in it. In a fresh
process the cases run as they would for a user (one export per process).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("openvino")
pytest.importorskip("nncf")


def test_openvino_int8_cases_pass_in_their_own_process():
    here = Path(__file__).parent
    cmd = [sys.executable, "-m", "pytest", "-q", "-o", "addopts=", "-p", "no:cacheprovider", "-o", "python_files=openvino_int8_cases.py",
           str(here / "openvino_int8_cases.py")]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=here.parent.parent)
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-2000:]
    cases = (here / "openvino_int8_cases.py").read_text().count("\ndef test_")
    assert cases > 0
    assert f"{cases} passed" in res.stdout, res.stdout[-2000:]
