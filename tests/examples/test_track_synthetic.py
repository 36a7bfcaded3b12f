"""examples/track_synthetic.py on a tiny random model: both tracker modes scored, and the picture."""

import math

from PIL import Image

from examples_support import load_example
from helpers import make_checkpoint


def test_track_synthetic_scores_both_modes_and_saves_a_frame(tmp_path, capsys):
    ckpt, _ = make_checkpoint(tmp_path / "m.pt", names=("circle", "square", "triangle"))
    picture = tmp_path / "track.png"
    means = load_example("track_synthetic").main(["--model", str(ckpt), "--seeds", "3", "--frames", "12",
                                                  "--picture", str(picture)])
    assert set(means) == {"bytetrack", "one threshold"}
    for m in means.values():
        assert set(m) == {"mota", "idf1", "id_switches", "precision", "recall", "ms_per_frame"}
        assert math.isfinite(m["mota"]) and m["mota"] <= 1 and m["ms_per_frame"] > 0
    out = capsys.readouterr().out
    assert out.count("bytetrack") == 2 and "picture ->" in out  # the seed's row, the mean row
    with Image.open(picture) as img:
        assert img.format == "PNG" and img.size[0] == 640
