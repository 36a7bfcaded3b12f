"""merge_detections on literal boxes (NMS and the vectorised NMM), and NMM against a greedy reference."""

import numpy as np
import pytest
import torch
from torchvision.ops import box_iou, nms

from retina_cli.boxes.ops import pairwise_ios
from retina_cli.slicing.merge import merge_detections, nmm_kept


def _t(boxes, scores, labels=None):
    labels = labels if labels is not None else [0] * len(scores)
    return torch.tensor(boxes, dtype=torch.float32), torch.tensor(scores), torch.tensor(labels, dtype=torch.int64)


def test_two_halves_cut_by_a_tile_border_and_the_full_image_box_become_one_box():
    # the full-image pass saw the object a little tight; each tile saw a part reaching its border
    boxes, scores, labels = _t([[0, 0, 60, 100], [40, 0, 100, 100], [2, 1, 98, 99]], [0.8, 0.7, 0.9])
    b, s, lab = merge_detections(boxes, scores, labels, "nmm", 0.5)
    assert torch.equal(b, torch.tensor([[0.0, 0, 100, 100]])) and torch.equal(s, torch.tensor([0.9]))
    assert torch.equal(lab, torch.tensor([0]))
    # IoU NMS at 0.5 keeps the halves: IoU(half, whole) = 5684 / (6000 + 9408 - 5684) = 0.58 and 0.58,
    # IoU(half, half) = 0.2; both halves are over 0.5 with the whole box -> suppressed too
    b, s, _ = merge_detections(boxes, scores, labels, "nms", 0.5)
    assert torch.equal(b, torch.tensor([[2.0, 1, 98, 99]])) and torch.equal(s, torch.tensor([0.9]))
    # at 0.6 NMS keeps all three, NMM still one
    assert len(merge_detections(boxes, scores, labels, "nms", 0.6)[0]) == 3
    assert len(merge_detections(boxes, scores, labels, "nmm", 0.6)[0]) == 1


def test_a_chain_merges_the_first_link_only():
    # A matches B (IoS 0.5 > 0.4), B matches C, A and C do not touch: A absorbs B, C stays on its own
    boxes, scores, labels = _t([[10, 0, 20, 10], [0, 0, 10, 10], [5, 0, 15, 10]], [0.7, 0.9, 0.8])  # C, A, B
    b, s, lab = merge_detections(boxes, scores, labels, "nmm", 0.4)
    assert torch.equal(b, torch.tensor([[0.0, 0, 15, 10], [10, 0, 20, 10]]))
    assert torch.equal(s, torch.tensor([0.9, 0.7]))


def test_a_box_matched_by_two_kept_boxes_goes_to_the_better_one_only():
    # D overlaps A and E by half of A's and E's area; A and E do not overlap
    boxes, scores, labels = _t([[0, 0, 10, 10], [20, 0, 30, 10], [5, 0, 25, 10]], [0.9, 0.8, 0.5])
    b, s, _ = merge_detections(boxes, scores, labels, "nmm", 0.4)
    assert torch.equal(b, torch.tensor([[0.0, 0, 25, 10], [20, 0, 30, 10]]))
    assert torch.equal(s, torch.tensor([0.9, 0.8]))


@pytest.mark.parametrize("method", ["nms", "nmm"])
def test_different_classes_never_merge(method):
    boxes, scores, labels = _t([[0, 0, 10, 10], [0, 0, 10, 10], [1, 1, 9, 9]], [0.6, 0.9, 0.7], [0, 1, 0])
    b, s, lab = merge_detections(boxes, scores, labels, method, 0.5)
    assert torch.equal(lab, torch.tensor([1, 0])) and torch.equal(s, torch.tensor([0.9, 0.7]))
    expected_first_class0 = [0.0, 0, 10, 10] if method == "nmm" else [1.0, 1, 9, 9]
    assert torch.equal(b, torch.tensor([[0.0, 0, 10, 10], expected_first_class0]))


@pytest.mark.parametrize("method", ["nms", "nmm"])
def test_no_detections(method):
    b, s, lab = merge_detections(torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, dtype=torch.int64), method, 0.5)
    assert b.shape == (0, 4) and s.shape == (0,) and lab.shape == (0,)


def _greedy_nmm(boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray, thresh: float):
    """SAHI's greedy_nmm, one box at a time (the reference the vectorised merge must equal)."""
    order = list(np.argsort(-scores, kind="stable"))
    ios = pairwise_ios(torch.from_numpy(boxes), torch.from_numpy(boxes)).numpy()
    out = []
    while order:
        i, rest = order[0], order[1:]
        matched = [j for j in rest if labels[j] == labels[i] and ios[i, j] > thresh]
        group = boxes[[i, *matched]]
        out.append((np.concatenate([group[:, :2].min(0), group[:, 2:].max(0)]), scores[i], labels[i]))
        order = [j for j in rest if j not in matched]
    return out


@pytest.mark.parametrize("seed", range(6))
def test_vectorised_nmm_equals_the_greedy_loop(seed):
    rng = np.random.default_rng(seed)
    n = 80
    xy = rng.uniform(0, 120, (n, 2)).astype(np.float32)
    boxes = np.concatenate([xy, xy + rng.uniform(4, 40, (n, 2)).astype(np.float32)], axis=1)
    scores = rng.permutation(n).astype(np.float32) / n + 0.01  # distinct: the order is defined
    labels = rng.integers(0, 3, n)
    thresh = float(rng.uniform(0.2, 0.7))
    b, s, lab = merge_detections(torch.from_numpy(boxes), torch.from_numpy(scores), torch.from_numpy(labels), "nmm", thresh)
    ref = _greedy_nmm(boxes, scores, labels, thresh)
    assert len(ref) < n  # something merged
    assert np.array_equal(b.numpy(), np.stack([r[0] for r in ref]))
    assert np.array_equal(s.numpy(), np.array([r[1] for r in ref])) and np.array_equal(lab.numpy(), [r[2] for r in ref])


def test_the_fixed_point_kept_set_is_greedy_nms():
    rng = np.random.default_rng(1)
    xy = torch.from_numpy(rng.uniform(0, 60, (120, 2)).astype(np.float32))
    boxes = torch.cat([xy, xy + torch.from_numpy(rng.uniform(5, 30, (120, 2)).astype(np.float32))], dim=1)
    scores = torch.from_numpy(rng.permutation(120).astype(np.float32))
    order = scores.argsort(descending=True)
    sorted_boxes = boxes[order]
    matches = torch.ones(120, 120, dtype=torch.bool).triu(1) & (box_iou(sorted_boxes, sorted_boxes) > 0.3)
    kept = order[nmm_kept(matches)]
    assert torch.equal(kept, nms(boxes, scores, 0.3))


def test_the_match_matrix_built_in_blocks_of_rows_equals_the_one_built_at_once():
    from retina_cli.slicing.merge import _matches

    rng = np.random.default_rng(2)
    xy = torch.from_numpy(rng.uniform(0, 80, (50, 2)).astype(np.float32))
    boxes = torch.cat([xy, xy + 10], dim=1)
    labels = torch.from_numpy(rng.integers(0, 2, 50))
    at_once = torch.ones(50, 50, dtype=torch.bool).triu(1) & (labels[:, None] == labels) & (pairwise_ios(boxes, boxes) > 0.3)
    assert at_once.sum() > 10
    for chunk_elems in (1, 120, 50 * 50):  # 1 row, 2 rows, all rows per block
        assert torch.equal(_matches(boxes, labels, 0.3, chunk_elems), at_once)
