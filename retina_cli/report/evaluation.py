"""What ``retina eval`` (and a training run's final validation) writes to explain its numbers:
confusion_matrix.json/.png, thresholds.json, threshold_curves.png, errors/ (the gallery) and
report.html, all into the run folder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

from retina_cli.analysis.diagnosis import Diagnosis
from retina_cli.analysis.errors import ERROR_TYPES
from retina_cli.report import html as H

ERROR_MEANINGS = {
    "cls": "right place (IoU >= the threshold), wrong class",
    "loc": "right class, poorly placed (0.1 <= IoU < the threshold)",
    "both": "wrong class and poorly placed",
    "dupe": "a second detection of a box already found",
    "bkg": "on background (IoU < 0.1 with every box)",
    "missed": "a box no detection found",
}


def write_diagnosis(diag: Diagnosis, records: Sequence[Any], run_dir: Path, gallery_size: int = 12) -> dict[str, Any]:
    """The diagnosis files; returns their paths by name (for the report). Plots only with matplotlib."""
    run_dir = Path(run_dir)
    files: dict[str, Any] = {}
    conf = diag.errors.to_dict()
    (run_dir / "confusion_matrix.json").write_text(json.dumps(conf, indent=2))
    (run_dir / "thresholds.json").write_text(json.dumps(diag.curves.to_dict()))
    files["confusion_json"] = run_dir / "confusion_matrix.json"
    try:
        from retina_cli.drawing.plots import plot_confusion_matrix, plot_threshold_curves
    except ImportError:
        pass
    else:
        plot_confusion_matrix(diag.errors.matrix, conf["labels"], run_dir / "confusion_matrix.png",
                              f"score >= {diag.conf:.2f}, IoU >= {diag.errors.iou:.2f}")
        c = diag.curves
        plot_threshold_curves(c.thresholds, c.precision, c.recall, c.f1, c.class_names, diag.conf,
                              run_dir / "threshold_curves.png")
        files["confusion_png"] = run_dir / "confusion_matrix.png"
        files["threshold_png"] = run_dir / "threshold_curves.png"
    from retina_cli.drawing.gallery import write_gallery

    files["gallery"] = write_gallery(diag.errors, records, run_dir / "errors", gallery_size)
    return files


def diagnosis_sections(page: H.Page, diag: Diagnosis, files: dict[str, Any], run_dir: Path,
                       per_class: dict[str, dict[str, float]], pr_png: Path | None) -> None:
    """The evaluation's sections of a report page: per-class table, curves, confusion matrix,
    error types, gallery."""
    best = diag.curves.best
    rows = [[name, v["AP"], v["AP50"], int(v["num_gt"]), best[name]["conf"], best[name]["precision"],
             best[name]["recall"], best[name]["f1"]] for name, v in per_class.items()]
    if "all" in best:
        rows.append(["all (mean)", "", "", "", best["all"]["conf"], best["all"]["precision"], best["all"]["recall"], best["all"]["f1"]])
    page.add("Per class", H.table(["class", "AP", "AP50", "boxes", "F1-best score", "precision", "recall", "F1"], rows),
             H.para(f"Deploy at --conf {diag.conf:.2f}: the score threshold of the best F1 averaged over classes "
                    "(IoU 0.5, COCO matching)."))
    curves = []
    if pr_png is not None and Path(pr_png).exists():
        curves.append(H.image(H.relative(pr_png, run_dir), "precision-recall curves"))
    if "threshold_png" in files:
        curves.append(H.image(H.relative(files["threshold_png"], run_dir), "precision, recall and F1 against the score threshold"))
    if curves:
        page.add("Curves", *curves)
    e = diag.errors
    labels = [*e.class_names, "background"]
    matrix_rows = [[labels[i], *map(int, e.matrix[i])] for i in range(len(labels))]
    parts = [H.para(f"Rows: the true class; columns: the prediction (score >= {diag.conf:.2f}, IoU >= {e.iou:.2f}). "
                    "The background row counts detections on no box; the background column, boxes no detection found."),
             H.table(["true \\ predicted", *labels], matrix_rows)]
    if "confusion_png" in files:
        parts.append(H.image(H.relative(files["confusion_png"], run_dir), "confusion matrix"))
    page.add("Confusion matrix", *parts)
    page.add("Errors", H.table(["type", "count", "meaning"], [[t, e.errors[t], ERROR_MEANINGS[t]] for t in ERROR_TYPES]),
             H.para("Error types of TIDE (Bolya et al. 2020), counted at the deploy threshold.", note=True))
    gallery = files.get("gallery") or []
    if gallery:
        figures = "".join(
            f"<figure>{H.image(H.relative(g.path, run_dir), g.image)}<figcaption>{H.esc(Path(g.image).name)}: "
            f"{g.missed} missed, {g.false_positives} false positives</figcaption></figure>" for g in gallery
        )
        page.add("Worst images", H.para("Most missed boxes and false positives first. White: missed; green: found; "
                                         "other colours: an error, its type on the label."), f'<div class="gallery">{figures}</div>')


def write_eval_report(run_dir: Path, header: dict[str, Any], metrics: dict[str, float], per_class: dict[str, dict[str, float]],
                      diag: Diagnosis, files: dict[str, Any], pr_png: Path | None) -> Path:
    """``run_dir/report.html`` of an evaluation. header: what was evaluated (checkpoint, data, split, images)."""
    page = H.Page(f"retina eval: {Path(str(header.get('checkpoint', ''))).name} on {header.get('split', '')}")
    page.add("Run", H.table(["", "value"], [[k, v] for k, v in header.items()]))
    page.add("Metrics", H.table(["metric", "value"], [[k, v] for k, v in metrics.items()]))
    diagnosis_sections(page, diag, files, run_dir, per_class, pr_png)
    return page.write(Path(run_dir) / "report.html")
