"""``retina train DATA --resume last.pt``: what the settings given with a resume may change.

A resume continues the same run on the same data:

- DATA must be the run's dataset (the same folder under any path: relative, absolute, a trailing
  slash, a symlink);
- where it runs may change: ``device``, ``workers``;
- its length may grow: ``epochs`` above the run's (the learning-rate schedule is re-fit to the new
  length from the current iteration), ``time`` above the run's budget; the same value is a no-op;
- every other setting that was given (a flag or a ``--config`` file; defaults and presets do not
  count) must equal the run's: a contradiction is refused in one line naming the flag and both
  values, and so is a shorter ``epochs``/``time``;
- a run that is complete needs a longer ``epochs`` (or ``time``) to go on.

:func:`plan_resume` checks all of this before anything is loaded or written. Light module (no
torch): the checkpoint comes in already read.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from retina_cli import train_settings
from retina_cli.config import AnchorConfig
from retina_cli.errors import ConfigError

WHERE = ("device", "workers")  # where the run executes: free to change on resume
LENGTH = ("epochs", "time")  # may only grow
FLAGS = {"data_format": "--format", "batch_size": "--batch-size"}


def flag(name: str) -> str:
    return FLAGS.get(name, "--" + name.replace("_", "-"))


@dataclass
class ResumePlan:
    """changes: the ``TrainConfig`` fields the resumed run uses instead of the checkpoint's
    (``device`` and ``workers`` always; ``epochs``/``time`` when extended). changed: setting ->
    (run's value, new value) for the ones that really differ, to record. notes: what to tell the
    user. settings: every setting of the run as it goes on (the run's values, then the changes)."""

    changes: dict[str, Any]
    changed: dict[str, tuple[Any, Any]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)
    epochs_done: int = 0
    step: int = 0  # the iteration the run goes on from


def run_settings(ckpt: Mapping[str, Any], recorded: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The run's value of every setting the checkpoint (or ``recorded``: the run's args.yaml,
    for the few settings the checkpoint does not hold) knows, in the form a flag gives it."""
    from retina_cli.plugins import DEFAULT_PROVIDER

    m, t = ckpt["model_config"], ckpt["train_config"]
    loss, post = ckpt.get("loss_config", {}), ckpt.get("postprocess_config", {})
    out: dict[str, Any] = {k: v for k, v in (recorded or {}).items() if k in train_settings.DEFAULTS}
    out.update({k: v for k, v in t.items() if k in train_settings.DEFAULTS})
    out["model"] = t.get("preset", "")
    provider = m.get("provider", DEFAULT_PROVIDER)
    out["backbone"] = m["backbone"] if provider == DEFAULT_PROVIDER else f"{provider}:{m['backbone']}"
    for k in ("img_size", "fpn_channels", "p6_from", "head_depth", "head_width", "head_norm", "prior"):
        if k in m:
            out[k] = m[k]
    out["fpn_levels"] = f"{m.get('min_level', 3)}-{m.get('max_level', 7)}"
    anchors = m.get("anchors", {})
    a = AnchorConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in anchors.items()})
    out["anchor_sizes"] = (train_settings._numbers(a.sizes) if a.sizes else f"{a.size_per_stride:g}x")
    out["anchor_ratios"], out["anchor_scales"] = train_settings._numbers(a.ratios), train_settings._numbers(a.scales)
    out.update({k: loss[k] for k in ("gamma", "alpha", "box_loss", "box_weight", "fg_iou", "bg_iou") if k in loss})
    for name, key in (("conf", "score_thresh"), ("iou", "nms_thresh"), ("max_det", "max_det")):
        if key in post:
            out[name] = post[key]
    return out


def _close(a: float, b: float) -> bool:
    return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-12)


def _floats(text: Any, name: str) -> tuple[float, ...]:
    return train_settings.parse_floats(str(text), flag(name))


def _fitted_from(recorded: Mapping[str, Any] | None, name: str, given: Any, ckpt: Mapping[str, Any]) -> bool:
    """Whether ``given`` is the anchor setting the run's args.yaml records as its start, for a run
    whose anchors ``--anchors check``/``auto`` fitted to the data (the checkpoint holds the result)."""
    if not recorded or recorded.get("anchors", "manual") == "manual" or name not in recorded:
        return False
    return _same(name, given, recorded[name], ckpt)


def _same(name: str, given: Any, run: Any, ckpt: Mapping[str, Any]) -> bool:
    """Whether the given value of setting ``name`` is the run's (the forms a flag takes: a size
    that rounds to the run's, levels "3-5", anchor lists, a weights file by any path)."""
    from retina_cli import plugins

    m = ckpt["model_config"]
    if name == "backbone":
        return plugins.split_backbone_name(str(given)) == plugins.split_backbone_name(str(run))
    if name == "img_size":
        return train_settings.round_img_size(int(given), int(m.get("max_level", 7))) == int(run)
    if name == "fpn_levels":
        return train_settings.parse_levels(str(given)) == train_settings.parse_levels(str(run))
    if name == "anchor_sizes":
        levels = tuple(range(int(m.get("min_level", 3)), int(m.get("max_level", 7)) + 1))

        def effective(text: Any) -> tuple[float, ...] | None:
            sizes, per_stride = train_settings.parse_anchor_sizes(str(text))
            try:
                return AnchorConfig(sizes=sizes, size_per_stride=per_stride or 4.0).sizes_for(levels)
            except ConfigError:  # as many sizes as levels, or it is not the run's
                return None

        a, b = effective(given), effective(run)
        return a is not None and b is not None and all(_close(x, y) for x, y in zip(a, b))
    if name in ("anchor_ratios", "anchor_scales"):
        a, b = _floats(given, name), _floats(run, name)
        return len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b))
    if name == "backbone_weights":
        spec = str(given or "").strip()
        if spec.lower() in ("none", "random", ""):
            return not run
        if spec.lower() == "auto":  # what a fresh run would look up now
            from retina_cli.model.local_weights import find_local_weights

            found = None if ckpt["train_config"].get("pretrained") else find_local_weights(m.get("provider", "timm"), m["backbone"])
            return (str(found.path) if found else "") == str(run or "")
        return bool(run) and Path(spec).expanduser().resolve() == Path(str(run)).expanduser().resolve()
    if name == "project":
        return Path(str(given)).expanduser().resolve() == Path(str(run)).expanduser().resolve()
    if isinstance(run, bool) or isinstance(given, bool):
        return bool(given) == bool(run)
    if isinstance(run, (int, float)) and not isinstance(run, bool):
        try:
            return _close(float(given), float(run))
        except (TypeError, ValueError):
            return False
    return str(given) == str(run)


