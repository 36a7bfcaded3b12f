"""The shared range checks of retina_cli.validation: messages, normalised values, and that the
CLI and the Python API refuse the same values with the same words."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from retina_cli import validation
from retina_cli.errors import ConfigError
from retina_cli.train_settings import DEFAULTS, parse_anchor_sizes, parse_floats, parse_levels, resolve


def _message(fn, *args, **kwargs) -> str:
    with pytest.raises(ConfigError) as info:
        fn(*args, **kwargs)
    return str(info.value)


@pytest.mark.parametrize(("name", "value", "message"), [
    ("lr", math.nan, "--lr must be a finite number > 0, got nan"),
    ("lr", -1.0, "--lr must be a finite number > 0, got -1.0"),
    ("lr", math.inf, "--lr must be a finite number > 0, got inf"),
    ("img_size", 0, "--img-size must be an integer in [32, 8192], got 0"),
    ("img_size", 512.5, "--img-size must be an integer in [32, 8192], got 512.5"),
    ("conf", 1.5, "--conf must be a finite number in [0, 1], got 1.5"),
    ("iou", 0.0, "--iou must be a finite number in (0, 1], got 0.0"),
    ("prior", 1.0, "--prior must be a finite number in (0, 1), got 1.0"),
    ("val_fraction", 1.0, "--val-fraction must be a finite number in [0, 1), got 1.0"),
    ("max_det", True, "--max-det must be an integer >= 1, got True"),
    ("max_det", 2**40, "--max-det must be an integer >= 1, got 1099511627776 (too large)"),
    ("alpha", 1.5, "--alpha must be a finite number <= 1 (negative: no alpha weighting), got 1.5"),
    ("patience", -1, "--patience must be an integer >= 0 (0: off), got -1"),
    ("workers", "two", "--workers must be an integer in [0, 1024], got 'two'"),
    ("seed", -1, "--seed must be an integer in [0, 4294967295], got -1"),
])
def test_a_value_out_of_range_is_one_line_naming_the_flag_and_the_rule(name, value, message):
    assert _message(validation.check, name, value) == message


def test_values_in_range_come_back_as_plain_numbers():
    assert validation.check("img_size", "512") == 512 and type(validation.check("img_size", 512.0)) is int
    assert validation.check("lr", "1e-3") == 0.001  # PyYAML reads 1e-3 (no dot) as a string
    assert validation.check("alpha", -1) == -1.0  # negative alpha: no weighting, as LossConfig has it
    assert validation.check("conf", 0) == 0.0 and validation.check("conf", 1) == 1.0  # closed ends
    assert validation.check("iou", 1.0) == 1.0 and validation.check("time", 0) == 0.0


def test_the_label_replaces_the_flag_name():
    assert _message(validation.check, "lr", 0, "lr of the API") == "lr of the API must be a finite number > 0, got 0"


def test_every_numeric_training_setting_has_a_rule_and_its_default_passes_it():
    numeric = [k for k, v in DEFAULTS.items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
    assert len(numeric) > 30 and [k for k in numeric if k not in validation.RULES] == []
    for k in numeric:
        assert validation.check(k, DEFAULTS[k]) == DEFAULTS[k]


def test_two_settings_that_bound_each_other():
    assert _message(validation.check_settings, {"scale_min": 2, "scale_max": 1.5}) == "--scale-min 2 is above --scale-max 1.5"
    assert _message(validation.check_settings, {"bg_iou": 0.6, "fg_iou": 0.5}) == "--bg-iou 0.6 is above --fg-iou 0.5"
    assert validation.check_settings({"bg_iou": 0.4, "fg_iou": 0.5, "backbone": "x", "conf": None}) == {"bg_iou": 0.4, "fg_iou": 0.5}


@pytest.mark.parametrize("spec", ["auto", "cpu", "cuda", "cuda:0", "cuda:12"])
def test_device_names_torch_takes(spec):
    assert validation.check_device(spec) == spec


@pytest.mark.parametrize("spec", ["foo", "", "cuda:x", "cuda:-1", "gpu", "cpu:0:1", 3])
def test_other_device_names_are_refused(spec):
    assert _message(validation.check_device, spec) == f"--device {spec!r}: expected auto, cpu, cuda or cuda:N"


def test_a_cuda_index_the_machine_lacks_is_refused(monkeypatch):
    import torch

    from retina_cli.engine.distributed import select_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert _message(select_device, "cuda:9") == "--device cuda:9: this machine has 1 CUDA device(s), cuda:0 to cuda:0"


# retina train's settings: resolve() checks them for the CLI, the API and --config files alike

def test_resolve_refuses_a_given_value_naming_the_flag():
    assert _message(resolve, {"lr": math.nan}, cuda_available=False) == "--lr must be a finite number > 0, got nan"
    assert _message(resolve, {"img_size": 0}, cuda_available=False) == "--img-size must be an integer in [32, 8192], got 0"


def test_resolve_refuses_a_config_file_value_naming_the_setting():
    assert _message(resolve, {}, {"lr": -1}, cuda_available=False) == (
        "config file setting lr must be a finite number > 0, got -1")
    assert _message(resolve, {}, {"amp": "no"}, cuda_available=False) == (
        "config file setting amp must be true or false, got 'no'")
    assert "config file setting backbone must be text" in _message(resolve, {}, {"backbone": [1]}, cuda_available=False)


def test_resolve_normalises_numbers_and_paths_of_a_config_file():
    r = resolve({"project": Path("runs/x")}, {"weight_decay": "1e-3", "epochs": 3.0, "fpn_levels": 5},
                cuda_available=False)
    assert r.values["weight_decay"] == 0.001 and type(r.values["weight_decay"]) is float
    assert r.values["epochs"] == 3 and type(r.values["epochs"]) is int
    assert r.values["fpn_levels"] == "5" and r.values["project"] == str(Path("runs/x"))


def test_time_given_must_be_positive_but_a_config_file_may_say_0_for_off():
    assert _message(resolve, {"time": 0}, cuda_available=False) == (
        "--time must be a finite number > 0 (minutes; leave it out for no budget), got 0")
    assert resolve({}, {"time": 0.0}, cuda_available=False).values["time"] == 0.0  # a run's args.yaml
    assert "--time must be" in _message(resolve, {"time": -5}, cuda_available=False)


def test_resolve_keeps_negative_alpha_meaning_off():
    assert resolve({"alpha": -1}, cuda_available=False).values["alpha"] == -1.0


def test_resolve_refuses_an_unknown_device():
    assert _message(resolve, {"device": "gpu0"}, cuda_available=False) == "--device 'gpu0': expected auto, cpu, cuda or cuda:N"


@pytest.mark.parametrize(("fn", "text"), [
    (lambda: parse_floats("nan,1", "--anchor-ratios"), "--anchor-ratios 'nan,1': values must be finite and positive"),
    (lambda: parse_floats("1,inf", "--anchor-scales"), "--anchor-scales '1,inf': values must be finite and positive"),
    (lambda: parse_anchor_sizes("nanx"), "--anchor-sizes 'nanx'"),
    (lambda: parse_anchor_sizes("infx"), "--anchor-sizes 'infx'"),
    (lambda: parse_levels("3-11"), "--fpn-levels '3-11': expected MIN-MAX with 1 <= MIN <= MAX <= 10"),
])
def test_number_lists_and_levels_refuse_nan_inf_and_absurd_levels(fn, text):
    assert _message(fn).startswith(text)


def test_analyze_loss_gammas_refuse_nan_and_inf():
    from retina_cli.cli.analyze_loss import parse_gammas

    assert parse_gammas("0,2") == (0.0, 2.0)
    for bad in ("nan", "0,inf", "-1"):
        assert _message(parse_gammas, bad) == f"--gammas {bad!r}: give one or more values >= 0"


def test_a_config_file_error_is_one_line(tmp_path):
    from retina_cli.cli.options import load_yaml_config

    broken = tmp_path / "a.yaml"
    broken.write_text("lr: 0.1\nepochs: [1, 2\n")
    assert _message(load_yaml_config, broken) == f"{broken}:3: not valid YAML (expected ',' or ']', but got '<stream end>')"
    binary = tmp_path / "b.yaml"
    binary.write_bytes(b"\xff\xfe\x00lr: 1")
    assert _message(load_yaml_config, binary) == f"{binary}: cannot read the config file as UTF-8 text (UnicodeDecodeError)"
    assert "a folder; expected a YAML file" in _message(load_yaml_config, tmp_path)


# the Python API: the same rules and words as the CLI

def test_the_training_api_refuses_what_the_cli_refuses_before_making_a_folder(tmp_path):
    import retina_cli

    project = tmp_path / "runs"
    assert _message(retina_cli.train, tmp_path / "data", lr=float("nan"), project=project) == (
        "--lr must be a finite number > 0, got nan")
    assert _message(retina_cli.train, tmp_path / "data", config={"lr": -1}, project=project) == (
        "config file setting lr must be a finite number > 0, got -1")
    assert not project.exists()


def test_the_detector_api_refuses_what_predict_and_eval_refuse(tmp_path):
    import retina_cli
    from helpers import make_checkpoint

    ckpt, _ = make_checkpoint(tmp_path / "m.pt")
    det = retina_cli.load(ckpt, device="cpu")
    image = __import__("numpy").zeros((32, 32, 3), "uint8")
    assert _message(det.predict, image, conf=float("nan")) == "--conf must be a finite number in [0, 1], got nan"
    assert _message(det.predict, image, iou=0) == "--iou must be a finite number in (0, 1], got 0"
    assert _message(det.predict, image, batch=0) == "--batch must be an integer >= 1, got 0"
    assert _message(det.val, tmp_path / "data", max_det=0, project=tmp_path / "ev") == "--max-det must be an integer >= 1, got 0"
    assert _message(det.export, opset=5) == "--opset must be an integer in [17, 99], got 5"
    assert _message(retina_cli.load, ckpt, device="foo") == "--device 'foo': expected auto, cpu, cuda or cuda:N"
    assert not (tmp_path / "ev").exists() and not (tmp_path / "m.onnx").exists()
