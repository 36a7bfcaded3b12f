"""Predict's default score threshold: training stores the F1-best of its validation in the
checkpoint (``PostprocessConfig.predict_conf``), predict and the API use it when no conf is given,
eval keeps validation's low threshold, and exported models carry it."""

from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pytest

import retina_cli
from retina_cli.analysis.thresholds import ClassMatches
from retina_cli.config import DEFAULT_PREDICT_CONF, PostprocessConfig, from_dict, to_dict
from retina_cli.engine.predict import make_predictor, override_postprocess
from retina_cli.engine.trainer import with_predict_conf
from retina_cli.errors import ConfigError
from helpers import make_checkpoint, make_model


def _result(*matches: ClassMatches) -> SimpleNamespace:
    return SimpleNamespace(matches=list(matches))


def test_predict_threshold_defaults_and_never_goes_below_validations():
    assert PostprocessConfig().predict_threshold() == DEFAULT_PREDICT_CONF == 0.25
    assert PostprocessConfig(predict_conf=0.41).predict_threshold() == 0.41
    assert PostprocessConfig(score_thresh=0.3).predict_threshold() == 0.3  # trained with --conf 0.3: kept
    post = PostprocessConfig(predict_conf=0.41)
    assert from_dict(PostprocessConfig, to_dict(post)) == post
    assert from_dict(PostprocessConfig, {"score_thresh": 0.05}).predict_conf is None  # an older checkpoint
    assert override_postprocess(post).score_thresh == 0.05  # eval's threshold is not predict's
    for bad in (-0.1, 1.0, 1.5):
        with pytest.raises(ConfigError, match="predict_conf"):
            PostprocessConfig(predict_conf=bad)


def test_training_stores_the_f1_best_threshold_of_the_validation():
    # 2 boxes; tp .9, tp .8, fp .3, fp .1: F1 1.0 from .31 to .8, the first of those is chosen
    m = ClassMatches(np.array([0.9, 0.8, 0.3, 0.1]), np.array([1, 1, 0, 0], dtype=bool), 2)
    assert with_predict_conf(PostprocessConfig(), _result(m), ["a"]).predict_conf == 0.31
    # the best F1 keeps everything: clamped to validation's threshold
    low = ClassMatches(np.array([0.02]), np.array([True]), 1)
    assert with_predict_conf(PostprocessConfig(), _result(low), ["a"]).predict_conf == 0.05
    # nothing ranked: left as it was
    post = PostprocessConfig(predict_conf=0.4)
    assert with_predict_conf(post, _result(), ["a"]) is post


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    post = PostprocessConfig(score_thresh=0.05, nms_thresh=0.5, topk=200, max_det=1000)
    return make_checkpoint(tmp_path_factory.mktemp("conf") / "m.pt", post=post)[0]


def _image() -> np.ndarray:
    rng = np.random.default_rng(3)
    img = (rng.random((96, 128, 3)) * 255).astype(np.uint8)
    img[20:60, 30:90] = (30, 200, 240)
    return img


def test_predict_uses_the_stored_threshold_unless_conf_is_given(ckpt):
    det = retina_cli.load(ckpt, device="cpu")
    img = _image()
    [default] = det.predict(img)
    [at_default] = det.predict(img, conf=DEFAULT_PREDICT_CONF)
    [everything] = det.predict(img, conf=0.05)
    np.testing.assert_array_equal(default.scores, at_default.scores)
    assert len(default) > 0 and default.scores.min() > DEFAULT_PREDICT_CONF
    det._backend.post_cfg = replace(det._backend.post_cfg, predict_conf=0.6)
    [stored] = det.predict(img)
    np.testing.assert_array_equal(stored.scores, everything.scores[everything.scores > 0.6])
    assert 0 < len(stored) < len(default)
    [given] = det.predict(img, conf=0.05)  # a given conf wins over the stored one
    np.testing.assert_array_equal(given.scores, everything.scores)


def test_make_predictor_threshold_follows_the_backend_config():
    model = make_model()
    backend = SimpleNamespace(model_cfg=model.cfg, post_cfg=PostprocessConfig(predict_conf=0.37), stride=32)
    assert make_predictor(backend).post_cfg.score_thresh == 0.37
    assert make_predictor(backend, conf=0.6).post_cfg.score_thresh == 0.6


def test_exported_model_carries_the_stored_threshold(tmp_path):
    pytest.importorskip("onnxruntime")
    from retina_cli.export.onnx import export_onnx
    from retina_cli.export.runtime import OnnxBackend

    path, _ = make_checkpoint(tmp_path / "m.pt", post=PostprocessConfig(predict_conf=0.42))
    backend = OnnxBackend(export_onnx(path), "cpu")
    assert backend.post_cfg.predict_conf == 0.42 and make_predictor(backend).post_cfg.score_thresh == 0.42
