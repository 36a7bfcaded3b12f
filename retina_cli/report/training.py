"""``report.html`` of a training run: its settings, the data summary, loss and mAP curves, the
per-epoch table and, for the best epoch's validation, the diagnosis of ``retina eval``
(per-class table, threshold curves, confusion matrix, error types, the worst images)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from retina_cli.report import html as H
from retina_cli.report.evaluation import diagnosis_sections, write_diagnosis

_EPOCH_COLUMNS = ("epoch", "loss", "cls", "box", "lr", "images_per_s", "AP", "AP50", "AP75")


def write_train_report(
    run_dir: Path, settings: dict[str, Any], data_rows: Sequence[tuple[str, int]], problems: Sequence[str],
    history: Sequence[dict[str, float]], best: Any = None, val_records: Sequence[Any] = (),
    class_names: Sequence[str] = (), stop_reason: str = "",
) -> Path:
    """settings: name -> value (args.yaml's content); data_rows / problems: the dataset validation
    summary and its first problems; best: the best epoch's EvalResult (None without validation)."""
    run_dir = Path(run_dir)
    page = H.Page(f"retina train: {run_dir.name}")
    done = [r for r in history if r.get("AP", -1) >= 0]
    summary = [["epochs", len(history)]]
    if done:
        top = max(done, key=lambda r: r["AP"])
        summary += [["best val mAP", top["AP"]], ["best val mAP50", top["AP50"]], ["best epoch", int(top["epoch"])]]
    if stop_reason:
        summary.append(["stopped", stop_reason])
    page.add("Run", H.table(["", "value"], summary))
    data_parts = [H.table(["", "count"], [list(r) for r in data_rows])]
    if problems:
        data_parts.append(H.para(f"{len(problems)} problems; the first: " + "; ".join(problems[:5]), note=True))
    page.add("Data", *data_parts)
    if (run_dir / "curves.png").exists():
        page.add("Curves", H.image("curves.png", "loss and validation mAP per epoch"))
    page.add("Epochs", H.table(list(_EPOCH_COLUMNS), [[r.get(c, "") if r.get(c, -1) != -1.0 else "" for c in _EPOCH_COLUMNS]
                                                      for r in history]))
    if best is not None and val_records:
        from retina_cli.analysis.diagnosis import diagnose

        diag = diagnose(best, val_records, class_names)
        files = write_diagnosis(diag, val_records, run_dir)
        page.add("Best epoch on val", H.para("The sections below explain the best epoch's validation (best.pt)."))
        diagnosis_sections(page, diag, files, run_dir, best.per_class, None)
    page.add("Settings", H.table(["setting", "value"], [[k, v] for k, v in settings.items()]))
    return page.write(run_dir / "report.html")
