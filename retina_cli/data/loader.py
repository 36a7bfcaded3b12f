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
from retina_cli.data.transforms import (
    PAD_VALUE, AugmentConfig, LetterboxMeta, augment, boxes_to_letterbox, crop_boxes, letterbox, rect_shape,
)
from retina_cli.data.images import read_image

__all__ = ["AugmentConfig", "DetectionTorchDataset", "EpochSampler", "Sample", "SampleMeta", "ShapeBatchSampler", "collate", "make_loader"]


@dataclass(frozen=True)
class SampleMeta(LetterboxMeta):
    """A :class:`LetterboxMeta` with the image it belongs to. ``hflip``: the network input was
    mirrored after the letterbox map (training only), about the canvas's own width ``W_c =
    meta.shape[1]``: undo it with ``x -> W_c - x`` first. ``index``: position of the record in the
    dataset's record list."""

    path: Path = Path()
    index: int = -1
    hflip: bool = False

    @property
    def letterbox(self) -> LetterboxMeta:
        return LetterboxMeta(self.scale, self.pad_x, self.pad_y, self.orig_w, self.orig_h, self.size, self.canvas)


class Sample(NamedTuple):
    """image ``(3, S, S)`` uint8 (``(3, H_c, W_c)`` with a rectangular canvas); boxes ``(n, 4)`` float32 network pixels; labels ``(n,)`` int64;
    ignore ``(n,)`` bool; meta."""

    image: Tensor
    boxes: Tensor
    labels: Tensor
    ignore: Tensor
    meta: SampleMeta


class DetectionTorchDataset(Dataset):
    """Image records -> :class:`Sample`.

    augment None: plain centred letterbox (evaluation, prediction). Otherwise the random
    transform of :func:`retina_cli.data.transforms.augment`. Either way ``rect_stride`` puts the
    image on its own rectangle (:func:`~retina_cli.data.transforms.rect_shape`: 512 x 384 for a 4:3
    photo at 512 with P6, a quarter fewer pixels than the square), None on ``img_size x img_size``.
    The augmentation is drawn from an RNG seeded by
    ``(seed, epoch, index)`` alone: an item is ``(epoch, index)`` (see :class:`EpochSampler`), so
    the stream is the same with any number of workers, in any order, and after a resume.
    """

    def __init__(
        self, records: Sequence[ImageRecord], img_size: int, augment: AugmentConfig | None = None, seed: int = 0,
        rect_stride: int | None = None,
    ) -> None:
        self.records = list(records)
        self.rect_stride = rect_stride
        self.img_size = img_size
        self.augment = augment
        self.seed = seed

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, item: int | tuple[int, int]) -> Sample:
        epoch, index = item if isinstance(item, tuple) else (0, item)
        rec = self.records[index]
        image = read_image(rec.path)
        boxes, labels, ignore = rec.boxes, rec.labels, rec.ignore
        h, w = image.shape[:2]
        if (w, h) != (rec.width, rec.height) and rec.width and rec.height:
            # the file changed size since the labels were made; scale the boxes along
            boxes = boxes * np.array([w / rec.width, h / rec.height] * 2, np.float32)
        flipped = False
        shape = rect_shape(w, h, self.img_size, self.rect_stride) if self.rect_stride else None
        if self.augment is None:
            canvas, lb = letterbox(image, self.img_size, shape)
            net = boxes_to_letterbox(boxes.astype(np.float32), lb)
            net, labels, ignore = crop_boxes(net, lb.shape, labels, ignore)
        else:
            rng = np.random.default_rng((self.seed, epoch, index))
            canvas, net, lb, flipped, keep = augment(image, boxes, self.img_size, self.augment, rng, shape)
            labels, ignore = labels[keep], ignore[keep]
        meta = SampleMeta(lb.scale, lb.pad_x, lb.pad_y, lb.orig_w, lb.orig_h, lb.size, lb.canvas, path=rec.path,
                          index=index, hflip=flipped)
        return Sample(
            torch.from_numpy(np.ascontiguousarray(canvas.transpose(2, 0, 1))),
            torch.from_numpy(np.ascontiguousarray(net, dtype=np.float32)).reshape(-1, 4),
            torch.from_numpy(np.asarray(labels, np.int64)),
            torch.from_numpy(np.asarray(ignore, bool)),
            meta,
        )


