"""Host (glibc) allocator settings for CPU training and inference.

PyTorch's CPU tensors come from glibc's ``malloc``. A block above glibc's mmap threshold is
mapped fresh from the kernel on every allocation and unmapped when freed, and freed heap memory
is trimmed back to the kernel, so a network that makes the same multi-megabyte activations every
step page-faults (and has the kernel zero) all of them again each time: on this project's 2-core
CPU that was ~10% of a training step in system time. Raising the thresholds keeps those blocks
in the process for reuse. Peak resident memory is unchanged; memory freed after the peak is
returned later (or at exit) rather than at once.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

# mallopt parameters (malloc.h)
M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD = -1, -2, -3
MMAP_THRESHOLD = 32 << 20  # glibc's largest allowed value on 64-bit (DEFAULT_MMAP_THRESHOLD_MAX)
TRIM_THRESHOLD = 1 << 30
TOP_PAD = 256 << 20


def keep_freed_memory() -> bool:
    """Ask glibc to reuse freed blocks of up to 32 MiB instead of unmapping them and to keep up to
    1 GiB of freed heap. Returns whether the settings were applied (False off glibc: macOS,
    Windows, musl)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return all(mallopt(p, v) == 1 for p, v in (
        (M_MMAP_THRESHOLD, MMAP_THRESHOLD), (M_TRIM_THRESHOLD, TRIM_THRESHOLD), (M_TOP_PAD, TOP_PAD)))
