"""examples/make_docs_pictures.py on a stand-in demo run: five small palette PNGs.

`retina demo` itself is tested in tests/cli/test_train_eval_cli.py; here a folder laid out like
its run (data/, train/curves.png, eval/pr_curves.png, predict/clip.mp4) stands in for it, so
the test costs the two `retina viz` calls and the conversions.
"""

import cv2
import numpy as np
from PIL import Image

from examples_support import load_example
from retina_cli.data.synthetic import write_video


def test_make_docs_pictures_writes_small_pngs(tiny_data, tmp_path):
    demo = tmp_path / "demo"
    demo.mkdir()
    (demo / "data").symlink_to(tiny_data, target_is_directory=True)
    rng = np.random.default_rng(0)
    for name in ("train/curves.png", "eval/pr_curves.png"):  # plot-like: white, with coloured polylines
        (demo / name).parent.mkdir(parents=True)
        canvas = np.full((500, 1400, 3), 255, np.uint8)
        for colour in ((31, 119, 180), (255, 127, 14), (44, 160, 44)):
            pts = np.stack([np.linspace(50, 1350, 40), rng.uniform(50, 450, 40)], 1).astype(np.int32)
            cv2.polylines(canvas, [pts], False, colour, 2, cv2.LINE_AA)
        Image.fromarray(canvas).save(demo / name)
    write_video(demo / "predict" / "clip.mp4", frames=10, size=(120, 160))

    written = load_example("make_docs_pictures").main([
        "--demo", str(demo), "--bccd", str(tmp_path / "absent"),  # falls back to the demo's data
        "--work", str(tmp_path / "work"), "--out", str(tmp_path / "img"),
    ])
    names = ["labels_mosaic.png", "anchors.png", "curves.png", "pr_curves.png", "predict_frame.png"]
    assert written == [tmp_path / "img" / n for n in names]
    for path in written:
        with Image.open(path) as img:
            assert img.format == "PNG" and img.mode == "P"  # palette-quantised
        assert path.stat().st_size < 150 * 1024
    assert Image.open(tmp_path / "img" / "curves.png").size == (900, 321)  # downscaled to 900 px wide
    assert Image.open(tmp_path / "img" / "predict_frame.png").size == (160, 120)  # frame 8 of the clip, not upscaled
