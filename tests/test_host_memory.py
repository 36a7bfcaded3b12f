"""glibc keeps freed multi-megabyte blocks for reuse once retina's CLI has started."""

import subprocess
import sys

import pytest

PROBE = """
import resource, sys
import torch
from retina_cli.host_memory import keep_freed_memory
if sys.argv[1] == "tuned":
    assert keep_freed_memory()
def step():  # a network's activations: a few blocks of several MiB made and freed every step
    xs = [torch.ones(1 << 20 + i % 3) for i in range(6)]
    del xs
for _ in range(3):
    step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    step()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _page_faults(mode: str) -> int:
    out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True)
    return int(out.stdout.split()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt")
def test_freed_blocks_are_reused_instead_of_faulted_in_again():
    default, tuned = _page_faults("default"), _page_faults("tuned")
    # 20 steps of ~60 MiB: untuned, glibc hands most of it back to the kernel and faults it in again
    assert default > 5000, default
    assert tuned < default / 10, (tuned, default)
