from pathlib import Path

import pytest

from retina_cli.data.synthetic import write_yolo_dataset

@pytest.fixture(scope="session")
def tiny_yolo(tmp_path_factory) -> Path:
    """8 train / 4 val synthetic images of 64x80 in the YOLO layout."""
    root = tmp_path_factory.mktemp("tiny_yolo")
    return write_yolo_dataset(root, n_train=8, n_val=4, size=(64, 80), seed=3, object_size=(14, 30))
