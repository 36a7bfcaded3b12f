"""``retina predict --track --count-line`` and ``Detector.track`` end to end on the synthetic moving-objects clip."""

from __future__ import annotations

import csv
import json

import numpy as np
from typer.testing import CliRunner

import retina_cli
from helpers import make_checkpoint
from retina_cli.cli.app import _register, app
from retina_cli.config import PostprocessConfig
from retina_cli.data.synthetic_tracks import make_tracking_clip
from retina_cli.tracking import CountLine, TrackSession, TrackerConfig
from retina_cli.tracking.mot import read_mot

_register()
runner = CliRunner()


def test_predict_track_writes_ids_mot_and_counts(tmp_path):
    ckpt, _ = make_checkpoint(tmp_path / "m.pt", names=("circle", "square", "triangle"),
                              post=PostprocessConfig(score_thresh=0.3, topk=100, max_det=20))
    clip = make_tracking_clip(tmp_path / "clip.mp4", frames=16, size=(96, 128), objects=3, fps=12.0, seed=1)
    out = tmp_path / "out"
    res = runner.invoke(app, ["predict", str(ckpt), str(clip.video), "--device", "cpu", "--out", str(out), "--track",
                              "--conf", "0.3", "--count-line", "64,0,64,96", "--count-line", "0,48,128,48"],
                        env={"COLUMNS": "200", "NO_COLOR": "1"})
    assert res.exit_code == 0, res.output
    rows = json.loads((out / "predictions.json").read_text())
    assert rows and all(r["track_id"] >= 1 for r in rows)
    table = list(csv.reader((out / "predictions.csv").open()))
    assert table[0][-1] == "track_id" and len(table) == len(rows) + 1
    mot = read_mot(out / "mot" / "clip.txt")
    # the MOT file holds exactly the JSON's tracked boxes: frame + 1, id, x, y, w, h
    from_json = sorted((r["frame"] + 1, r["track_id"], *r["bbox"]) for r in rows)
    from_mot = sorted((int(m[0]), int(m[1]), *m[2:6]) for m in mot)
    assert [a[:2] for a in from_json] == [b[:2] for b in from_mot]
    assert np.allclose([a[2:] for a in from_json], [b[2:] for b in from_mot], atol=0.01)
    counts = json.loads((out / "counts.json").read_text())
    assert counts[0]["source"] == "clip" and len(counts[0]["lines"]) == 2
    assert counts[0]["tracks"] == len({r["track_id"] for r in rows})
    assert "tracks over 16 frames" in res.output and (out / "clip.mp4").is_file()

    # the API gives the same tracks (one path for both)
    api = retina_cli.load(ckpt, device="cpu").track(str(clip.video), conf=0.3)
    api_rows = sorted((r.frame, int(t), *np.round(b, 2)) for r in api for t, b in zip(r.track_ids, r.boxes))
    cli_rows = sorted((r["frame"], r["track_id"], *np.round([r["bbox"][0], r["bbox"][1], r["bbox"][0] + r["bbox"][2],
                                                              r["bbox"][1] + r["bbox"][3]], 2)) for r in rows)
    assert [a[:2] for a in api_rows] == [c[:2] for c in cli_rows]
    assert np.allclose([a[2:] for a in api_rows], [c[2:] for c in cli_rows], atol=0.02)


def test_count_line_needs_a_tracker_and_a_session_counts_scripted_results():
    from retina_cli.engine.predict import PredictConfig
    from retina_cli.engine.results import Result
    from retina_cli.errors import ConfigError
    import pytest

    with pytest.raises(ConfigError, match="--track"):
        PredictConfig(count_lines=(CountLine(0, 0, 1, 1),))
    # one box moving right across x = 50 over 10 frames: one track, counted once "in" or "out" by the rule
    session = TrackSession(("a",), TrackerConfig(), 30.0, [CountLine(50, 0, 50, 100)])
    for f in range(10):
        x = 20 + 6 * f
        res = Result(np.array([[x, 40, x + 10, 50]], np.float32), np.array([0.9]), np.array([0]), ("a",), (100, 100), frame=f)
        tracked, overlay = session.step(res)
        assert tracked.track_ids.tolist() == [1]
    s = session.summary()
    assert s["frames"] == 10 and s["tracks"] == 1
    line = s["lines"][0]
    assert line["total_in"] + line["total_out"] == 1
    assert overlay.lines[0][1:] == (line["total_in"], line["total_out"]) and len(overlay.trails[0][2]) == 10
    assert len(session.mot) == 10 and session.mot[0].startswith("1,1,")


def test_predict_slice_cli_equals_the_api(tmp_path):
    import cv2

    from retina_cli.slicing import SliceConfig

    ckpt, _ = make_checkpoint(tmp_path / "m.pt", post=PostprocessConfig(score_thresh=0.3, topk=100, max_det=30))
    img = np.zeros((150, 260, 3), np.uint8)
    cv2.rectangle(img, (20, 30), (60, 70), (0, 200, 255), -1)
    cv2.circle(img, (200, 100), 25, (255, 80, 0), -1)
    cv2.imwrite(str(tmp_path / "x.png"), img)
    out = tmp_path / "out"
    res = runner.invoke(app, ["predict", str(ckpt), str(tmp_path / "x.png"), "--device", "cpu", "--out", str(out),
                              "--slice", "96", "--slice-merge", "nmm"])
    assert res.exit_code == 0, res.output
    rows = json.loads((out / "predictions.json").read_text())
    api = retina_cli.load(ckpt, device="cpu").predict(str(tmp_path / "x.png"), slicing=SliceConfig(96, merge="nmm"))[0]
    plain = retina_cli.load(ckpt, device="cpu").predict(str(tmp_path / "x.png"))[0]
    assert len(rows) == len(api) > 0 and len(api) <= 30
    assert np.allclose([r["bbox"][0] for r in rows], api.boxes[:, 0], atol=1e-3)
    assert not (len(plain) == len(api) and np.allclose(plain.boxes, api.boxes))  # the windows changed what was found


def test_tracker_config_from_the_flags():
    assert TrackerConfig.from_flags() == TrackerConfig()
    cfg = TrackerConfig.from_flags(conf=0.5, track_low=0.7, track_buffer=12, track_iou=0.3)
    assert (cfg.high_thresh, cfg.low_thresh, cfg.new_track_thresh, cfg.buffer, cfg.match_iou) == (0.5, 0.5, 0.5, 12, 0.3)
    assert TrackerConfig.from_flags(conf=0.4, track_new=0.6).new_track_thresh == 0.6
