"""glibc keeps freed multi-megabyte blocks for reuse once retina's CLI has started."""

import subprocess
import sys

import pytest

PROBE = """
import resource
import torch
from retina_cli.speed.host_memory import keep_freed_memory
assert keep_freed_memory()
def step():  # a network's activations: a few blocks of several MiB made and freed every step
    xs = [torch.ones(1 << 20 + i % 3) for i in range(6)]
    del xs
# first-fit placement of the 4/8/16 MiB blocks among torch's small allocations takes a few steps to
# settle: tuned, the heap grew (fresh pages faulted) in up to the first 7 steps of a process (8
# probes on the Zen 5 VM), then never again; untuned it mostly kept faulting 8-10k pages per step
for _ in range(10):
    step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    step()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _page_faults() -> int:
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True)
    return int(out.stdout.split()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt")
def test_freed_blocks_are_reused_instead_of_faulted_in_again():
    # 20 steps of ~56 MiB of 4-16 MiB blocks would be ~290,000 page faults if each step's blocks
    # came fresh from the kernel (what glibc's trimming does once its dynamic thresholds are
    # passed: ~160,000 measured untuned); kept for reuse, the steps fault less than one block in
    tuned = _page_faults()
    assert tuned < 4096, tuned
