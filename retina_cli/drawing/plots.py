"""PNG plots of training curves and precision-recall curves (matplotlib, an optional extra)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def plot_training_curves(history: Sequence[dict[str, float]], path: Path) -> None:
    """Loss (total, cls, box) and validation mAP / mAP50 per epoch, side by side."""
    epochs = [r["epoch"] for r in history]
    fig, (ax_l, ax_m) = plt.subplots(1, 2, figsize=(10, 4))
    for key in ("loss", "cls", "box"):
        ax_l.plot(epochs, [r[key] for r in history], marker="o", label=key)
    ax_l.set_xlabel("epoch")
    ax_l.set_ylabel("training loss")
    ax_l.legend()
    ax_l.grid(alpha=0.3)
    evaluated = [r for r in history if r.get("AP", -1) >= 0]
    for key in ("AP", "AP50"):
        ax_m.plot([r["epoch"] for r in evaluated], [r[key] for r in evaluated], marker="o", label=f"val {key}")
    ax_m.set_xlabel("epoch")
    ax_m.set_ylabel("mAP")
    ax_m.set_ylim(0, 1)
    ax_m.legend()
    ax_m.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def plot_pr_curves(precision: np.ndarray, class_names: Sequence[str], path: Path) -> None:
    """Precision-recall curves per class at IoU 0.5 and 0.75 from COCOeval's ``(T, R, K, A, M)`` precision."""
    recall = np.linspace(0, 1, precision.shape[1])
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for ax, t, label in ((axes[0], 0, "IoU 0.50"), (axes[1], 5, "IoU 0.75")):
        for k, name in enumerate(class_names):
            p = precision[t, :, k, 0, -1]
            if (p > -1).any():
                ap = p[p > -1].mean()
                ax.plot(recall, np.clip(p, 0, None), label=f"{name} (AP {ap:.3f})")
        ax.set_title(label)
        ax.set_xlabel("recall")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    axes[0].set_ylabel("precision")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def plot_cumulative_loss(panels: dict[str, Sequence[tuple[str, np.ndarray, np.ndarray]]], path: Path) -> None:
    """The RetinaNet paper's Figure 4: one panel per title, one ``(label, fraction, cumulative)``
    curve each (cumulative normalised loss against the fraction of examples, easiest first)."""
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4), squeeze=False)
    for ax, (title, curves) in zip(axes[0], panels.items()):
        for label, x, y in curves:
            ax.plot(x, y, label=label)
        ax.set_title(title)
        ax.set_xlabel("fraction of examples (sorted by loss)")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="upper left")
    axes[0][0].set_ylabel("cumulative normalized loss")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def plot_speed_accuracy(rows: Sequence[dict], path: Path, subtitle: str = "") -> None:
    """ms per image against COCO AP, one labelled point per checkpoint (the paper's Figure 2).

    rows: dicts with ``ms_per_image``, ``AP``, ``backbone``, ``img_size``; rows without AP are skipped.
    """
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for r in rows:
        if r.get("AP") is None:
            continue
        ax.scatter(r["ms_per_image"], r["AP"], s=40)
        ax.annotate(f"{r['backbone']} {r['img_size']}", (r["ms_per_image"], r["AP"]), textcoords="offset points",
                    xytext=(5, 4), fontsize=8)
    ax.set_xlabel("inference time per image (ms)")
    ax.set_ylabel("COCO AP (mAP@[.5:.95])")
    ax.set_title("speed vs accuracy" + (f"\n{subtitle}" if subtitle else ""), fontsize=10)
    ax.grid(alpha=0.3)
    ax.set_xlim(left=0)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def plot_confusion_matrix(counts: np.ndarray, labels: Sequence[str], path: Path, subtitle: str = "") -> None:
    """Two panels: counts and row-normalised shares; rows the true class, columns the prediction
    (the last of each: background). counts ``(K + 1, K + 1)``."""
    counts = np.asarray(counts)
    sums = counts.sum(axis=1, keepdims=True)
    shares = np.divide(counts, sums, out=np.zeros(counts.shape, dtype=np.float64), where=sums > 0)
    n = len(labels)
    side = max(4.0, 0.6 * n + 2.5)
    fig, axes = plt.subplots(1, 2, figsize=(2 * side + 1, side))
    for ax, data, title, fmt in ((axes[0], counts, "counts", "{:d}"), (axes[1], shares, "share of each true class", "{:.2f}")):
        ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
        for i in range(n):
            for j in range(n):
                v = data[i, j]
                ax.text(j, i, fmt.format(int(v)) if fmt == "{:d}" else fmt.format(v), ha="center", va="center",
                        color="white" if shares[i, j] > 0.5 else "black", fontsize=9)
        ax.set_xticks(range(n), labels, rotation=45, ha="right")
        ax.set_yticks(range(n), labels)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(title)
    if subtitle:
        fig.suptitle(subtitle)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def plot_threshold_curves(thresholds: np.ndarray, precision: np.ndarray, recall: np.ndarray, f1: np.ndarray,
                          class_names: Sequence[str], best_conf: float, path: Path) -> None:
    """Precision, recall and F1 against the score threshold per class (``(K, N)`` each), the mean F1
    in bold and the chosen threshold as a vertical line."""
    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    for ax, data, name in zip(axes, (precision, recall, f1), ("precision", "recall", "F1")):
        for k, cname in enumerate(class_names):
            ax.plot(thresholds, data[k], label=cname)
        ax.plot(thresholds, data.mean(axis=0), color="black", linewidth=2.5, label="mean")
        ax.axvline(best_conf, color="grey", linestyle="--", linewidth=1)
        ax.set_xlabel("score threshold")
        ax.set_ylabel(name)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
    axes[2].set_title(f"best mean F1 at {best_conf:.2f}")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
