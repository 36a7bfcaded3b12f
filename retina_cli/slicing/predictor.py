"""`SlicedPredictor`: a :class:`~retina_cli.engine.predict.Predictor` run over the windows of each image.

Per image: the windows of :func:`~retina_cli.slicing.tiles.tile_windows` are cut out (numpy views,
no copies) and go through the wrapped Predictor as images of their own, in batches, together with
the whole image when ``full_image`` is set; each window's boxes are shifted by its top-left
corner, all of them merged (:func:`~retina_cli.slicing.merge.merge_detections`) and capped at
the Predictor's ``max_det``. The score threshold and class filter are the Predictor's, applied
per window.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from retina_cli.config import PostprocessConfig
from retina_cli.engine.predict import Backend, FrameResult, Predictor
from retina_cli.engine.results import Result
from retina_cli.engine.sources import Frame
from retina_cli.engine.video import StageTimer
from retina_cli.slicing.merge import merge_detections
from retina_cli.slicing.tiles import SliceConfig, tile_windows


class SlicedPredictor:
    """BGR frames of any size -> FrameResult per frame, found window by window: a drop-in for the
    :class:`Predictor` it wraps (``__call__``, ``results``, ``names``, ``timer``, ``post_cfg``, ...).

    batch: how many windows (of all the images of one call) go through the Predictor at once.
    """

    def __init__(self, predictor: Predictor, cfg: SliceConfig, batch: int = 8) -> None:
        self.predictor = predictor
        self.cfg = cfg
        self.batch = max(1, int(batch))

    # the wrapped Predictor's settings, read through so that one object holds them
    @property
    def backend(self) -> Backend:
        return self.predictor.backend

    @property
    def post_cfg(self) -> PostprocessConfig:
        return self.predictor.post_cfg

    @property
    def size(self) -> int:
        return self.predictor.size

    @property
    def names(self) -> tuple[str, ...]:
        return self.predictor.names

    @property
    def classes(self) -> torch.Tensor | None:
        return self.predictor.classes

    @property
    def timer(self) -> StageTimer:
        return self.predictor.timer

    def results(self, frames: Sequence[Frame]) -> list[Result]:
        """Decoded frames -> one :class:`Result` per frame, as :meth:`Predictor.results` (which is
        reused: it only calls ``self(images)`` and reads ``self.names``)."""
        return Predictor.results(self, frames)  # type: ignore[arg-type]

    def passes(self, height: int, width: int) -> np.ndarray:
        """The crops one ``height x width`` image is run as -> ``(P, 4)`` int64 xyxy: the windows, then
        the whole image when ``full_image`` is set and the only window is not the image already."""
        windows = tile_windows(height, width, self.cfg.size, self.cfg.overlap)
        whole = np.array([[0, 0, width, height]], dtype=np.int64)
        if self.cfg.full_image and not (len(windows) == 1 and np.array_equal(windows, whole)):
            windows = np.concatenate([windows, whole])
        return windows

    def __call__(self, images: Sequence[np.ndarray]) -> list[FrameResult]:
        """images: ``(H_i, W_i, 3)`` uint8 BGR -> FrameResult per image, boxes ``(D, 4)`` float32 xyxy in
        the image's pixels, best score first."""
        if not images:
            return []
        crops, owners, windows = [], [], []
        for i, image in enumerate(images):
            w_i = self.passes(image.shape[0], image.shape[1])
            crops.extend(image[y1:y2, x1:x2] for x1, y1, x2, y2 in w_i.tolist())
            owners.extend([i] * len(w_i))
            windows.append(w_i)
        found: list[FrameResult] = []
        for start in range(0, len(crops), self.batch):
            found.extend(self.predictor(crops[start : start + self.batch]))
        owners_a = np.asarray(owners)
        offsets = np.concatenate(windows)[:, [0, 1, 0, 1]].astype(np.float32)  # (P, 4) each crop's corner
        out = []
        with self.timer("postprocess"):
            for i in range(len(images)):
                mine = np.flatnonzero(owners_a == i)
                if len(mine) == 1:  # one pass: the Predictor's detections are final (NMS-ed, capped)
                    out.append(found[mine[0]])
                    continue
                out.append(self._merge([found[k] for k in mine], offsets[mine]))
        return out

    def _merge(self, parts: list[FrameResult], offsets: np.ndarray) -> FrameResult:
        """Per-crop detections (crop pixels) and ``(P, 4)`` crop corners -> the image's merged FrameResult."""
        counts = [len(p.scores) for p in parts]
        boxes = np.concatenate([p.boxes for p in parts]).reshape(-1, 4) + np.repeat(offsets, counts, axis=0)  # (D, 4)
        scores = np.concatenate([p.scores for p in parts])
        labels = np.concatenate([p.labels for p in parts]).astype(np.int64)
        b, s, lab = merge_detections(torch.from_numpy(boxes), torch.from_numpy(scores), torch.from_numpy(labels),
                                     self.cfg.merge, self.cfg.merge_thresh)
        cap = self.post_cfg.max_det
        return FrameResult(b[:cap].numpy().astype(np.float32), s[:cap].numpy(), lab[:cap].numpy())
