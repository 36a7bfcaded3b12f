"""Records -> torch samples -> padded batches: the data side of training and evaluation.

A sample is the letterboxed (optionally augmented) image, its boxes in network-input pixels and
a :class:`SampleMeta` that maps predictions back to the original image exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple, Sequence

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler

from retina_cli.data.batch import BatchTargets, pad_targets
from retina_cli.data.records import ImageRecord
from retina_cli.data.transforms import AugmentConfig, LetterboxMeta, augment, boxes_to_letterbox, crop_boxes, letterbox
from retina_cli.data.images import read_image

__all__ = ["AugmentConfig", "DetectionTorchDataset", "Sample", "SampleMeta", "collate", "make_loader"]


@dataclass(frozen=True)
class SampleMeta(LetterboxMeta):
    """A :class:`LetterboxMeta` with the image it belongs to. ``hflip``: the network input was
    mirrored after the letterbox map (training only; undo with ``x -> size - x`` first).
    ``index``: position of the record in the dataset's record list."""

    path: Path = Path()
    index: int = -1
    hflip: bool = False

    @property
    def letterbox(self) -> LetterboxMeta:
        return LetterboxMeta(self.scale, self.pad_x, self.pad_y, self.orig_w, self.orig_h, self.size)


class Sample(NamedTuple):
    """image ``(3, S, S)`` uint8; boxes ``(n, 4)`` float32 network pixels; labels ``(n,)`` int64;
    ignore ``(n,)`` bool; meta."""

    image: Tensor
    boxes: Tensor
    labels: Tensor
    ignore: Tensor
    meta: SampleMeta


class DetectionTorchDataset(Dataset):
    """Image records -> :class:`Sample`.

    augment None: plain centred letterbox (evaluation, prediction). Otherwise the random
    transform of :func:`retina_cli.data.transforms.augment`, drawn from the dataset's own RNG
    (``seed``); DataLoader workers reseed it from their worker seed (see :func:`make_loader`), so
    the stream is reproducible with and without workers.
    """

    def __init__(
        self, records: Sequence[ImageRecord], img_size: int, augment: AugmentConfig | None = None, seed: int = 0
    ) -> None:
        self.records = list(records)
        self.img_size = img_size
        self.augment = augment
        self.rng = np.random.default_rng(seed)

    def reseed(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> Sample:
        rec = self.records[index]
        image = read_image(rec.path)
        boxes, labels, ignore = rec.boxes, rec.labels, rec.ignore
        h, w = image.shape[:2]
        if (w, h) != (rec.width, rec.height) and rec.width and rec.height:
            # the file changed size since the labels were made; scale the boxes along
            boxes = boxes * np.array([w / rec.width, h / rec.height] * 2, np.float32)
        flipped = False
        if self.augment is None:
            canvas, lb = letterbox(image, self.img_size)
            net = boxes_to_letterbox(boxes.astype(np.float32), lb)
            net, labels, ignore = crop_boxes(net, self.img_size, labels, ignore)
        else:
            canvas, net, lb, flipped, keep = augment(image, boxes, self.img_size, self.augment, self.rng)
            labels, ignore = labels[keep], ignore[keep]
        meta = SampleMeta(lb.scale, lb.pad_x, lb.pad_y, lb.orig_w, lb.orig_h, lb.size, path=rec.path, index=index, hflip=flipped)
        return Sample(
            torch.from_numpy(np.ascontiguousarray(canvas.transpose(2, 0, 1))),
            torch.from_numpy(np.ascontiguousarray(net, dtype=np.float32)).reshape(-1, 4),
            torch.from_numpy(np.asarray(labels, np.int64)),
            torch.from_numpy(np.asarray(ignore, bool)),
            meta,
        )


def collate(samples: Sequence[Sample]) -> tuple[Tensor, BatchTargets, list[SampleMeta]]:
    """-> images ``(N, 3, S, S)`` uint8, padded targets (boxes in network pixels), per-image metas."""
    images = torch.stack([s.image for s in samples])
    targets = pad_targets([s.boxes for s in samples], [s.labels for s in samples], [s.ignore for s in samples])
    return images, targets, [s.meta for s in samples]


def make_loader(
    records: Sequence[ImageRecord],
    img_size: int,
    batch_size: int,
    train: bool,
    workers: int = 0,
    augment: AugmentConfig | None = None,
    sampler: Sampler | None = None,
    seed: int = 0,
) -> DataLoader:
    """A DataLoader yielding :func:`collate` batches.

    train: shuffle (unless ``sampler`` is given) and augment with ``augment`` (default
    ``AugmentConfig()``; pass ``AugmentConfig.off()`` for none). Not train: fixed order, plain
    letterbox. ``seed`` fixes the shuffle order and the augmentation stream.
    """
    aug = (augment or AugmentConfig()) if train else None
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(
        DetectionTorchDataset(records, img_size, aug, seed=seed),
        batch_size=batch_size,
        shuffle=train and sampler is None,
        sampler=sampler,
        num_workers=workers,
        collate_fn=collate,
        generator=generator,
        persistent_workers=workers > 0,
        worker_init_fn=_reseed_worker if workers > 0 else None,
        pin_memory=False,
    )


def _reseed_worker(worker_id: int) -> None:
    # each worker holds a copy of the dataset; give each its own stream, fixed by the loader's generator
    info = torch.utils.data.get_worker_info()
    info.dataset.reseed(info.seed)  # type: ignore[union-attr]
