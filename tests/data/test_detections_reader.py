"""COCO results JSON -> boxes per image: every way of naming the image and the class."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from retina_cli.data.detections import group_by_image, read_results
from retina_cli.errors import DataError


def test_group_by_image_keys_and_classes(tmp_path):
    a, b, c = Path("/d/a.jpg"), Path("/d/000000000042.jpg"), Path("/d/c.jpg")
    results = [
        {"file_name": "sub/a.jpg", "category_id": 0, "category_name": "dog", "bbox": [1, 2, 3, 4], "score": 0.5},
        {"image_id": "a.jpg", "category_id": 7, "bbox": [0, 0, 10, 10], "score": 0.9},
        {"image_id": 42, "category_id": 3, "bbox": [5, 5, 1, 1], "score": 0.1},
        {"image_id": 9, "category_id": 3, "bbox": [5, 5, 1, 1]},
        {"image_id": 1, "category_id": 3, "bbox": [0, 0, 2, 2]},
    ]
    grouped, names, unmatched = group_by_image(
        results, [a, b, c], image_ids={9: c}, category_ids=[3, 7], class_names=["cat", "dog"]
    )
    boxes, scores, labels = grouped[a]
    np.testing.assert_array_equal(boxes, [[1, 2, 4, 6], [0, 0, 10, 10]])
    assert labels.tolist() == [1, 1] and scores.tolist() == pytest.approx([0.5, 0.9])
    assert grouped[b][2].tolist() == [0] and grouped[c][1].tolist() == [1.0]
    assert unmatched == 1 and names == {}


def test_read_results_errors(tmp_path):
    (tmp_path / "bad.json").write_text('[{"image_id": 1}]')
    with pytest.raises(DataError, match="entry 0 has no 'bbox'"):
        read_results(tmp_path / "bad.json")
    (tmp_path / "broken.json").write_text("[\n{")
    with pytest.raises(DataError, match=r"broken\.json:2: not valid JSON"):
        read_results(tmp_path / "broken.json")
    (tmp_path / "ok.json").write_text(json.dumps({"annotations": [{"file_name": "x.jpg", "bbox": [0, 0, 1, 1]}]}))
    assert len(read_results(tmp_path / "ok.json")) == 1
