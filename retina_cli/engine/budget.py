"""A wall-clock training budget (``retina train --time MINUTES``) -> how many iterations fit.

The clock starts when the run is prepared, so loading the data and building the model count.
The estimate comes from the measured iterations (median of the recent ones, the first one of the
run left out: it pays for worker start-up) plus what each epoch costs besides them (validation,
checkpoints), and keeps back what the end of the run needs (the last validation, last.pt and
best.pt), so those are written before the budget runs out. It is corrected at every iteration.
"""

from __future__ import annotations

import math
import statistics
import time
from collections import deque
from typing import Callable

# before the first validation is measured, one validation image is taken to cost this share of
# one training image (a forward pass without backward, plus COCOeval); measured values replace it
VAL_IMAGE_SHARE = 0.5


class TimeBudget:
    """Seconds for a run -> the iterations that fit; ``clock`` is injectable for tests.

    spent: seconds used before this process (a resumed run goes on with the rest of its budget).
    """

    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic, spent: float = 0.0,
                 window: int = 50) -> None:
        self.seconds = float(seconds)
        self.clock = clock
        self.t0 = clock() - spent
        self.steps: deque[float] = deque(maxlen=window)
        self.steps_seen = 0
        self.val_seconds_per_image: float | None = None
        self.save_seconds = 0.0

    # ------------------------------------------------------------------ observations
    def elapsed(self) -> float:
        return self.clock() - self.t0

    def remaining(self) -> float:
        return self.seconds - self.elapsed()

    def record_step(self, seconds: float) -> None:
        self.steps_seen += 1
        if self.steps_seen > 1 or seconds <= 0:  # the very first step pays for start-up
            self.steps.append(seconds)

    def record_validation(self, seconds: float, images: int) -> None:
        per_image = seconds / max(images, 1)
        self.val_seconds_per_image = max(per_image, self.val_seconds_per_image or 0.0)

    def record_save(self, seconds: float) -> None:
        self.save_seconds = max(self.save_seconds, seconds)

    # ------------------------------------------------------------------ estimates
    def seconds_per_step(self) -> float | None:
        return statistics.median(self.steps) if self.steps else None

    def validation_seconds(self, val_images: int, batch_size: int) -> float:
        per_image = self.val_seconds_per_image
        if per_image is None:
            step = self.seconds_per_step() or 0.0
            per_image = VAL_IMAGE_SHARE * step / max(batch_size, 1)
        return per_image * val_images

    def reserve(self, val_images: int, batch_size: int) -> float:
        """What the end of the run needs: a validation, last.pt and best.pt, and a margin."""
        margin = max(3.0, 0.01 * self.seconds)
        return self.validation_seconds(val_images, batch_size) + 2 * self.save_seconds + margin

    def iterations_left(self, iters_per_epoch: int, val_images: int, val_interval: int, batch_size: int) -> int | None:
        """Iterations that still fit, or None while no step has been measured."""
        step = self.seconds_per_step()
        if step is None:
            return None
        # per iteration: the step itself plus its share of each epoch's validation and checkpoint
        per_epoch_extra = self.validation_seconds(val_images, batch_size) / max(val_interval, 1) + self.save_seconds
        per_iter = step + per_epoch_extra / max(iters_per_epoch, 1)
        left = self.remaining() - self.reserve(val_images, batch_size)
        return max(int(math.floor(left / per_iter)), 0) if per_iter > 0 else 0

    def exhausted(self, val_images: int, batch_size: int) -> bool:
        """True once only the end-of-run reserve is left."""
        return self.remaining() <= self.reserve(val_images, batch_size)
