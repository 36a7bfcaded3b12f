"""ShapeCache: one build per input shape, least recently used let go past its size."""

import pytest

from retina_cli.export.shapes import ShapeCache


def test_builds_once_per_shape_and_drops_the_least_recently_used():
    built = []
    cache = ShapeCache(lambda s: built.append(s) or f"model{s}", size=2)
    assert cache((1, 96, 128)) == "model(1, 96, 128)"
    assert cache((1, 96, 128)) == "model(1, 96, 128)" and built == [(1, 96, 128)]
    cache((1, 128, 128))
    cache((1, 96, 128))  # used again: now the newest
    cache((2, 128, 128))  # evicts (1, 128, 128), the least recently used
    assert cache.shapes() == [(1, 96, 128), (2, 128, 128)] and len(cache) == 2
    cache((1, 128, 128))
    assert built == [(1, 96, 128), (1, 128, 128), (2, 128, 128), (1, 128, 128)]


def test_numpy_ints_are_the_same_key_and_size_is_checked():
    import numpy as np

    cache = ShapeCache(lambda s: object(), size=1)
    a = cache((np.int64(1), np.int64(64), np.int64(64)))
    assert cache((1, 64, 64)) is a
    with pytest.raises(ValueError):
        ShapeCache(lambda s: s, size=0)
