from pathlib import Path

import pytest

from retina_cli.data.synthetic import write_yolo_dataset


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    """8 train / 4 val synthetic images of 64x80 (circle, square, triangle) in the YOLO layout."""
    return write_yolo_dataset(tmp_path_factory.mktemp("examples_data"), n_train=8, n_val=4, size=(64, 80), seed=5,
                              object_size=(14, 30))
