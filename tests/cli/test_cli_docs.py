"""docs/CLI.md is generated from the Typer app; this fails when it is stale."""

import subprocess
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parents[2] / "docs" / "CLI.md"
REGENERATE = "typer retina_cli.cli.main utils docs --name retina --output docs/CLI.md"


def test_cli_reference_is_current(tmp_path):
    out = tmp_path / "CLI.md"
    subprocess.run([sys.executable, "-m", "typer", "retina_cli.cli.main", "utils", "docs", "--name", "retina",
                    "--output", str(out)], check=True, capture_output=True, timeout=120)
    assert out.read_text() == DOCS.read_text(), f"docs/CLI.md is stale; regenerate it with: {REGENERATE}"
