import pytest
import torch


def _random_boxes(n: int, gen: torch.Generator, size: float = 100.0) -> torch.Tensor:
    """``(n, 4)`` valid xyxy boxes with corners in ``[0, 1.5 * size]``."""
    xy = torch.rand(n, 2, generator=gen) * size
    wh = torch.rand(n, 2, generator=gen) * size / 2 + 1
    return torch.cat((xy, xy + wh), dim=1)


@pytest.fixture
def random_boxes():
    return _random_boxes
