import json
from importlib import metadata

import torch
from typer.testing import CliRunner

from retina_cli import __version__
from retina_cli.cli.app import _register, app

_register()


def test_checks_json_reports_versions_device_and_providers():
    result = CliRunner().invoke(app, ["checks", "--json"])
    assert result.exit_code == 0, result.output
    env = json.loads(result.output)
    assert env["retina"] == __version__
    assert env["packages"]["torch"] == metadata.version("torch")
    assert env["packages"]["timm"] == metadata.version("timm")
    assert env["device"] == ("cuda" if torch.cuda.is_available() else "cpu")
    assert env["threads"] == torch.get_num_threads()
    assert env["providers"]["timm"] == "retina-cli"


def test_checks_table_and_version_flag():
    runner = CliRunner()
    table = runner.invoke(app, ["checks"], env={"COLUMNS": "160"})
    assert table.exit_code == 0 and "torchvision" in table.output and "backbone providers" in table.output
    version = runner.invoke(app, ["--version"])
    assert version.output.strip() == f"retina {__version__}"
