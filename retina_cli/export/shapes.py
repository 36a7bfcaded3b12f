"""Per-input-shape compiled runtimes: the one cache the onnxruntime and OpenVINO backends share.

Both runtimes run a graph fastest with every dimension fixed, so a backend builds one session
(onnxruntime) or compiled model (OpenVINO) per input shape and keeps the last few: a video is one
shape, a folder of mixed image sizes a handful.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Callable, Generic, TypeVar

T = TypeVar("T")
Shape = tuple[int, int, int]  # (N, H, W) of the network input


class ShapeCache(Generic[T]):
    """``cache(shape)`` -> ``build(shape)``, built on first use; past ``size`` shapes the least
    recently used one is let go."""

    def __init__(self, build: Callable[[Shape], T], size: int = 4) -> None:
        if size < 1:
            raise ValueError(f"ShapeCache size {size}: expected at least 1")
        self.build, self.size = build, size
        self._items: OrderedDict[Shape, T] = OrderedDict()

    def __call__(self, shape: Shape) -> T:
        shape = tuple(int(s) for s in shape)  # type: ignore[assignment]
        if shape in self._items:
            self._items.move_to_end(shape)
            return self._items[shape]
        item = self.build(shape)
        self._items[shape] = item
        while len(self._items) > self.size:
            self._items.popitem(last=False)
        return item

    def __len__(self) -> int:
        return len(self._items)

    def shapes(self) -> list[Shape]:
        """The shapes held, least recently used first."""
        return list(self._items)
