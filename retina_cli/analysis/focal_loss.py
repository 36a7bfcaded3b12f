"""Where the focal loss comes from: the RetinaNet paper's Figure 4 for a trained model on a dataset.

A trained model runs over images of a split; every anchor is labelled with the trainer's own
target assignment (:func:`retina_cli.losses.assign_targets`), and the focal loss of two sets of
examples is computed for several gammas:

- positives: one entry per foreground anchor, its matched GT class (target 1);
- negatives: every class entry of every background anchor (target 0).

Ignored anchors (IoU between the two thresholds, or matched to an ignored GT) are in neither set,
and neither are the non-GT class entries of foreground anchors (the training loss counts those as
negatives too, but the paper's figure is about foreground versus background examples).

Each set's losses are normalised to sum to 1, sorted ascending and accumulated: the curve at x is
the share of the set's loss carried by its easiest fraction x of examples. Alpha scales a whole set
by one constant, so it cancels in these curves; it matters only for ``neg_loss_share`` (how much of
positives + negatives is negative loss).

Memory: logits are gathered per batch and kept on the CPU as one float32 per example, never as
``(N, R, K)`` losses per gamma. With more negatives than ``max_negatives`` each is kept with the same
probability ``q`` (a seeded Bernoulli draw), so the kept ones are a uniform sample of all of them:
the curves and shares estimate the full set's, and totals are scaled by ``1 / q``. Positives are
few and always all kept.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import torch
from torch import Tensor

from retina_cli.boxes.matcher import BACKGROUND
from retina_cli.config import LossConfig
from retina_cli.engine.detector import DenseDetector
from retina_cli.engine.reporting import Reporter, SilentReporter
from retina_cli.losses import assign_targets, sigmoid_focal_loss
from retina_cli.model.retinanet import RetinaNet

HARDEST = (0.01, 0.10)


@dataclass(frozen=True)
class SampledLogits:
    """Classifier logits of the examples of :func:`collect_logits`.

    positive: ``(P,)`` float32, every positive example. negative: ``(Q,)`` float32, the kept
    negatives. num_negatives: all negatives seen (``Q`` is about ``keep_prob * num_negatives``).
    """

    positive: Tensor
    negative: Tensor
    num_negatives: int
    keep_prob: float
    images: int


@dataclass(frozen=True)
class LossDistribution:
    """The focal loss of one set of examples at one gamma.

    count: examples the numbers come from. mean_loss: their mean focal loss (alpha included).
    hardest: fraction f -> share of the set's loss carried by its hardest ``ceil(f * count)``
    examples (empty for an empty set). fraction, cumulative: ``(points,)`` float64, the curve
    from (0, 0) to (1, 1): cumulative normalised loss of the easiest ``fraction`` of examples.
    """

    count: int
    mean_loss: float
    hardest: dict[float, float]
    fraction: np.ndarray
    cumulative: np.ndarray

    def to_dict(self) -> dict[str, Any]:
        return {
            "count": self.count, "mean_loss": self.mean_loss,
            "hardest_share": {f"{f:g}": v for f, v in self.hardest.items()},
            "curve": {"fraction": self.fraction.round(6).tolist(), "cumulative": self.cumulative.round(6).tolist()},
        }


@dataclass(frozen=True)
class GammaResult:
    """Both sets at one gamma. neg_loss_share: estimated total negative loss over the total of both."""

    gamma: float
    positive: LossDistribution
    negative: LossDistribution
    neg_loss_share: float


@dataclass(frozen=True)
class LossAnalysis:
    alpha: float
    images: int
    num_positives: int
    num_negatives: int
    sampled_negatives: int
    results: list[GammaResult]

    def to_dict(self) -> dict[str, Any]:
        return {
            "alpha": self.alpha, "images": self.images, "num_positives": self.num_positives,
            "num_negatives": self.num_negatives, "sampled_negatives": self.sampled_negatives,
            "gammas": [
                {"gamma": r.gamma, "neg_loss_share": r.neg_loss_share,
                 "positive": r.positive.to_dict(), "negative": r.negative.to_dict()}
                for r in self.results
            ],
        }


def loss_distribution(losses: Tensor, fractions: Sequence[float] = HARDEST, points: int = 201) -> LossDistribution:
    """Per-example losses ``(M,)`` -> sorted cumulative curve and hardest-fraction shares.

    The curve is subsampled to at most ``points`` points (plus the origin); its last point is
    exactly (1, 1) whenever the losses do not all vanish.
    """
    m = int(losses.numel())
    if m == 0:
        return LossDistribution(0, 0.0, {}, np.zeros(1), np.zeros(1))
    cum = torch.sort(losses.double().flatten()).values.cumsum(0)  # ascending: easiest first
    total = cum[-1]
    # the last cumsum element as the total, so the curve ends at exactly 1
    normalised = cum / total if total > 0 else torch.zeros_like(cum)
    hardest = {}
    for f in fractions:
        k = min(m, max(1, math.ceil(f * m - 1e-9)))  # the -1e-9: 0.1 * 30 is 3.0000000000000004
        rest = cum[m - k - 1] if m - k > 0 else cum.new_zeros(())
        hardest[float(f)] = float((total - rest) / total) if total > 0 else 0.0
    idx = torch.unique(torch.linspace(0, m - 1, min(points, m)).round().long())
    fraction = np.concatenate([[0.0], ((idx + 1).double() / m).numpy()])
    cumulative = np.concatenate([[0.0], normalised[idx].numpy()])
    return LossDistribution(m, float(total / m), hardest, fraction, cumulative)


def analyze(
    logits: SampledLogits, gammas: Sequence[float], alpha: float, fractions: Sequence[float] = HARDEST, points: int = 201,
) -> LossAnalysis:
    """Focal losses of the sampled examples at each gamma -> :class:`LossAnalysis`."""
    results = []
    for gamma in gammas:
        pos = sigmoid_focal_loss(logits.positive, torch.ones_like(logits.positive), gamma, alpha)
        neg = sigmoid_focal_loss(logits.negative, torch.zeros_like(logits.negative), gamma, alpha)
        neg_total = neg.double().sum().item() / logits.keep_prob
        pos_total = pos.double().sum().item()
        share = neg_total / (neg_total + pos_total) if neg_total + pos_total > 0 else 0.0
        results.append(GammaResult(float(gamma), loss_distribution(pos, fractions, points),
                                   loss_distribution(neg, fractions, points), share))
    return LossAnalysis(alpha, logits.images, int(logits.positive.numel()), logits.num_negatives,
                        int(logits.negative.numel()), results)


@torch.inference_mode()
def collect_logits(
    model: RetinaNet, loader: Iterable, loss_cfg: LossConfig, device: torch.device, num_images: int,
    max_negatives: int = 10_000_000, seed: int = 0, progress: Callable[[int], None] | None = None,
) -> SampledLogits:
    """Run ``model`` over ``loader`` (``(images, targets, metas)`` batches, see
    :func:`retina_cli.data.loader.collate`) and gather the logits of positives and negatives.

    num_images: images the loader yields, to set the negatives' keep probability
    ``q = min(1, max_negatives / (num_images * R * K))`` before the first one is drawn.
    """
    model.eval()
    detector = DenseDetector(model).to(device)
    k = model.cfg.num_classes
    gen = torch.Generator().manual_seed(seed)
    positives: list[Tensor] = []
    negatives: list[Tensor] = []
    num_negatives = 0
    keep_prob = 1.0
    seen = 0
    for images, targets, _metas in loader:
        images = images.to(device).float()
        targets = targets.to(device)
        cls_logits, _box_deltas, anchors = detector.dense(*detector.raw_outputs(images))  # (N, R, K), (R, 4)
        cls_logits = cls_logits.float()
        assigned = assign_targets(anchors, targets.boxes, targets.labels, targets.valid, loss_cfg, k, targets.ignore)
        if seen == 0:
            keep_prob = min(1.0, max_negatives / max(num_images * anchors.shape[0] * k, 1))
        positives.append(cls_logits[assigned.cls_targets.bool()].cpu())  # (F,): each fg anchor's GT class
        neg = cls_logits[assigned.state == BACKGROUND].flatten().cpu()  # (B * K,)
        num_negatives += neg.numel()
        if keep_prob < 1.0:
            neg = neg[torch.rand(neg.numel(), generator=gen) < keep_prob]
        negatives.append(neg)
        seen += images.shape[0]
        if progress is not None:
            progress(images.shape[0])
    return SampledLogits(torch.cat(positives) if positives else torch.zeros(0),
                         torch.cat(negatives) if negatives else torch.zeros(0), num_negatives, keep_prob, seen)


def run_loss_analysis(
    checkpoint: Path, data: str, split: str = "train", data_format: str = "auto", max_images: int = 100,
    img_size: int | None = None, gammas: Sequence[float] = (0.0, 0.5, 1.0, 2.0), alpha: float | None = None,
    max_negatives: int = 10_000_000, seed: int = 0, batch_size: int = 4, workers: int = 2, device: str = "auto",
    out: Path | None = None, project: str = "runs/analyze", name: str = "", progress: Reporter | None = None,
) -> tuple[LossAnalysis, Path]:
    """Load, collect, analyse; write the plot to ``out`` (default ``<project>/exp*/loss_cdf.png``)
    and the numbers and curves next to it as JSON. Returns the analysis and the PNG's path."""
    from retina_cli.data import load_dataset
    from retina_cli.data.loader import make_loader
    from retina_cli.engine.runs import absent_folders, discard_on_failure, next_run_dir, output_file
    from retina_cli.engine.checkpoint import configs_from_checkpoint, model_from_checkpoint
    from retina_cli.engine.distributed import select_device
    from retina_cli.engine.evaluation_run import align_classes
    from retina_cli.errors import ConfigError, DataError

    if max_images < 1 or max_negatives < 1:
        raise ConfigError("--max-images and --max-negatives must be at least 1")
    # the output folder is made and probed before any work; a run refused afterwards takes it back
    absent = absent_folders(Path(out).parent if out is not None else project)
    png = output_file(out) if out is not None else next_run_dir(Path(project), name or None) / "loss_cdf.png"
    with discard_on_failure(png.parent, fresh=out is None, made=absent):
        model, ckpt = model_from_checkpoint(checkpoint)
        model_cfg, loss_cfg, _ = configs_from_checkpoint(ckpt)
        if img_size:
            model_cfg = replace(model_cfg, img_size=img_size)  # validates the size against the top stride
        alpha = loss_cfg.alpha if alpha is None else alpha
        dataset = load_dataset(data, data_format)
        if not dataset.splits.get(split):
            raise DataError(f"{data}: no images in split {split!r} (splits: {', '.join(k for k, v in dataset.splits.items() if v)})")
        records = align_classes(dataset.splits[split], dataset.class_names, model_cfg.class_names, data)[:max_images]
        dev = select_device(device)
        loader = make_loader(records, model_cfg.img_size, batch_size, train=False, workers=workers)
        model = model.to(dev)
        progress = progress or SilentReporter()
        progress.start(f"focal loss over {split}", len(records))
        try:
            logits = collect_logits(model, loader, loss_cfg, dev, len(records), max_negatives, seed,
                                    lambda n: progress.advance(n))
        finally:
            progress.stop()
        analysis = analyze(logits, gammas, alpha)

        payload = {"checkpoint": str(checkpoint), "data": str(data), "split": split, "img_size": model_cfg.img_size,
                   "seed": seed, **analysis.to_dict()}
        png.with_suffix(".json").write_text(json.dumps(payload, indent=2))
        try:
            from retina_cli.drawing.plots import plot_cumulative_loss
        except ImportError as exc:
            raise ConfigError("analyze-loss draws with matplotlib: pip install 'retina-cli[plots]'") from exc
        panels = {
            f"positives ({analysis.num_positives:,} foreground anchors)": [
                (f"γ = {r.gamma:g}", r.positive.fraction, r.positive.cumulative) for r in analysis.results],
            f"negatives ({analysis.sampled_negatives:,} background entries)": [
                (f"γ = {r.gamma:g}", r.negative.fraction, r.negative.cumulative) for r in analysis.results],
        }
        plot_cumulative_loss(panels, png)
        return analysis, png
