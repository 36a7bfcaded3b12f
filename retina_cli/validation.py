"""The range of every numeric setting and flag, checked before any work starts: one table for the
CLI and the Python API alike.

:data:`RULES` maps a setting name (a flag without ``--``, ``-`` as ``_``: ``lr``, ``img_size``,
``max_det``) to its :class:`Rule`. :func:`check` tests one value and returns it as a plain int or
float (a YAML config may hold ``lr: "1e-3"``, which PyYAML reads as a string);
:func:`check_flags` tests several by name. A value out of range is a :class:`ConfigError` of one
line naming the flag: ``--lr must be a finite number > 0, got nan``.

Light module (no torch): the CLI imports it before any heavy import.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from typing import Any, Mapping

from retina_cli.errors import ConfigError

IMG_SIZE_MAX = 8192  # a square network input above this does not fit any GPU's memory in training


@dataclass(frozen=True)
class Rule:
    """A closed or open interval of finite numbers, optionally integers only.

    low / high: the bounds (None: unbounded). low_open / high_open: the bound itself is excluded.
    note: what a special value means, appended to the message (``"0: off"``).
    """

    integer: bool = False
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    note: str = ""

    def describe(self) -> str:
        kind = "an integer" if self.integer else "a finite number"
        if self.low is not None and self.high is not None:
            lo, hi = "(" if self.low_open else "[", ")" if self.high_open else "]"
            text = f"{kind} in {lo}{_num(self.low)}, {_num(self.high)}{hi}"
        elif self.low is not None:
            text = f"{kind} {'>' if self.low_open else '>='} {_num(self.low)}"
        elif self.high is not None:
            text = f"{kind} {'<' if self.high_open else '<='} {_num(self.high)}"
        else:
            text = kind
        return text + (f" ({self.note})" if self.note else "")

    def accepts(self, x: float) -> bool:
        if not math.isfinite(x):
            return False
        if self.low is not None and (x <= self.low if self.low_open else x < self.low):
            return False
        return not (self.high is not None and (x >= self.high if self.high_open else x > self.high))


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


def _positive(note: str = "") -> Rule:
    return Rule(low=0.0, low_open=True, note=note)


def _at_least(n: int, note: str = "") -> Rule:
    return Rule(integer=True, low=n, note=note)


def _unit(low_open: bool = False, high_open: bool = False, note: str = "") -> Rule:
    return Rule(low=0.0, high=1.0, low_open=low_open, high_open=high_open, note=note)


IMG_SIZE = Rule(integer=True, low=32, high=IMG_SIZE_MAX)
SEED = Rule(integer=True, low=0, high=2**32 - 1)

RULES: dict[str, Rule] = {
    # model (retina train, bench, convert, viz/anchors geometry)
    "img_size": IMG_SIZE,
    "fpn_channels": Rule(integer=True, low=1, high=4096),
    "head_depth": Rule(integer=True, low=0, high=64),
    "head_width": Rule(integer=True, low=1, high=4096),
    "prior": _unit(low_open=True, high_open=True),
    "num_classes": Rule(integer=True, low=1, high=100_000),
    # loss and matcher (train, viz --anchors, anchors)
    "gamma": Rule(low=0.0),
    "alpha": Rule(high=1.0, note="negative: no alpha weighting"),
    "box_weight": Rule(low=0.0),
    "fg_iou": _unit(),
    "bg_iou": _unit(),
    # post-processing (train, predict, eval, bench, the API's predict and val)
    "conf": _unit(),
    "iou": _unit(low_open=True),
    "max_det": _at_least(1),
    "topk": _at_least(1),
    # optimisation and schedule (train)
    "epochs": _at_least(0, note="0 only with --time: as many as the budget allows"),
    "time": Rule(low=0.0, note="minutes; 0: off"),
    "time_budget": _positive(note="minutes; leave it out for no budget"),  # --time when given explicitly
    "patience": _at_least(0, note="0: off"),
    "batch_size": _at_least(1),
    "batch": _at_least(1),
    "workers": Rule(integer=True, low=0, high=1024),
    "lr": _positive(),
    "momentum": _unit(),
    "weight_decay": Rule(low=0.0),
    "warmup_iters": _at_least(0),
    "warmup_factor": _unit(low_open=True),
    "min_lr_ratio": _unit(),
    "grad_clip": Rule(low=0.0, note="0: off"),
    "freeze_stride": _at_least(0, note="0: off"),
    "ema_decay": _unit(),
    "seed": SEED,
    "val_interval": _at_least(1),
    "val_fraction": _unit(high_open=True),
    "hflip": _unit(),
    "scale_min": _positive(),
    "scale_max": _positive(),
    "color_jitter": _unit(note="0: off"),
    "max_bad_steps": _at_least(1),
    # predict
    "line_width": Rule(integer=True, low=0, high=1000, note="0: scaled with the image"),
    # eval / bench / analyze-loss / viz / anchors / export / convert / demo / backbones
    "train_batch": _at_least(1),
    "threads": Rule(integer=True, low=0, high=4096, note="0: torch's default"),
    "runs": _at_least(1),
    "warmup": _at_least(0),
    "max_images": _at_least(0, note="0: all"),
    "tile": Rule(integer=True, low=16, high=IMG_SIZE_MAX),
    "num_ratios": Rule(integer=True, low=0, high=64, note="0: as many as now"),
    "num_scales": Rule(integer=True, low=0, high=64, note="0: as many as now"),
    "generations": _at_least(0),
    "max_boxes": _at_least(1),
    "matched_images": _at_least(0, note="0: none"),
    "max_negatives": _at_least(1),
    "opset": Rule(integer=True, low=17, high=99),
    "calibration_images": _at_least(1),
    "max_drop": Rule(low=0.0, high=1.0, high_open=True, note="a mAP50-95 difference, e.g. 0.005"),  # retina export --max-drop
    "bn_eps": Rule(low=0.0, high=1.0),
    "train_images": _at_least(1),
    "demo_epochs": _at_least(1),
    "loss_max_images": _at_least(1),  # retina analyze-loss --max-images  # retina demo --epochs: it has no time budget
    "limit": _at_least(0, note="0: all"),
    "score_bias": Rule(note="or auto or none"),
    # sliced inference (eval; retina_cli.slicing.SliceConfig)
    "slice": Rule(integer=True, low=32, high=IMG_SIZE_MAX, note="window side in pixels; leave it out for no slicing"),
    "slice_overlap": Rule(low=0.0, high=0.9),
    "slice_merge_thresh": _unit(low_open=True),
    "track_low": _unit(),
    "track_new": _unit(),
    "track_buffer": Rule(integer=True, low=1, high=1_000_000, note="frames at 30 fps"),
    "track_iou": _unit(low_open=True),
}


def flag(name: str) -> str:
    """``"max_det"`` -> ``"--max-det"``."""
    return "--" + name.replace("_", "-")


def check(name: str, value: Any, label: str | None = None) -> int | float:
    """``value`` of the setting ``name`` -> a plain int (integer rules) or float; ConfigError
    ``"<label> must be <rule>, got <value>"`` when it is not a number or out of range.
    label: how the message names it (default the flag, ``--name``)."""
    rule = RULES[name]
    label = label or flag(name)
    x = _as_number(value)
    if x is None or not rule.accepts(x) or (rule.integer and x != int(x)):
        raise ConfigError(f"{label} must be {rule.describe()}, got {_shown(value)}")
    if rule.integer and abs(x) >= 2**31:
        raise ConfigError(f"{label} must be {rule.describe()}, got {_shown(value)} (too large)")
    return int(x) if rule.integer else float(x)


def check_flags(**values: Any) -> None:
    """Check flags by setting name (``check_flags(conf=conf, max_det=max_det)``); None is not given."""
    for name, value in values.items():
        if value is not None:
            check(name, value)


def check_settings(values: Mapping[str, Any], labels: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Every value of ``values`` that has a rule, checked -> those values as plain ints and floats
    (the others are left out). labels: per name, how the message names it (default ``--name``).
    Also checks the ranges that involve two settings (scale_min <= scale_max, bg_iou <= fg_iou)."""
    labels = labels or {}
    out = {k: check(k, v, labels.get(k)) for k, v in values.items() if k in RULES and v is not None}
    for low, high in (("scale_min", "scale_max"), ("bg_iou", "fg_iou")):
        if low in out and high in out and out[low] > out[high]:
            raise ConfigError(f"{labels.get(low, flag(low))} {_num(out[low])} is above "
                              f"{labels.get(high, flag(high))} {_num(out[high])}")
    return out


