"""Where a training run's wall time went: start-up, training steps, waiting for data, validation,
checkpoints, and the rest (logging, curves, the report).

``retina train`` prints it when the run ends, and :class:`~retina_cli.api.training.TrainRun`
carries it, so a user (and a benchmark) sees what a faster step would buy before tuning it.

Light module: no torch import.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# phase -> how the summary names it, in the order the summary lists them
PHASES = {
    "steps": "training steps",
    "data": "waiting for data",
    "validation": "validation",
    "checkpoints": "checkpoints",
    "start-up": "start-up",
}


@dataclass
class TimeSplit:
    """Seconds per phase of one process's run (a resumed run: this process's share alone)."""

    seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(PHASES, 0.0))
    total: float = 0.0  # the run's wall time; what the phases leave of it is "other"

    def add(self, phase: str, seconds: float) -> None:
        if phase not in PHASES:
            raise KeyError(f"unknown phase {phase!r}; one of {', '.join(PHASES)}")
        self.seconds[phase] += max(seconds, 0.0)

    @property
    def other(self) -> float:
        return max(self.total - sum(self.seconds.values()), 0.0)

    def as_dict(self) -> dict[str, float]:
        """``{phase: seconds, ..., "other": s, "total": s}``, rounded to milliseconds."""
        return {**{k: round(v, 3) for k, v in self.seconds.items()}, "other": round(self.other, 3), "total": round(self.total, 3)}

    def summary(self) -> str:
        """One line: ``time 29.6 min: training steps 25.1 min (85%), waiting for data 0.3 min (1%), ...``."""
        total = max(self.total, 1e-9)
        parts = [(PHASES[k], v) for k, v in self.seconds.items()] + [("other", self.other)]
        listed = ", ".join(f"{name} {_minutes(v)} ({100 * v / total:.0f}%)" for name, v in parts)
        return f"time {_minutes(self.total)}: {listed}"


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.1f} s"
