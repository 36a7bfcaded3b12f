"""`retina train --anchors check` (the default): the preset's anchors are measured on the training
split and replaced by the search only when they reach too few boxes; flags given are warned
about, never replaced; `manual` is not measured; `auto` always searches."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from retina_cli import train_settings
from retina_cli.anchors.auto import COVERAGE_FLOOR, anchor_flags, fit_anchors
from retina_cli.anchors.fit import letterboxed_boxes
from retina_cli.anchors.search import best_anchor_iou, search_anchors
from retina_cli.config import AnchorConfig, from_dict
from retina_cli.data import load_dataset

SIZE = 128  # images are 128 x 128 and the input is 128: network pixels are image pixels


def write_boxes_dataset(root: Path, wh: tuple[int, int], n_train: int = 6, n_val: int = 2, seed: int = 0) -> Path:
    """A YOLO folder of grey 128 x 128 images, each with 4 boxes of ``wh`` (width, height) centred
    on multiples of 8 (the stride-8 anchor centres)."""
    rng = np.random.default_rng(seed)
    w, h = wh
    for split, n in (("train", n_train), ("val", n_val)):
        (root / "images" / split).mkdir(parents=True, exist_ok=True)
        (root / "labels" / split).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            img = np.full((SIZE, SIZE, 3), 114, np.uint8)
            lines = []
            for _ in range(4):
                cx = 8 * int(rng.integers((w // 2 + 7) // 8, (SIZE - w // 2) // 8 + 1))
                cy = 8 * int(rng.integers((h // 2 + 7) // 8, (SIZE - h // 2) // 8 + 1))
                cv2.rectangle(img, (cx - w // 2, cy - h // 2), (cx + w // 2 - 1, cy + h // 2 - 1), (30, 200, 60), -1)
                lines.append(f"0 {cx / SIZE:.6f} {cy / SIZE:.6f} {w / SIZE:.6f} {h / SIZE:.6f}")
            cv2.imwrite(str(root / "images" / split / f"{split}_{i}.png"), img)
            (root / "labels" / split / f"{split}_{i}.txt").write_text("\n".join(lines) + "\n")
    (root / "data.yaml").write_text("path: .\ntrain: images/train\nval: images/val\nnames:\n  0: bar\n")
    return root


SMALL = {"model": "nano", "backbone": "resnet18", "img_size": SIZE, "fpn_levels": "3-4",
         "fpn_channels": 16, "head_width": 16, "head_depth": 1}


def configs(data: Path, **given):
    resolved = train_settings.resolve({**SMALL, **given})
    model_cfg, loss_cfg, _, train_cfg = train_settings.build_configs(resolved, str(data))
    return resolved, model_cfg, loss_cfg, train_cfg


def coverage(records, cfg) -> float:
    boxes, _ = letterboxed_boxes(records, SIZE)
    return float((best_anchor_iou(boxes, cfg.anchors, cfg.levels, SIZE) >= 0.5).float().mean())


class Log(list):
    def __call__(self, message: str) -> None:
        self.append(message)


@pytest.fixture(scope="module")
def bars(tmp_path_factory):
    # 64 x 8 bars (height / width 1/8): the preset's ratios 0.5-2 reach none of them at IoU 0.5
    return write_boxes_dataset(tmp_path_factory.mktemp("bars"), (64, 8))


@pytest.fixture(scope="module")
def squares(tmp_path_factory):
    # 24 x 24 squares on the stride-8 grid: exactly the P3 anchor of 3 x stride, ratio 1, scale 1
    return write_boxes_dataset(tmp_path_factory.mktemp("squares"), (24, 24))


def test_poorly_covered_boxes_get_searched_anchors_and_the_run_says_so(bars):
    _, model_cfg, loss_cfg, train_cfg = configs(bars)
    assert train_cfg and train_settings.DEFAULTS["anchors"] == "check"
    records = load_dataset(bars).records("train")
    assert coverage(records, model_cfg) < COVERAGE_FLOOR
    log, warn = Log(), Log()
    fitted = fit_anchors(model_cfg, loss_cfg, train_cfg, records, "check", log, warn)
    boxes, _ = letterboxed_boxes(records, SIZE)
    expected = search_anchors(boxes, model_cfg.anchors, model_cfg.levels, SIZE, 0.5, seed=train_cfg.seed)
    assert fitted.anchors == expected != model_cfg.anchors
    assert coverage(records, fitted) > coverage(records, model_cfg)
    assert len(expected.ratios) == len(model_cfg.anchors.ratios)  # the head keeps its anchors per location
    assert "below 95%: searched; --anchors manual keeps them" in log[0] and "24 train boxes" in log[0]
    assert log[1] == f"anchors check: {anchor_flags(expected, model_cfg.levels)}" and not warn


def test_well_covered_boxes_keep_the_presets_anchors_and_say_so(squares):
    _, model_cfg, loss_cfg, train_cfg = configs(squares)
    records = load_dataset(squares).records("train")
    assert coverage(records, model_cfg) == 1.0
    log = Log()
    assert fit_anchors(model_cfg, loss_cfg, train_cfg, records, "check", log, log) == model_cfg
    assert log == ["anchors check: 100.00% of 24 train boxes reach IoU >= 0.5 with an anchor (mean best IoU 1.000): kept"]


def test_a_large_split_is_measured_on_a_seeded_sample(squares, monkeypatch):
    from retina_cli.anchors import auto

    monkeypatch.setattr(auto, "MAX_IMAGES", 4)
    _, model_cfg, loss_cfg, train_cfg = configs(squares)
    log = Log()
    fit_anchors(model_cfg, loss_cfg, train_cfg, load_dataset(squares).records("train"), "check", log, log)
    assert log[0].startswith("anchors check: 100.00% of 16 train boxes (of 4 sampled images) reach")


def test_anchor_flags_given_are_warned_about_not_replaced(bars):
    resolved, model_cfg, loss_cfg, train_cfg = configs(bars, anchor_ratios="1")
    assert resolved.sources["anchor_ratios"] == "given"
    records = load_dataset(bars).records("train")
    log, warn = Log(), Log()
    fitted = fit_anchors(model_cfg, loss_cfg, train_cfg, records, "check", log, warn, given=True)
    assert fitted == model_cfg and fitted.anchors.ratios == (1.0,) and not log
    assert len(warn) == 1 and "the --anchor-* flags reach 0.0% of the 24 train boxes" in warn[0]
    assert f"`retina anchors {bars}` suggests flags" in warn[0]


def test_manual_is_not_measured_and_auto_always_searches(squares, bars):
    _, model_cfg, loss_cfg, train_cfg = configs(bars)
    records = load_dataset(bars).records("train")
    log = Log()
    assert fit_anchors(model_cfg, loss_cfg, train_cfg, records, "manual", log, log) == model_cfg and not log
    _, model_cfg, loss_cfg, train_cfg = configs(squares)
    records = load_dataset(squares).records("train")
    fit_anchors(model_cfg, loss_cfg, train_cfg, records, "auto", log, log)
    assert log[0].startswith("anchors auto: 24 train boxes covered at IoU >= 0.5 100.00% -> ") and "below" not in log[0]


def test_a_split_without_boxes_keeps_the_anchors(tmp_path):
    data = write_boxes_dataset(tmp_path / "d", (24, 24))
    for f in (data / "labels" / "train").iterdir():
        f.write_text("")
    _, model_cfg, loss_cfg, train_cfg = configs(data)
    log = Log()
    assert fit_anchors(model_cfg, loss_cfg, train_cfg, load_dataset(data).records("train"), "check", log, log) == model_cfg


def test_retina_train_fits_the_anchors_by_default_and_stores_them(bars, tmp_path):
    from retina_cli.cli import app as app_module
    from retina_cli.engine.checkpoint import model_from_checkpoint

    app_module._register()
    flags = ["--model", "nano", "--backbone", "resnet18", "--img-size", str(SIZE),
             "--fpn-levels", "3-4", "--fpn-channels", "16", "--head-width", "16", "--head-depth", "1",
             "--workers", "0", "--batch", "4", "--epochs", "1"]
    res = CliRunner().invoke(app_module.app, ["train", str(bars), *flags, "--project", str(tmp_path / "runs")],
                             env={"COLUMNS": "300"})
    assert res.exit_code == 0, res.output
    assert "anchors check: 24 train boxes covered at IoU >= 0.5 0.00% ->" in res.output
    model, ckpt = model_from_checkpoint(tmp_path / "runs" / "exp" / "last.pt")
    _, model_cfg, _, train_cfg = configs(bars)
    boxes, _ = letterboxed_boxes(load_dataset(bars).records("train"), SIZE)
    assert model.cfg.anchors == search_anchors(boxes, model_cfg.anchors, model_cfg.levels, SIZE, 0.5, seed=train_cfg.seed)
    assert (tmp_path / "runs" / "exp" / "args.yaml").read_text().count("anchors: check") == 1
    assert from_dict(AnchorConfig, ckpt["model_config"]["anchors"]) == model.cfg.anchors


def test_retina_anchors_says_when_train_would_search_by_itself(bars, squares):
    from retina_cli.cli import app as app_module

    app_module._register()
    geometry = ["--model", "nano", "--img-size", str(SIZE), "--fpn-levels", "3-4", "--generations", "30"]
    line = "`retina train` searches by itself here"
    res = CliRunner().invoke(app_module.app, ["anchors", str(bars), *geometry], env={"COLUMNS": "300"})
    assert res.exit_code == 0, res.output
    assert line in " ".join(res.output.split())
    res = CliRunner().invoke(app_module.app, ["anchors", str(squares), *geometry], env={"COLUMNS": "300"})
    assert res.exit_code == 0 and line not in " ".join(res.output.split())
    # flags given: train would not replace them, so nothing is promised
    res = CliRunner().invoke(app_module.app, ["anchors", str(bars), *geometry, "--anchor-ratios", "1"], env={"COLUMNS": "300"})
    assert res.exit_code == 0 and line not in " ".join(res.output.split())
