"""`retina bench`: the pieces (stats, memory, agreement) and the compared models agreeing.
Timings themselves are never asserted: they belong to benchmarks, not tests."""

from __future__ import annotations

import json

import pytest
import torch

from helpers import make_checkpoint
from retina_cli.bench.timing import Stat, bench_images, match_detections, peak_memory_mb, run_stages, time_subjects, Subject
from retina_cli.bench.run import BenchOptions, run_bench, speed_accuracy
from retina_cli.errors import ConfigError
from retina_cli.postprocess import Detections

CPU = torch.device("cpu")


def _dets(boxes, scores, labels) -> Detections:
    return Detections(torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4), torch.tensor(scores), torch.tensor(labels))


def test_stat_is_median_min_max():
    assert Stat.of([5.0, 1.0, 3.0, 100.0]) == Stat(4.0, 1.0, 100.0)


def test_match_detections_counts_both_ways():
    a = _dets([[0, 0, 10, 10], [20, 20, 40, 40]], [0.9, 0.8], [0, 1])
    same = _dets([[0.2, 0, 10, 10.1], [20, 20, 40, 40]], [0.9004, 0.8], [0, 1])
    assert match_detections(a, same) == 1.0
    other_label = _dets([[0, 0, 10, 10], [20, 20, 40, 40]], [0.9, 0.8], [0, 2])
    assert match_detections(a, other_label) == pytest.approx(0.5)
    shifted = _dets([[0, 0, 10, 10], [22, 20, 40, 40]], [0.9, 0.8], [0, 1])
    assert match_detections(a, shifted) == pytest.approx(0.5)
    assert match_detections(a, shifted, box_tol=2.0) == 1.0
    extra = _dets([[0, 0, 10, 10], [20, 20, 40, 40], [50, 50, 60, 60]], [0.9, 0.8, 0.7], [0, 1, 0])
    assert match_detections(a, extra) == pytest.approx(4 / 5)  # 2 of a + 2 of 3 in extra
    empty = _dets([], [], [])
    assert match_detections(empty, empty) == 1.0
    assert match_detections(a, empty) == 0.0


def test_peak_memory_counts_what_torch_allocates_on_cpu():
    def work():
        a = torch.ones(1024, 1024)  # 4 MiB
        b = torch.ones(2048, 1024)  # 8 MiB, both alive: 12 MiB
        del b
        return a.sum()

    assert peak_memory_mb(work, CPU) == pytest.approx(12.0, abs=0.1)


def test_time_subjects_reports_every_stage_and_total():
    calls = []
    s = Subject("s", [("a", lambda x: calls.append("a") or x + 1), ("b", lambda x: calls.append("b") or x * 2)])
    stats = time_subjects([s], "inference", 1, CPU, warmup=1, runs=3)[0]
    assert set(stats) == {"a", "b", "total"}
    assert calls == ["a", "b"] * 4  # one subject: the alternating order changes nothing
    assert run_stages(s.inference, 1, CPU) == 4
    assert stats["total"].median >= stats["a"].median


def test_bench_images_are_square_scenes_with_boxes():
    images, targets = bench_images(96, 3)
    assert [im.shape for im in images] == [(96, 96, 3)] * 3
    for boxes, labels in targets:
        assert len(boxes) == len(labels) >= 1
        assert (boxes[:, 2:] > boxes[:, :2]).all() and boxes.max() <= 96


@pytest.fixture(scope="module")
def compared():
    opts = BenchOptions(img_size=128, runs=1, warmup=0, compare="torchvision", threads=2, train_batch=1)
    return run_bench(opts)


def test_compare_torchvision_models_agree(compared):
    assert [r.name for r in compared.results] == ["torchvision", "retina"]
    tv, ours = compared.results
    assert tv.detections > 20  # the auto score bias puts candidates through NMS
    assert ours.detections == tv.detections
    assert compared.agreement == {"retina": 1.0}


def test_compare_reports_every_stage_memory_and_ratios(compared):
    tv, ours = compared.results
    for r in (tv, ours):
        assert set(r.inference) == {"preprocess", "network", "postprocess", "total"}
        assert set(r.train) == {"forward", "loss", "backward", "optimizer", "total"}
        assert r.memory_mb["train"] > r.memory_mb["inference"] > 0
    payload = json.loads(json.dumps(compared.to_dict()))
    ratios = payload["ratios_to_torchvision"]["retina"]
    assert ratios["inference"] == pytest.approx(ours.inference["total"].median / tv.inference["total"].median)
    assert ratios["train"] > 0 and ratios["train_memory"] > 0
    assert payload["options"]["img_size"] == 128 and payload["environment"]["threads"] == 2


def test_compare_refuses_layouts_torchvision_does_not_have():
    with pytest.raises(ConfigError, match="retinanet_resnet50_fpn"):
        BenchOptions(compare="torchvision", backbone="resnet18")
    with pytest.raises(ConfigError, match="backends"):
        BenchOptions(backends=("tensorrt",))


def test_onnxruntime_fp32_agrees_and_int8_keeps_most_detections(tmp_path):
    opts = BenchOptions(backbone="resnet18", img_size=128, levels=(3, 5), fpn_channels=64, head_depth=2,
                        head_width=64, runs=1, warmup=0, backends=("torch", "onnxruntime", "int8"), train=False)
    report = run_bench(opts)
    ours, ort, q = report.results
    assert (ort.name, q.name) == ("onnxruntime", "onnxruntime int8")
    assert ours.detections > 20 and ort.detections == ours.detections and q.detections > 0
    assert report.agreement["onnxruntime"] == 1.0
    assert "inference" in ours.memory_mb and not ort.memory_mb  # onnxruntime allocates outside torch
    # int8 moves scores by a few hundredths: most detections still have their fp32 partner
    assert report.agreement["onnxruntime int8"] > 0.5


def test_speed_accuracy_rows_and_plot(tmp_path):
    from retina_cli.data.synthetic import write_yolo_dataset

    data = write_yolo_dataset(tmp_path / "data", n_train=2, n_val=3, size=(96, 128))
    a, _ = make_checkpoint(tmp_path / "a.pt", seed=0, names=("circle", "square", "triangle"))
    b, _ = make_checkpoint(tmp_path / "b.pt", seed=1, names=("circle", "square", "triangle"))
    plot = tmp_path / "speed.png"
    rows = speed_accuracy(BenchOptions(checkpoints=(str(a), str(b)), runs=1, warmup=0), str(data), "val", None, plot)
    assert [r["checkpoint"] for r in rows] == [str(a), str(b)]
    for r in rows:
        assert r["ms_per_image"] > 0 and 0.0 <= r["AP"] <= 1.0 and r["backbone"] == "resnet18"
    assert plot.stat().st_size > 1000
