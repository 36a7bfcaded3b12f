"""Hooks for the whole test run (tests/ and plugins/).

With ``RETINA_TEST_TRAIL`` set to a file path, each test's node id is written there as the test
starts. A run killed by a signal (a segfault in native code leaves no pytest report) then still
names the test it died in: ``.ci/run`` prints it.
"""

from __future__ import annotations

import os


def pytest_runtest_logstart(nodeid: str, location: object) -> None:
    trail = os.environ.get("RETINA_TEST_TRAIL")
    if trail:
        with open(trail, "w", encoding="utf-8") as f:
            f.write(nodeid + "\n")
