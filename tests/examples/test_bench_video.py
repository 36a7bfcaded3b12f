"""Smoke test of examples/bench_video.py: a tiny video through `retina predict` on both backends."""

from __future__ import annotations

import re

import pytest

from examples_support import load_example

pytest.importorskip("onnxruntime")


def test_bench_video_prints_fps_per_backend(capsys):
    bench_video = load_example("bench_video")
    bench_video.main(["--frames", "3", "--backbones", "resnet18", "--backends", "torch,onnxruntime", "--img-size", "128"])
    out = capsys.readouterr().out
    rows = {m[1]: float(m[2]) for m in re.finditer(r"^resnet18\s+(\S+)\s+([\d.]+)", out, re.M)}
    assert set(rows) == {"torch", "onnxruntime"} and all(fps > 0 for fps in rows.values())
    assert "3 frames" in out
