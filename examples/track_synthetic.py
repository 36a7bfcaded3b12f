"""Tracking with a real detector, scored: MOTA, IDF1 and ID switches on synthetic moving-objects clips.

    python examples/track_synthetic.py                                # trains `retina demo` first (~3 min)
    python examples/track_synthetic.py --model runs/demo/exp/train/best.pt --picture docs/img/track_frame.png

For each seed, :func:`retina_cli.data.synthetic_tracks.make_tracking_clip` writes a clip of shapes
that move, bounce, cross and pass behind a pillar, with MOTChallenge ground truth. The model tracks
it through ``Detector.track`` (ByteTrack, the library's defaults), and once more with the second
association off (``track_low = conf``: low-score detections dropped, as a one-threshold tracker
does). py-motmetrics scores both (``retina_cli.tracking.mot_metrics``). ``--picture`` also runs
``retina predict --track --count-line`` on the first clip and saves one frame of its video.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

import retina_cli
from retina_cli.data.synthetic_tracks import make_tracking_clip
from retina_cli.tracking import mot_metrics, mot_rows
from retina_cli.tracking.mot import read_mot

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the picture helpers, one copy for examples/
from make_docs_pictures import run, save_small  # noqa: E402

COLUMNS = ("mota", "idf1", "id_switches", "precision", "recall")


def score(detector: retina_cli.Detector, clip, conf: float, track_low: float) -> tuple[dict, float]:
    """Track ``clip`` -> (mot_metrics of its tracks against the ground truth, ms per frame)."""
    t0 = time.perf_counter()
    results = detector.track(str(clip.video), conf=conf, track_low=track_low, frame_rate=clip.fps)
    ms = 1000.0 * (time.perf_counter() - t0) / max(len(results), 1)
    rows = [row for r in results for row in mot_rows(r.frame + 1, r.track_ids, r.boxes, r.scores)]
    pred = np.asarray([[float(v) for v in row.split(",")[:6]] for row in rows], np.float64).reshape(-1, 6)
    return mot_metrics(read_mot(clip.gt_path), pred), ms


def picture(model: Path, clip, out: Path, work: Path) -> None:
    """One frame of `retina predict --track --count-line` on ``clip`` -> ``out`` (a small PNG)."""
    h, w = clip.size
    run(f"retina predict {model} {clip.video} --track --count-line {w // 2},0,{w // 2},{h} --out {work / 'pred'} --quiet")
    cap = cv2.VideoCapture(str(work / "pred" / clip.video.name))
    cap.set(cv2.CAP_PROP_POS_FRAMES, clip.frames * 2 // 3)
    ok, frame = cap.read()
    cap.release()
    if not ok:
        raise SystemExit(f"could not read a frame of {work / 'pred' / clip.video.name}")
    big = cv2.resize(frame, None, fx=2, fy=2, interpolation=cv2.INTER_NEAREST)  # the clip is 320 px wide
    save_small(cv2.cvtColor(big, cv2.COLOR_BGR2RGB), out, width=2 * w)
    print(f"picture -> {out}; counts: {json.loads((work / 'pred' / 'counts.json').read_text())[0]['lines']}")


def main(argv: list[str] | None = None) -> dict[str, dict[str, float]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="a checkpoint trained on retina's synthetic shapes (default: run `retina demo`)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="one clip per seed")
    parser.add_argument("--frames", type=int, default=120, help="frames per clip (12 fps)")
    parser.add_argument("--conf", type=float, default=0.25, help="the tracker's high threshold")
    parser.add_argument("--picture", type=Path, help="also save a frame of `retina predict --track --count-line` here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        model = args.model
        if model is None:
            run(f"retina demo --out {work / 'demo'}")
            model = work / "demo" / "exp" / "train" / "best.pt"
        detector = retina_cli.load(model)
        modes = {"bytetrack": 0.1, "one threshold": args.conf}
        per: dict[str, list[dict]] = {m: [] for m in modes}
        print(f"{'seed':>4} {'mode':<14} {'MOTA':>6} {'IDF1':>6} {'IDsw':>5} {'prec':>6} {'recall':>6} {'ms/frame':>9}")
        for seed in args.seeds:
            clip = make_tracking_clip(work / f"clip{seed}.mp4", frames=args.frames, seed=seed)
            for mode, low in modes.items():
                m, ms = score(detector, clip, args.conf, min(low, args.conf))
                m["ms_per_frame"] = ms
                per[mode].append(m)
                print(f"{seed:>4} {mode:<14} {m['mota']:>6.3f} {m['idf1']:>6.3f} {m['id_switches']:>5d} "
                      f"{m['precision']:>6.3f} {m['recall']:>6.3f} {ms:>9.1f}")
        means = {mode: {k: float(np.mean([m[k] for m in ms])) for k in (*COLUMNS, "ms_per_frame")} for mode, ms in per.items()}
        for mode, m in means.items():
            print(f"mean {mode:<14} {m['mota']:>6.3f} {m['idf1']:>6.3f} {m['id_switches']:>5.1f} "
                  f"{m['precision']:>6.3f} {m['recall']:>6.3f} {m['ms_per_frame']:>9.1f}")
        if args.picture:
            picture(model, make_tracking_clip(work / "picture" / "clip.mp4", frames=args.frames, seed=args.seeds[0]),
                    args.picture, work)
    return means


if __name__ == "__main__":
    sys.exit(main() and 0)