def check_kind(value: Any, default: Any, label: str) -> Any:
    """A setting without a numeric rule, of the kind its default is: a bool stays a bool (a YAML
    ``amp: "no"`` would be true), a number given for a text setting becomes text (``fpn_levels: 5``)."""
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"{label} must be true or false, got {_shown(value)}")
    elif isinstance(default, str):
        if isinstance(value, (int, float, os.PathLike)) and not isinstance(value, bool):
            return str(value)
        if not isinstance(value, str):
            raise ConfigError(f"{label} must be text, got {_shown(value)}")
    return value


_DEVICE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


def check_device(spec: str, label: str = "--device") -> str:
    """``auto``, ``cpu``, ``cuda`` or ``cuda:N`` (syntax only; whether CUDA is there is asked of
    torch when the device is picked)."""
    if not isinstance(spec, str) or not _DEVICE.match(spec.strip()):
        raise ConfigError(f"{label} {spec!r}: expected auto, cpu, cuda or cuda:N")
    return spec.strip()


def check_choice(value: Any, choices: tuple[str, ...], label: str) -> str:
    """``value`` one of ``choices``, else ConfigError ``"<label> 'x': expected a, b or c"``."""
    if value not in choices:
        listed = ", ".join(choices[:-1]) + f" or {choices[-1]}" if len(choices) > 1 else choices[0]
        raise ConfigError(f"{label} {value!r}: expected {listed}")
    return value


def _as_number(value: Any) -> float | None:
    if isinstance(value, bool):  # True is an int to Python, not a number a user meant
        return None
    if isinstance(value, (int, float)):
        return float(value) if not isinstance(value, int) or abs(value) < 2**63 else None
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            return None
    try:  # numpy scalars and 0-d tensors
        return float(value)
    except (TypeError, ValueError):
        return None


def _shown(value: Any) -> str:
    if isinstance(value, float):
        return repr(value)  # nan, inf, -1.0
    return repr(value) if isinstance(value, str) else str(value)
