"""Anchor settings fitted to a set of GT boxes: best-anchor IoU on the real grid, and a search.

The best anchor of a box at one level and one cell shape is the one whose centre lies nearest the
box centre: IoU falls as either 1-D centre distance grows, so the nearest grid centre wins in x and
y separately. Evaluating only those ``L * A`` anchors per box gives the exact best IoU over all
``R`` anchors of the image (``tests/boxes/test_anchor_search.py`` checks it against the full
``(B, R)`` IoU), cheaply enough to score thousands of candidate settings.

The search (:func:`search_anchors`): k-means seeds (1 - IoU distance, as YOLO's and keras-retinanet's
anchor tools) for ratios and scales, a sweep of a common size factor, then a seeded (1 + lambda)
evolution over per-level sizes, ratios and scales scored by coverage: the number of boxes whose
best IoU reaches ``fg_iou``, ties broken by mean best IoU. Deterministic for a given seed.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
from torch import Tensor

from retina_cli.boxes.anchors import cell_anchors, feature_sizes_for
from retina_cli.boxes.ops import cxcywh_to_xyxy, pairwise_iou, xyxy_to_cxcywh
from retina_cli.config import AnchorConfig

# search bounds: sizes relative to the level's stride, ratios (h / w), scales of the size
SIZE_BOUNDS = (1.0, 32.0)
RATIO_BOUNDS = (0.1, 10.0)
SCALE_BOUNDS = (0.5, 4.0)


def relative_to_nearest_cell(boxes: Tensor, levels: Sequence[int], img_size: int, offset: float) -> Tensor:
    """Each box shifted so that the anchor centre nearest to it, at every level, is the origin.

    boxes: ``(..., B, 4)`` xyxy network-input pixels of a square ``img_size`` input -> ``(L, ..., B, 4)``.
    IoU does not change under a common shift, so IoU with these and cell anchors centred on (0, 0)
    is IoU with the real anchors of those cells.
    """
    out = []
    for lvl, (cells, _) in zip(levels, feature_sizes_for(img_size, img_size, levels)):
        stride = float(2**lvl)
        centre = xyxy_to_cxcywh(boxes)[..., :2]  # (..., B, 2)
        index = torch.round(centre / stride - offset).clamp(min=0, max=cells - 1)
        shift = (index + offset) * stride
        out.append(boxes - torch.cat((shift, shift), dim=-1))
    return torch.stack(out)


def nearest_cell_iou(relative: Tensor, cells: Tensor) -> Tensor:
    """IoU of each box with the anchors of its nearest cell at every level, for ``C`` settings.

    relative: ``(L, ..., B, 4)`` from :func:`relative_to_nearest_cell`. cells: ``(C, L, A, 4)``
    float32 cell anchors centred on (0, 0) (see :func:`cell_anchors`). Returns ``(C, L, ..., B, A)``.
    """
    c, lvls, a = cells.shape[:3]
    return pairwise_iou(relative, cells.reshape(c, lvls, *([1] * (relative.dim() - 3)), a, 4))


def config_cells(cfg: AnchorConfig, levels: Sequence[int]) -> Tensor:
    """``(L, A, 4)`` cell anchors of every level of ``cfg``."""
    sizes = cfg.sizes_for(tuple(levels))
    return torch.stack([cell_anchors(s, cfg.ratios, cfg.scales, cfg.rounding) for s in sizes])


def best_anchor_iou(boxes: Tensor, cfg: AnchorConfig, levels: Sequence[int], img_size: int) -> Tensor:
    """Best IoU of each box ``(..., B, 4)`` (network-input xyxy) with any anchor of a square
    ``img_size`` input -> ``(..., B)`` float32."""
    if boxes.shape[-2] == 0:
        return boxes[..., 0]
    relative = relative_to_nearest_cell(boxes, levels, img_size, cfg.offset)
    return nearest_cell_iou(relative, config_cells(cfg, levels)[None])[0].amax(dim=-1).amax(dim=0)


def kmeans_iou(wh: Tensor, init: Tensor, iters: int = 30) -> Tensor:
    """k-means of box shapes ``(B, 2)`` (width, height) with distance 1 - IoU of the shapes centred
    on one point; cluster centres are medians. init: ``(k, 2)`` -> ``(k, 2)`` centres."""

    def centred(x: Tensor) -> Tensor:
        return cxcywh_to_xyxy(torch.cat((torch.zeros_like(x), x), dim=-1))

    centres = init.clone()
    boxes = centred(wh)
    for _ in range(iters):
        assign = pairwise_iou(boxes, centred(centres)).argmax(dim=1)  # (B,)
        new = centres.clone()
        for j in range(centres.shape[0]):  # k clusters, a handful
            members = wh[assign == j]
            if members.shape[0]:
                new[j] = members.median(dim=0).values
        if torch.equal(new, centres):
            break
        centres = new
    return centres


def _quantile_init(values: Tensor, k: int) -> Tensor:
    """``k`` values at the quantiles ``(j + 0.5) / k`` of ``values`` ``(B,)``."""
    q = (torch.arange(k, dtype=torch.float64) + 0.5) / k
    return torch.quantile(values.double(), q).float()


def kmeans_ratios(wh: Tensor, k: int) -> list[float]:
    """``k`` height/width ratios clustered from box shapes ``(B, 2)`` scaled to unit area."""
    r = wh[:, 1] / wh[:, 0]
    unit = torch.stack((1 / r.sqrt(), r.sqrt()), dim=1)
    r0 = _quantile_init(r, k)
    centres = kmeans_iou(unit, torch.stack((1 / r0.sqrt(), r0.sqrt()), dim=1))
    return sorted((centres[:, 1] / centres[:, 0]).tolist())


def kmeans_scales(wh: Tensor, sizes: Sequence[float], centre_scale: float, k: int) -> list[float]:
    """``k`` scales clustered from box sides ``sqrt(w * h)`` relative to the base size of the level
    whose anchors (base size x ``centre_scale``) are nearest in log size."""
    side = (wh[:, 0] * wh[:, 1]).sqrt()
    base = torch.tensor(list(sizes), dtype=torch.float32)
    level = (side[:, None].log() - (base * centre_scale).log()[None]).abs().argmin(dim=1)
    rel = side / base[level]
    r0 = _quantile_init(rel, k)
    centres = kmeans_iou(torch.stack((rel, rel), dim=1), torch.stack((r0, r0), dim=1))
    return sorted(centres[:, 0].tolist())


class _Space:
    """Candidate settings as vectors ``theta = log([sizes (L), ratios (n_r), scales (n_s)])``."""

    def __init__(self, levels: Sequence[int], n_ratios: int, n_scales: int, offset: float, rounding: bool) -> None:
        self.levels = tuple(levels)
        self.nl, self.nr, self.ns = len(self.levels), n_ratios, n_scales
        self.offset, self.rounding = offset, rounding
        strides = np.array([2.0**lvl for lvl in self.levels])
        lo = np.concatenate([np.log(strides * SIZE_BOUNDS[0]), np.full(n_ratios, math.log(RATIO_BOUNDS[0])),
                             np.full(n_scales, math.log(SCALE_BOUNDS[0]))])
        hi = np.concatenate([np.log(strides * SIZE_BOUNDS[1]), np.full(n_ratios, math.log(RATIO_BOUNDS[1])),
                             np.full(n_scales, math.log(SCALE_BOUNDS[1]))])
        self.lo, self.hi = lo, hi

    def vector(self, sizes: Sequence[float], ratios: Sequence[float], scales: Sequence[float]) -> np.ndarray:
        return np.clip(np.log(np.array([*sizes, *ratios, *scales], dtype=np.float64)), self.lo, self.hi)

    def config(self, theta: np.ndarray) -> AnchorConfig:
        v = np.exp(theta)
        sizes = v[: self.nl]
        ratios = np.sort(v[self.nl : self.nl + self.nr])
        scales = np.sort(v[self.nl + self.nr :])
        return AnchorConfig(
            sizes=tuple(round(float(s), 1) for s in sizes), ratios=tuple(round(float(r), 3) for r in ratios),
            scales=tuple(round(float(s), 3) for s in scales), offset=self.offset, rounding=self.rounding,
        )

    def cells(self, thetas: np.ndarray) -> Tensor:
        """``(C, D)`` candidates -> ``(C, L, A, 4)`` cell anchors."""
        v = np.exp(thetas)
        out = []
        for row in v:  # candidates x levels, tens of small tensors
            ratios, scales = row[self.nl : self.nl + self.nr].tolist(), row[self.nl + self.nr :].tolist()
            out.append(torch.stack([cell_anchors(s, ratios, scales, self.rounding) for s in row[: self.nl].tolist()]))
        return torch.stack(out)

    def valid(self, thetas: np.ndarray) -> np.ndarray:
        """``(C,)`` bool: sizes strictly ascending with the level (a larger stride holds larger anchors)."""
        return np.all(np.diff(thetas[:, : self.nl], axis=1) > 0, axis=1)


def coverage_score(best_iou: Tensor, fg_iou: float) -> Tensor:
    """``(..., B)`` best IoU -> ``(...)`` float64 score: boxes reaching ``fg_iou`` plus the mean best
    IoU (below 1, so one more covered box always outranks any gain in mean IoU)."""
    best = best_iou.double()
    return (best >= fg_iou).sum(dim=-1).double() + best.mean(dim=-1)


def search_anchors(
    boxes: Tensor,
    current: AnchorConfig,
    levels: Sequence[int],
    img_size: int,
    fg_iou: float = 0.5,
    num_ratios: int = 0,
    num_scales: int = 0,
    generations: int = 200,
    population: int = 8,
    max_boxes: int = 1000,
    seed: int = 0,
) -> AnchorConfig:
    """Anchor sizes (one per level), ratios and scales that cover ``boxes`` better than ``current``.

    boxes: ``(B, 4)`` float32 xyxy GT in network-input pixels of a square ``img_size`` input (ignored
    boxes already left out). num_ratios / num_scales: 0 keeps the current counts, so the head's
    anchors per location stay the same. The evolution scores a seeded sample of ``max_boxes``
    boxes (all that the current anchors cover with IoU below ``fg_iou + 0.1``, up to half of it) (about ``generations * population * max_boxes * L * A`` IoUs); the last settings it
    accepted are then scored on all boxes and the best is returned, or ``current`` when none
    scores higher on all boxes. Offset and rounding are kept.
    """
    threads = torch.get_num_threads()
    # thousands of small tensor ops: one thread is several times faster, most of all on a busy machine
    torch.set_num_threads(1)
    try:
        return _search(boxes.float().reshape(-1, 4), current, tuple(levels), img_size, fg_iou,
                       num_ratios or len(current.ratios), num_scales or len(current.scales),
                       generations, population, max_boxes, seed)
    finally:
        torch.set_num_threads(threads)


def _search(boxes: Tensor, current: AnchorConfig, levels: tuple[int, ...], img_size: int, fg_iou: float,
            nr: int, ns: int, generations: int, population: int, max_boxes: int, seed: int) -> AnchorConfig:
    if boxes.shape[0] == 0:
        return current
    rng = np.random.default_rng(seed)
    space = _Space(levels, nr, ns, current.offset, current.rounding)
    relative = relative_to_nearest_cell(boxes, levels, img_size, current.offset)  # (L, B, 4)
    sample = relative
    if boxes.shape[0] > max_boxes:
        # every box the current anchors barely cover (or miss) is in, so the sample cannot trade them away unseen
        current_iou = nearest_cell_iou(relative, config_cells(current, levels)[None])[0].amax(dim=-1).amax(dim=0)
        hard = (current_iou < fg_iou + 0.1).numpy()
        hard_idx, easy_idx = np.flatnonzero(hard), np.flatnonzero(~hard)
        if hard_idx.size > max_boxes // 2:
            hard_idx = rng.choice(hard_idx, max_boxes // 2, replace=False)
        easy_idx = rng.choice(easy_idx, min(easy_idx.size, max_boxes - hard_idx.size), replace=False)
        sample = relative[:, torch.from_numpy(np.sort(np.concatenate([hard_idx, easy_idx])))]

    def score(thetas: np.ndarray, rel: Tensor = sample) -> np.ndarray:
        """``(C, D)`` -> ``(C,)`` coverage score on ``rel``, -inf where the sizes are not ascending."""
        out = []
        for k in range(0, thetas.shape[0], population):  # bounds the (C, L, B, A) IoU tensor
            best_iou = nearest_cell_iou(rel, space.cells(thetas[k : k + population])).amax(dim=-1).amax(dim=1)
            out.append(coverage_score(best_iou, fg_iou).numpy())  # (C,) from (C, B)
        return np.where(space.valid(thetas), np.concatenate(out), -np.inf)

    wh = xyxy_to_cxcywh(boxes)[:, 2:].clamp(min=1e-3)
    sizes = current.sizes_for(levels)
    k_ratios = kmeans_ratios(wh, nr)
    k_scales = kmeans_scales(wh, sizes, math.sqrt(max(current.scales) * min(current.scales)), ns)
    seeds = [(sizes, k_ratios, k_scales)]
    if ns == len(current.scales):
        seeds.append((sizes, k_ratios, current.scales))
    factors = 2.0 ** (np.arange(-12, 13) / 6)  # a common size factor, 1/4x..4x in sixth-octave steps
    thetas = [space.vector(np.array(s) * f, r, sc) for s, r, sc in seeds for f in factors]
    start = space.vector(sizes, current.ratios, current.scales) if (nr, ns) == (len(current.ratios), len(current.scales)) else None
    if start is not None:
        thetas.append(start)
    thetas = np.stack(thetas)
    scores = score(thetas)
    best_theta, best = thetas[int(np.argmax(scores))], float(scores.max())

    # (1 + lambda) evolution: mutate a few parameters in log space, keep the best child if it is better
    accepted = [best_theta]
    dims = best_theta.size
    for sigma in np.geomspace(0.2, 0.02, generations):
        mask = rng.random((population, dims)) < 0.3
        mask[np.arange(population), rng.integers(0, dims, population)] = True
        children = np.clip(best_theta + mask * rng.normal(0.0, sigma, (population, dims)), space.lo, space.hi)
        child_scores = score(children)
        k = int(np.argmax(child_scores))
        if child_scores[k] > best:
            best_theta, best = children[k], float(child_scores[k])
            accepted.append(best_theta)

    # levels whose size does not matter to these boxes go back to the current size
    for lvl in range(space.nl):
        trial = best_theta.copy()
        trial[lvl] = math.log(sizes[lvl])
        trial_score = float(score(trial[None])[0])
        if trial_score >= best:
            best_theta, best = trial, trial_score
    accepted.append(best_theta)

    # the sample can flatter a setting: the final choice is made on every box, in printed precision
    finalists = [space.config(t) for t in accepted[-2 * population :]]
    final_scores = score(np.stack([space.vector(c.sizes, c.ratios, c.scales) for c in finalists]), relative)
    k = int(np.argmax(final_scores))
    if start is not None and final_scores[k] <= float(score(start[None], relative)[0]):
        return current
    return finalists[k]