def collate(samples: Sequence[Sample]) -> tuple[Tensor, BatchTargets, list[SampleMeta]]:
    """-> images ``(N, 3, S, S)`` uint8, padded targets (boxes in network pixels), per-image metas.

    Rectangular canvases of different shapes are padded (grey, at the bottom and right, so every
    meta's map still holds) to the largest height and width of the batch.
    """
    h = max(s.image.shape[1] for s in samples)
    w = max(s.image.shape[2] for s in samples)
    images = torch.stack([
        s.image if s.image.shape[1:] == (h, w)
        else torch.nn.functional.pad(s.image, (0, w - s.image.shape[2], 0, h - s.image.shape[1]), value=PAD_VALUE)
        for s in samples
    ])
    targets = pad_targets([s.boxes for s in samples], [s.labels for s in samples], [s.ignore for s in samples])
    return images, targets, [s.meta for s in samples]


class EpochSampler(Sampler):
    """Yields ``(epoch, index)`` pairs: the order of ``inner`` (e.g. a DistributedSampler) or, without
    one, a shuffle that is a function of ``(seed, epoch)`` alone. Call :meth:`set_epoch` each epoch.

    ``skip`` leaves out the first items of the epoch's order: a run resumed in the middle of an
    epoch goes on with the next batch, and the images it already trained on are never loaded.
    """

    def __init__(self, num_items: int, inner: Sampler | None = None, shuffle: bool = True, seed: int = 0) -> None:
        self.num_items = num_items
        self.inner = inner
        self.shuffle = shuffle
        self.seed = seed
        self.epoch = 0
        self.skip = 0

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        """Next iteration: the order of ``epoch``, without its first ``skip`` items."""
        self.epoch = epoch
        self.skip = skip
        if hasattr(self.inner, "set_epoch"):
            self.inner.set_epoch(epoch)

    def __iter__(self):
        if self.inner is not None:
            order = list(self.inner)
        elif self.shuffle:
            g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
            order = torch.randperm(self.num_items, generator=g).tolist()
        else:
            order = list(range(self.num_items))
        return iter([(self.epoch, i) for i in order[self.skip:]])

    def __len__(self) -> int:
        full = len(self.inner) if self.inner is not None else self.num_items
        return max(full - self.skip, 0)


class ShapeBatchSampler(Sampler):
    """Evaluation batches of record indices whose images share one rectangular canvas
    (:func:`~retina_cli.data.transforms.rect_shape` of the record's size), in record order within a
    shape: no image is padded for another's sake, so its detections do not depend on the batch."""

    def __init__(self, records: Sequence[ImageRecord], img_size: int, stride: int, batch_size: int) -> None:
        groups: dict[tuple[int, int], list[int]] = {}
        for i, r in enumerate(records):
            key = rect_shape(r.width, r.height, img_size, stride) if r.width and r.height else (img_size, img_size)
            groups.setdefault(key, []).append(i)
        self.batches = [idx[k : k + batch_size] for idx in groups.values() for k in range(0, len(idx), batch_size)]

    def __iter__(self):
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


def make_loader(
    records: Sequence[ImageRecord],
    img_size: int,
    batch_size: int,
    train: bool,
    workers: int = 0,
    augment: AugmentConfig | None = None,
    sampler: Sampler | None = None,
    seed: int = 0,
    rect_stride: int | None = None,
) -> DataLoader:
    """A DataLoader yielding :func:`collate` batches.

    train: shuffled by an :class:`EpochSampler` (wrapping ``sampler`` when given; call
    ``loader.sampler.set_epoch(epoch)`` every epoch) and augmented with ``augment`` (default
    ``AugmentConfig()``; pass ``AugmentConfig.off()`` for none). Not train: fixed order, plain
    letterbox, in batches of one canvas shape with ``rect_stride``. ``rect_stride``: every image on
    its own rectangle (see :class:`DetectionTorchDataset`); a training batch of several shapes is
    padded to the largest (:func:`collate`). ``seed`` fixes the shuffle order and the augmentation stream.
    """
    aug = (augment or AugmentConfig()) if train else None
    dataset = DetectionTorchDataset(records, img_size, aug, seed=seed, rect_stride=rect_stride)
    common = dict(num_workers=workers, collate_fn=collate, persistent_workers=workers > 0, pin_memory=torch.cuda.is_available())
    if not train and rect_stride and sampler is None:
        # batches of one canvas shape each, out of record order: evaluation maps results by SampleMeta.index
        return DataLoader(dataset, batch_sampler=ShapeBatchSampler(records, img_size, rect_stride, batch_size), **common)
    epoch_sampler = EpochSampler(len(records), sampler, shuffle=True, seed=seed) if train else sampler
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=False,
        sampler=epoch_sampler,
        num_workers=workers,
        collate_fn=collate,
        persistent_workers=workers > 0,
        pin_memory=torch.cuda.is_available(),
    )
