"""``retina_cli.train(data, **settings)``: the one training entry point, under ``retina train`` too.

Settings are the ``retina train`` flag names with ``_`` (``img_size=448``, ``time=30``,
``model="nano"``); they resolve over the ``model`` preset (:mod:`retina_cli.train_settings`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping



@dataclass
class TrainRun:
    """What a training run left: its folder, weights, best validation metrics, and the settings.

    history: one dict per epoch (the rows of metrics.csv: loss, cls, box, lr, AP, AP50, ...).
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
    resume: a run's ``last.pt``: the run goes on with its own settings (``epochs`` may extend it).
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

    started = time.monotonic()  # a --time budget counts from here: data loading and model building too
    out = reporter if reporter is not None else (LineReporter() if verbose else SilentReporter())
    resolved = train_settings.resolve({**settings}, config)
    model_cfg, loss_cfg, post_cfg, train_cfg = train_settings.build_configs(resolved, str(data))
    if resume is None:
        for note in resolved.notes:
            out.log(note)
    if resolved.values["anchors"] == "auto" and resume is None:
        from retina_cli.anchors.auto import auto_anchors

        model_cfg = auto_anchors(model_cfg, loss_cfg, train_cfg, out.log)
    if on_dataset is None:
        def on_dataset(ds: Any) -> None:
            if ds.report.problems:
                out.warn(f"{len(ds.report.problems)} problems in the dataset; `retina data info {data}` lists them")
    trainer = prepare_training(
        model_cfg, loss_cfg, post_cfg, train_cfg, resume=str(resume) if resume else None, reporter=out,
        on_dataset=on_dataset, started=started,
    )
    if trainer.dist.is_main and resume is None:
        _write_args(trainer.run_dir, resolved.values)
    if on_start is not None:
        on_start(trainer)
    try:
        result = trainer.fit()
    finally:
        dist_utils.cleanup()
    return TrainRun(
        run_dir=result.run_dir, best=result.run_dir / "best.pt", last=result.run_dir / "last.pt",
        best_ap=result.best_ap, best_ap50=result.best_ap50, epochs=result.epochs_done,
        stop_reason=result.stop_reason, settings=dict(resolved.values), history=list(trainer.history),
    )


def _write_args(run_dir: Path, values: Mapping[str, Any]) -> None:
    """args.yaml: every setting as resolved (preset included), so ``--config args.yaml`` repeats the run."""
    import yaml

    keep = {k: (str(v) if isinstance(v, Path) else v) for k, v in values.items()}
    (run_dir / "args.yaml").write_text(yaml.safe_dump(keep, sort_keys=False))

