"""`retina bench` says which numeric path each subject took and why (bf16 native, emulated, or
not taken by OpenVINO's CPU plugin)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from retina_cli.bench import precision
from retina_cli.bench.precision import native_bf16, openvino_precision_path, torch_precision_path

CPU = torch.device("cpu")


@pytest.mark.parametrize("native", [True, False])
def test_torch_path_names_the_bf16_kind(monkeypatch, native):
    monkeypatch.setattr(precision, "native_bf16", lambda: native)
    bf16 = torch_precision_path("bf16", CPU)
    fp32 = torch_precision_path("fp32", CPU)
    if native:
        assert bf16.startswith("bf16 autocast, native") and "AMX" in bf16
        assert fp32.startswith("fp32") and "--precision bf16 may be faster" in fp32
    else:
        assert bf16.startswith("bf16 autocast, emulated") and "slower than fp32" in bf16
        assert fp32 == "fp32"


def test_openvino_path_compares_what_was_asked_with_what_ran():
    compiled = lambda hint: SimpleNamespace(get_property=lambda name: hint)  # noqa: E731
    assert openvino_precision_path("fp32", compiled("<Type: 'float32'>"), ["FP32"]) == "fp32"
    assert openvino_precision_path("bf16", compiled("<Type: 'bf16'>"), ["FP32", "BF16"]) == "bf16"
    assert (openvino_precision_path("bf16", compiled("<Type: 'float32'>"), ["FP32", "INT8"])
            == "bf16 asked, fp32 ran (the CPU plugin offers FP32, INT8)")


def test_openvino_subject_reports_what_this_cpu_ran(tmp_path):
    pytest.importorskip("openvino")
    from retina_cli.bench.subjects import onnx_subject
    from helpers import POST, make_model

    subject = onnx_subject(make_model(), POST, tmp_path, runtime="openvino", precision="bf16")
    if native_bf16():
        assert subject.note == "bf16" and subject.tolerance == (2.0, 0.02)
    else:  # OpenVINO keeps f32 on a CPU without bf16, and the note says so
        assert subject.note.startswith("bf16 asked, fp32 ran (the CPU plugin offers ") and "BF16" not in subject.note
        assert subject.tolerance == (0.5, 1e-3)
    assert onnx_subject(make_model(), POST, tmp_path / "f", runtime="openvino").note == "fp32"
