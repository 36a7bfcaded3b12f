"""``retina_cli.train(data, **settings)``: the one training entry point, under ``retina train`` too.

Settings are the ``retina train`` flag names with ``_`` (``img_size=448``, ``time=30``,
``model="nano"``); they resolve over the ``model`` preset (:mod:`retina_cli.train_settings`).
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping



@dataclass
class TrainRun:
    """What a training run left: its folder, weights, best validation metrics, and the settings.

    history: one dict per epoch (the rows of metrics.csv: loss, cls, box, lr, AP, AP50, ...).
    predict_conf: the score threshold stored in ``best.pt`` for predict (the best mean F1 of its
    validation), None when no validation ranked anything (predict then uses 0.25).
    time_split: where this process's wall time went (start-up, training steps, waiting for data,
    validation, checkpoints, other): a :class:`~retina_cli.engine.time_split.TimeSplit`, whose
    ``summary()`` is the line ``retina train`` prints and ``as_dict()`` the seconds per phase.
    """

    run_dir: Path
    best: Path
    last: Path
    best_ap: float
    best_ap50: float
    epochs: int
    stop_reason: str
    settings: dict[str, Any]
    history: list[dict[str, float]] = field(default_factory=list)
    predict_conf: float | None = None
    time_split: Any = None

    @property
    def metrics(self) -> dict[str, float]:
        return {"AP": self.best_ap, "AP50": self.best_ap50}


def train(
    data: str | Path,
    *,
    resume: str | Path | None = None,
    config: Mapping[str, Any] | None = None,
    verbose: bool = True,
    reporter: Any = None,
    on_dataset: Callable[[Any], None] | None = None,
    on_start: Callable[[Any], None] | None = None,
    **settings: Any,
) -> TrainRun:
    """Train RetinaNet on a folder of labels (YOLO, Pascal VOC, COCO JSON or CSV; detected).

    settings: ``retina train`` flags by name (see ``retina train --help``), e.g. ``model="nano"``,
        ``time=15`` (minutes), ``epochs=12``, ``patience=3``, ``img_size=448``; None means unset.
    config: settings of lower precedence (what ``--config args.yaml`` gives the CLI).
    resume: a run's ``last.pt``: the same run goes on, on the same ``data``, with its own settings
        (:mod:`retina_cli.resume_settings`): ``device``/``workers`` may change, a larger ``epochs``
        or ``time`` extends it (recorded in the run's resume.yaml; args.yaml is kept as it was),
        any other given setting that differs from the run's is refused, and so is a complete run
        that is not extended.
    verbose: print notices and one line per epoch to stderr; False: nothing. reporter: where
        progress and messages go instead (:class:`~retina_cli.engine.reporting.Reporter`).
    on_dataset: called with the loaded dataset (its ``report`` lists the data problems).
    on_start: called with the prepared Trainer before the first step.

    Returns a :class:`TrainRun`. Raises :class:`~retina_cli.errors.RetinaError` subclasses for
    problems a user can fix (bad data, unknown backbone, unwritable folder...).
    """
    from retina_cli import train_settings
    from retina_cli.engine import distributed as dist_utils
    from retina_cli.engine.reporting import LineReporter, SilentReporter
    from retina_cli.engine.trainer import prepare_training
    from retina_cli.engine.runs import absent_folders, discard_on_failure, holds_checkpoint

    started = time.monotonic()  # a --time budget counts from here: data loading and model building too
    out = reporter if reporter is not None else (LineReporter() if verbose else SilentReporter())
    resolved = train_settings.resolve({**settings}, config)
    plan = ckpt = fit_model = None
    if resume is None:
        model_cfg, loss_cfg, post_cfg, train_cfg = train_settings.build_configs(resolved, str(data))
        for note in resolved.notes:
            out.log(note)
        fit_model = _anchor_fitting(resolved, loss_cfg, train_cfg, out)
    else:
        ckpt, plan, (model_cfg, loss_cfg, post_cfg, train_cfg) = _plan_resume(Path(resume), data, resolved)
    if on_dataset is None:
        def on_dataset(ds: Any) -> None:
            if ds.report.problems:
                out.warn(f"{len(ds.report.problems)} problems in the dataset; `retina data info {data}` lists them")
    absent = absent_folders(train_cfg.project)  # a new --project is taken back with a failed run's folder
    trainer = prepare_training(
        model_cfg, loss_cfg, post_cfg, train_cfg, resume=str(resume) if resume else None, reporter=out,
        on_dataset=on_dataset, started=started, checkpoint=ckpt, resume_changes=plan.changes if plan else None,
        fit_model=fit_model,
    )
    if trainer.dist.is_main and plan is None:
        _write_args(trainer.run_dir, resolved.values)
    elif trainer.dist.is_main:
        for note in plan.notes:
            out.log(note)
        if plan.changed:
            _record_resume(trainer.run_dir, plan)
    if on_start is not None:
        on_start(trainer)
    # a run that fails on its input before any checkpoint takes back the folder made for it
    fresh = trainer.dist.is_main and resume is None and not train_cfg.exist_ok
    try:
        with discard_on_failure(trainer.run_dir, keep=holds_checkpoint, made=absent) if fresh else contextlib.nullcontext():
            result = trainer.fit()
    finally:
        dist_utils.cleanup()
    return TrainRun(
        run_dir=result.run_dir, best=result.run_dir / "best.pt", last=result.run_dir / "last.pt",
        best_ap=result.best_ap, best_ap50=result.best_ap50, epochs=result.epochs_done,
        stop_reason=result.stop_reason, settings=dict(plan.settings if plan else resolved.values),
        history=list(trainer.history), predict_conf=trainer.post_cfg.predict_conf, time_split=result.time_split,
    )


def _anchor_fitting(resolved: Any, loss_cfg: Any, train_cfg: Any, out: Any) -> Callable[[Any, Any], Any] | None:
    """The ``fit_model`` hook of ``--anchors`` (:func:`retina_cli.anchors.auto.fit_anchors`) for a
    new run; None for ``manual``. Anchor flags given on the command line are only checked; a config
    file's values are not "given" here (a run's args.yaml spells out every setting, and repeating
    it must repeat the run's fitting)."""
    mode = resolved.values["anchors"]
    if mode == "manual":
        return None
    from retina_cli import train_settings
    from retina_cli.anchors.auto import fit_anchors

    given = any(resolved.sources.get(k) == "given" for k in train_settings.ANCHOR_SETTINGS)

    def fit(model_cfg: Any, dataset: Any) -> Any:
        return fit_anchors(model_cfg, loss_cfg, train_cfg, dataset.records("train"), mode, out.log, out.warn, given)

    return fit


def _plan_resume(resume: Path, data: str | Path, resolved: Any) -> tuple[dict[str, Any], Any, tuple]:
    """Read the checkpoint and check the settings given with ``--resume`` against it, before
    anything is loaded or written -> (checkpoint, plan, the run's four configs)."""
    import yaml

    from retina_cli.config import stored_train_config
    from retina_cli.engine.checkpoint import configs_from_checkpoint, load_checkpoint
    from retina_cli.resume_settings import plan_resume

    ckpt = load_checkpoint(resume)
    args = resume.resolve().parent / "args.yaml"
    try:
        recorded = yaml.safe_load(args.read_text()) if args.is_file() else None
    except (OSError, yaml.YAMLError):
        recorded = None  # only a supplement: the checkpoint holds what the run needs
    given = {k: v for k, v in resolved.values.items() if resolved.sources.get(k) in ("given", "config")}
    # where it runs comes from the flags (or their defaults) as for a new run
    given.update(device=resolved.values["device"], workers=resolved.values["workers"])
    plan = plan_resume(ckpt, resume, data, given, recorded if isinstance(recorded, dict) else None)
    configs = (*configs_from_checkpoint(ckpt), stored_train_config(ckpt["train_config"]))
    return ckpt, plan, configs


def _record_resume(run_dir: Path, plan: Any) -> None:
    """resume.yaml: one entry per resume that changed a setting (when, from which epoch and
    iteration, each setting's old and new value). args.yaml and config.yaml stay what the run
    started with (``--config args.yaml`` repeats that start); the checkpoint holds what it uses now."""
    import datetime

    import yaml

    path = run_dir / "resume.yaml"
    entries = yaml.safe_load(path.read_text()) if path.is_file() else None
    entries = entries if isinstance(entries, list) else []
    entries.append({
        "resumed": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "epochs_done": plan.epochs_done, "iteration": plan.step,
        "changed": {k: {"from": old, "to": new} for k, (old, new) in plan.changed.items()},
    })
    path.write_text(yaml.safe_dump(entries, sort_keys=False))


def _write_args(run_dir: Path, values: Mapping[str, Any]) -> None:
    """args.yaml: every setting as resolved (preset included), so ``--config args.yaml`` repeats the run."""
    import yaml

    keep = {k: (str(v) if isinstance(v, Path) else v) for k, v in values.items()}
    (run_dir / "args.yaml").write_text(yaml.safe_dump(keep, sort_keys=False))

