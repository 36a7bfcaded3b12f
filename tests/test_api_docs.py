"""docs/API.md's examples, run as written on tiny stand-ins, so the API docs cannot go stale.

A runnable block's fence is ```` ```python runnable ````. The blocks run one after another in one
namespace (later blocks use the ``detector`` of the first), in an empty folder that holds what the
examples name: ``runs/train/exp/best.pt`` (a tiny checkpoint whose classes are the dataset's),
``street.jpg``, ``clip.mp4`` (4 frames) and ``my_data`` (a synthetic YOLO dataset).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import retina_cli
from helpers import make_checkpoint
from retina_cli.config import PostprocessConfig
from retina_cli.data.synthetic import write_video, write_yolo_dataset

API_MD = Path(__file__).resolve().parents[1] / "docs" / "API.md"
FENCE = re.compile(r"^```python runnable\n(.*?)^```", re.S | re.M)


def runnable_blocks(text: str) -> list[str]:
    return [m.group(1) for m in FENCE.finditer(text)]


def test_api_docs_examples_run_as_written(tmp_path, monkeypatch):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("supervision")
    import cv2

    monkeypatch.chdir(tmp_path)
    data = write_yolo_dataset(tmp_path / "my_data", n_train=2, n_val=3, size=(64, 80), seed=2, object_size=(16, 36))
    names = ("circle", "square", "triangle")
    (tmp_path / "runs/train/exp").mkdir(parents=True)
    make_checkpoint(tmp_path / "runs/train/exp/best.pt", names=names, post=PostprocessConfig(score_thresh=0.3, topk=100, max_det=20))
    cv2.imwrite("street.jpg", cv2.imread(str(next((data / "images" / "val").glob("*")))))
    write_video(tmp_path / "clip.mp4", frames=4, size=(96, 128))
    blocks = runnable_blocks(API_MD.read_text())
    assert len(blocks) >= 6
    namespace: dict = {}
    for i, block in enumerate(blocks, 1):
        exec(compile(block, f"{API_MD.name} block {i}", "exec"), namespace)
    assert (tmp_path / "street_annotated.jpg").is_file() and (tmp_path / "runs/train/exp/best.onnx").is_file()
    assert not (tmp_path / "runs" / "eval").exists()


def test_every_public_name_is_documented():
    text = API_MD.read_text()
    for name in retina_cli.__all__:
        if name != "__version__":
            assert f"`{name}" in text, name
