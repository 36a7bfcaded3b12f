"""The synthetic dataset behind `retina demo` and the tests."""

from __future__ import annotations


def test_synthetic_scenes_fit_small_images(tmp_path):
    from retina_cli.data.synthetic import write_yolo_dataset

    # the default object size (20-90 px) is larger than a 64 px image: shapes are capped to fit
    root = write_yolo_dataset(tmp_path / "d", n_train=3, n_val=1, size=(64, 64))
    for label in (root / "labels" / "train").glob("*.txt"):
        for line in label.read_text().split("\n"):
            if line:
                _, cx, cy, w, h = map(float, line.split())
                assert 0 < w < 1 and 0 < h < 1 and 0 <= cx - w / 2 and cx + w / 2 <= 1
