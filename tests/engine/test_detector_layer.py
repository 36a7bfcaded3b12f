"""The detector layer: normalisation, anchors from feature sizes and level flattening in one place."""

import torch
from helpers import make_model

from retina_cli.boxes.anchors import generate_anchors
from retina_cli.config import LossConfig
from retina_cli.engine.detector import DecodingDetector, DenseDetector, InferenceModel, TrainingModel
from retina_cli.export.graph import DecodingDetector as ExportedDecodingDetector


def _images() -> torch.Tensor:
    # 128 high, 96 wide: levels 3-5 give (16, 12), (8, 6), (4, 3) maps, so H and W cannot be swapped
    return torch.rand(2, 3, 128, 96, generator=torch.Generator().manual_seed(0)) * 255


def test_dense_outputs_line_up_logits_deltas_and_anchors():
    model = make_model()
    det = DenseDetector(model)
    x = _images()
    with torch.no_grad():
        cls_out, box_out = det.raw_outputs(x)
        mean, std = torch.tensor(model.cfg.mean).view(1, 3, 1, 1), torch.tensor(model.cfg.std).view(1, 3, 1, 1)
        ref_cls, _ = model((x / 255.0 - mean) / std)
    torch.testing.assert_close(cls_out, ref_cls, rtol=0, atol=0)

    cls_logits, box_deltas, anchors = det.dense(cls_out, box_out)
    # R = (16*12 + 8*6 + 4*3) cells * 9 anchors (3 ratios x 3 scales) = 252 * 9
    assert cls_logits.shape == (2, 2268, 3) and box_deltas.shape == (2, 2268, 4) and anchors.shape == (2268, 4)
    expected = torch.cat(generate_anchors(model.cfg.anchors, model.cfg.levels, [(16, 12), (8, 6), (4, 3)]))
    torch.testing.assert_close(anchors, expected, rtol=0, atol=0)

    # level 3, cell (y=0, x=0), anchor 0 is the first row; its class logits come from channels 0..K-1 there
    torch.testing.assert_close(cls_logits[:, 0], cls_out[0][:, :3, 0, 0], rtol=0, atol=0)
    # the per-level pieces are the same numbers as the concatenation
    per_cls, per_box, per_anchors = det.dense_levels(cls_out, box_out)
    assert [a.shape[0] for a in per_anchors] == [16 * 12 * 9, 8 * 6 * 9, 4 * 3 * 9]
    torch.testing.assert_close(torch.cat(per_cls, 1), cls_logits, rtol=0, atol=0)
    torch.testing.assert_close(torch.cat(per_box, 1), box_deltas, rtol=0, atol=0)

    # anchors built from the shapes on every call (the dynamic-size ONNX graph) equal the cached ones
    dynamic = DenseDetector(model, dynamic_anchors=True)
    torch.testing.assert_close(torch.cat(dynamic.level_anchors(cls_out)), expected, rtol=0, atol=0)


def test_wrappers_are_the_one_layer_and_decoding_is_unchanged_by_dynamic_anchors():
    model = make_model()
    for wrapper in (TrainingModel(model, LossConfig()), InferenceModel(model), DecodingDetector(model, 100)):
        assert isinstance(wrapper, DenseDetector)
    assert ExportedDecodingDetector is DecodingDetector  # the old import path still works
    x = _images()
    with torch.no_grad():
        cached = DecodingDetector(model, 100)(x)
        dynamic = DecodingDetector(model, 100, dynamic_anchors=True)(x)
    # 3 levels, each min(100, R_l * K) candidates: 100 + 100 + 4*3*9*3 (= 324, so 100)
    assert cached.scores.shape == (2, 300)
    for a, b in zip(cached, dynamic):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
