"""The dataset validation table (what was kept, clipped, dropped) and the first problems, on a rich console."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from retina_cli.data.report import ValidationReport


def print_report(report: ValidationReport, console: Console, max_problems: int = 20) -> None:
    """Print the summary table (kept / clipped / dropped / negatives) and the first problems."""
    table = Table(title="dataset validation", show_header=True)
    table.add_column("")
    table.add_column("count", justify="right")
    for name, value in report.summary_rows():
        table.add_row(name, str(value))
    console.print(table)
    shown = report.problems[:max_problems]
    for problem in shown:
        console.print(f"[yellow]warning:[/] {problem}", highlight=False, soft_wrap=True)
    if len(report.problems) > len(shown):
        console.print(f"... and {len(report.problems) - len(shown)} more problems", highlight=False)