def _shown(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return repr(value) if value == "" else str(value)


def progress(ckpt: Mapping[str, Any]) -> tuple[int, bool, str]:
    """(epochs completed, whether the run is complete, why it ended: "" or its stop reason)."""
    t = ckpt["train_config"]
    complete = bool(ckpt.get("epoch_complete", True))
    done = int(ckpt.get("epoch", -1)) + (1 if complete else 0)
    finished = ckpt.get("finished")
    if finished is None:  # a checkpoint from before "finished" was saved
        steps = int(ckpt.get("scheduler", {}).get("last_epoch", 0))
        finished = complete and (
            (int(t.get("epochs", 0)) > 0 and done >= int(t["epochs"]))
            or (float(t.get("time", 0)) > 0 and steps >= int(ckpt.get("total_iters", steps + 1)))
        )
    return done, bool(finished), str(ckpt.get("stop_reason", "") or "")


def same_data(data: str | Path, ckpt: Mapping[str, Any]) -> bool:
    """Whether ``data`` is the run's dataset (the same file or folder under any spelling)."""
    stored = ckpt.get("data_path") or ckpt["train_config"].get("data", "")
    a, b = Path(str(data)).expanduser(), Path(str(stored)).expanduser()
    if a.resolve() == b.resolve():
        return True
    try:
        return a.exists() and b.exists() and a.samefile(b)
    except OSError:
        return False


def plan_resume(
    ckpt: Mapping[str, Any], path: str | Path, data: str | Path, given: Mapping[str, Any],
    recorded: Mapping[str, Any] | None = None,
) -> ResumePlan:
    """Check a resume of the run in ``ckpt`` (read from ``path``) on ``data`` with the settings
    a user gave (flags and a --config file; None = not given) -> what the resumed run changes.

    recorded: the run's args.yaml, if it has one (it holds the few settings a checkpoint does not,
    e.g. ``anchors``). Raises ConfigError (one line naming the flag or DATA and both values)."""
    path = Path(path)
    t = ckpt["train_config"]
    if not same_data(data, ckpt):
        stored = ckpt.get("data_path") or t.get("data", "")
        raise ConfigError(f"DATA {data} is not the dataset of the run {path} ({stored}); a resume goes on with "
                          f"the run's own data (start a new run for other data)")
    run = run_settings(ckpt, recorded)
    given = {k: v for k, v in given.items() if v is not None and k != "data"}
    plan = ResumePlan(changes={})
    done, finished, reason = progress(ckpt)
    plan.epochs_done, plan.step = done, int(ckpt.get("scheduler", {}).get("last_epoch", 0))
    keep = "a resumed run keeps its settings (only --device, --workers and a longer --epochs or --time may change)"
    for name in sorted(given):
        if name in WHERE or name in LENGTH or name not in run:
            continue
        if name in train_settings.ANCHOR_SETTINGS and _fitted_from(recorded, name, given[name], ckpt):
            continue  # the anchors the run started from, before --anchors check/auto fitted them
        if not _same(name, given[name], run[name], ckpt):
            raise ConfigError(f"{flag(name)} {_shown(given[name])}: the run {path} has {_shown(run[name])}; {keep}")
    for name in WHERE:
        if name in given:
            plan.changes[name] = given[name]
            if str(given[name]) != str(t.get(name)):
                plan.changed[name] = (t.get(name), given[name])
    _plan_length(plan, path, given, t, done)
    if finished:
        _refuse_complete(plan, path, t, done, reason)
    plan.settings = {**run, **plan.changes}
    return plan


def _plan_length(plan: ResumePlan, path: Path, given: Mapping[str, Any], t: Mapping[str, Any], done: int) -> None:
    """--epochs and --time on resume: longer extends the run, equal is a no-op, shorter is refused."""
    run_epochs, run_time = int(t.get("epochs", 0)), float(t.get("time", 0.0))
    if "epochs" in given:
        e = int(given["epochs"])
        if run_epochs == 0 and e != 0:
            raise ConfigError(f"--epochs {e}: the run {path} has no epoch limit (its --time {run_time:g} budget "
                              f"decides); a resume cannot add one")
        if e < done:
            raise ConfigError(f"--epochs {e}: the run {path} has already trained {done} of its {run_epochs} epochs; "
                              f"a resume can extend a run, not shorten it")
        if e < run_epochs:
            raise ConfigError(f"--epochs {e} is below the run's {run_epochs} ({path}); a resume can extend a run, "
                              f"not shorten it")
        if e > run_epochs:
            plan.changes["epochs"] = e
            plan.changed["epochs"] = (run_epochs, e)
            plan.notes.append(f"extending the run from {run_epochs} to {e} epochs: the learning-rate schedule is "
                              f"re-fit to {e} epochs from iteration {plan.step}")
    if "time" in given:
        m = float(given["time"])
        if run_time == 0 and m != 0:
            raise ConfigError(f"--time {m:g}: the run {path} has no time budget (it trains {run_epochs} epochs); "
                              f"a resume cannot add one")
        if m < run_time:
            raise ConfigError(f"--time {m:g} is below the run's budget of {run_time:g} min ({path}); a resume can "
                              f"extend a run, not shorten it")
        if m > run_time:
            plan.changes["time"] = m
            plan.changed["time"] = (run_time, m)
            plan.notes.append(f"extending the time budget from {run_time:g} to {m:g} min: the learning-rate "
                              f"schedule is re-fit to what fits in the rest, from iteration {plan.step}")


def _refuse_complete(plan: ResumePlan, path: Path, t: Mapping[str, Any], done: int, reason: str) -> None:
    """A finished run goes on only when the limit that ended it was raised."""
    run_epochs, run_time = int(t.get("epochs", 0)), float(t.get("time", 0.0))
    if reason and not reason.startswith("time budget"):
        raise ConfigError(f"{path}: the run is already complete: it stopped early ({reason}); a resume cannot "
                          f"train it further (start a new run)")
    if run_epochs and done >= run_epochs:
        if "epochs" not in plan.changes:
            raise ConfigError(f"{path}: the run is already complete ({done}/{run_epochs} epochs); pass --epochs M > "
                              f"{run_epochs} to extend it")
        return
    if run_time and "time" not in plan.changes:
        raise ConfigError(f"{path}: the run is already complete (its --time budget of {run_time:g} min is used); "
                          f"pass --time M > {run_time:g} to extend it")
