"""examples/compare_torchvision_bccd.py on a tiny synthetic dataset: one epoch of each model."""

import json
import math

import numpy as np
import torch
from examples_support import load_example

from retina_cli.data import load_dataset
from retina_cli.engine.evaluate import coco_evaluate, coco_ground_truth, to_coco_results
from retina_cli.data.synthetic import CLASSES

compare = load_example("compare_torchvision_bccd")


def test_torchvision_model_takes_the_mobilenet_weights_file(tmp_path):
    from torchvision.models import mobilenet_v2

    torch.manual_seed(0)
    reference = mobilenet_v2(weights=None)
    torch.save(reference.state_dict(), tmp_path / "mnv2.pth")
    model = compare.torchvision_model(3, 128, str(tmp_path / "mnv2.pth"))
    body = model.backbone.body
    torch.testing.assert_close(body["0"][0].weight, reference.features[0][0].weight)
    torch.testing.assert_close(body["17"].conv[-1].running_var, reference.features[17].conv[-1].running_var)
    assert not hasattr(body, "18")  # the 1280-channel conv after the last stage is not part of the FPN body
    feats = model.backbone(torch.zeros(1, 3, 128, 128))
    assert [f.shape[-1] for f in feats.values()] == [16, 8, 4, 2, 1]  # P3-P7
    sizes = model.anchor_generator.sizes
    assert [s[0] for s in sizes] == [24 * 128 / 448 * 2**i for i in range(5)]


def test_torchvision_detections_are_scored_in_original_pixels(tiny_data):
    # a "model" that returns every GT box as its detection must score AP 1, so the samples, the
    # image ids and the box coordinates line up with coco_ground_truth
    records = load_dataset(tiny_data).splits["val"]

    class Oracle(torch.nn.Module):
        def forward(self, images):
            out = []
            for im, rec in zip(images, records[len(self.seen):]):
                assert im.shape[1:] == (rec.height, rec.width) and im.max() <= 1.0
                out.append({"boxes": torch.from_numpy(rec.boxes), "scores": torch.ones(rec.num_boxes),
                            "labels": torch.from_numpy(rec.labels)})
            self.seen.extend(out)
            return out

    oracle = Oracle()
    oracle.seen = []
    res = compare.evaluate_torchvision(oracle, records, CLASSES, 0, torch.device("cpu"))
    assert res.metrics["AP"] == 1.0 and len(oracle.seen) == len(records)


def test_compare_writes_both_rows(tiny_data, tmp_path):
    out = compare.main(["--data", str(tiny_data), "--split", "val", "--epochs", "1", "--img-size", "64",
                        "--max-train-images", "4", "--weights", "", "--workers", "0", "--device", "cpu",
                        "--out", str(tmp_path)])
    payload = json.loads((out / "results.json").read_text())
    rows = payload["rows"]
    assert [r["model"].split()[0] for r in rows] == ["torchvision", "retina,"]
    for r in rows:
        assert r["epochs"] == 1 and r["train_images"] == 4 and r["train_min"] > 0
        for key in ("mAP50-95", "mAP50", "AP75"):
            assert 0.0 <= r[key] <= 1.0 and math.isfinite(r[key])
        assert set(r["per_class_AP"]) == set(CLASSES)
    md = (out / "results.md").read_text().splitlines()
    assert md[2] == "| model | epochs | train images | train min | mAP50-95 | mAP50 | AP75 | AP circle | AP square | AP triangle |"
    assert len(md) == 6
    assert (out / "torchvision" / "model.pt").is_file() and (out / "retina" / "last.pt").is_file()
    assert (out / "retina_eval" / "metrics.json").is_file()


def test_an_earlier_checkpoint_is_scored_without_training(tiny_data, tmp_path):
    from helpers import make_checkpoint

    ckpt, _ = make_checkpoint(tmp_path / "earlier.pt", names=CLASSES)
    saved = torch.load(ckpt, weights_only=True)
    saved["train_config"] = {"epochs": 12}  # the earlier run's length goes in the table, not --epochs
    torch.save(saved, ckpt)
    out = compare.main(["--data", str(tiny_data), "--split", "val", "--epochs", "4", "--skip-torchvision",
                        "--retina-checkpoint", str(ckpt), "--retina-minutes", "31", "--workers", "0",
                        "--device", "cpu", "--out", str(tmp_path / "runs")])
    (r,) = json.loads((out / "results.json").read_text())["rows"]
    assert r["train_min"] == 31.0 and r["epochs"] == 12
    assert not (out / "retina").exists()  # nothing trained
    assert 0.0 <= r["mAP50-95"] <= 1.0


def test_a_non_finite_loss_step_is_skipped(monkeypatch, tiny_data):
    records = load_dataset(tiny_data).splits["train"][:4]
    real = compare.torchvision_model
    calls = []

    def poisoned(*args, **kwargs):
        model = real(*args, **kwargs)
        forward = model.forward

        def first_step_nan(images, targets=None):
            losses = forward(images, targets)
            calls.append(1)
            if len(calls) == 1:
                losses["classification"] = losses["classification"] * float("nan")
            return losses

        model.forward = first_step_nan
        return model

    monkeypatch.setattr(compare, "torchvision_model", poisoned)
    model = compare.train_torchvision(records, CLASSES, 64, 2, "", 0, 0, torch.device("cpu"))
    assert len(calls) == 2  # 4 images, batch 4, 2 epochs
    assert all(torch.isfinite(p).all() for p in model.parameters())
