"""Deterministic train/val splits for datasets that do not define their own."""

from __future__ import annotations

import numpy as np

from retina_cli.data.records import ImageRecord


def split_off(records: list[ImageRecord], fraction: float, seed: int) -> tuple[list[ImageRecord], list[ImageRecord]]:
    """Split ``records`` into (rest, held_out) with ``round(fraction * n)`` held out (at least 1 when
    n >= 2 and fraction > 0). The result depends only on the image paths and ``seed``, not on
    file-system listing order."""
    ordered = sorted(records, key=lambda r: str(r.path))
    n = len(ordered)
    k = int(round(fraction * n))
    if fraction > 0 and n >= 2:
        k = min(max(k, 1), n - 1)
    perm = np.random.default_rng(seed).permutation(n)
    held = set(perm[:k].tolist())
    rest = [r for i, r in enumerate(ordered) if i not in held]
    out = [r for i, r in enumerate(ordered) if i in held]
    return rest, out
