"""``retina backbones``: filters, and a provider that fails to load listed without taking the CLI down."""

from __future__ import annotations

from importlib.metadata import EntryPoint

import pytest
from typer.testing import CliRunner

from retina_cli import plugins
from retina_cli.cli.app import _register, app

_register()
runner = CliRunner()


def invoke(*args: str):
    # wide, colourless output so table rows stay on one line
    return runner.invoke(app, ["backbones", *args], env={"COLUMNS": "250", "NO_COLOR": "1"})


def rows(output: str) -> dict[str, list[str]]:
    """Table body rows by provider: ``{provider: [package, count, backbones]}``."""
    found = {}
    for line in output.splitlines():
        line = line.strip()
        if not (line.startswith("│") and line.endswith("│")):
            continue
        cells = [c.strip() for c in line[1:-1].split("│")]
        if len(cells) == 4 and cells[0]:
            found[cells[0]] = cells[1:]
    return found


@pytest.fixture
def broken_provider(monkeypatch):
    """A provider whose entry point names a module that does not exist, next to the real ones."""
    real = plugins.discover()
    ep = EntryPoint(name="broken", value="retina_no_such_module:provider", group=plugins.GROUP)
    entries = {**real, "broken": plugins.ProviderEntry("broken", ep.value, "retina-broken", ep)}
    monkeypatch.setattr(plugins, "discover", lambda: entries)
    plugins.load_provider.cache_clear()
    yield
    plugins.load_provider.cache_clear()


def test_broken_provider_is_listed_as_failed(broken_provider):
    result = invoke("mobilenet_v*")
    assert result.exit_code == 0, result.output
    assert "failed to load broken: backbone provider 'broken' from package 'retina-broken'" in result.output
    assert "ModuleNotFoundError: No module named 'retina_no_such_module'" in result.output
    table = rows(result.output)
    assert "broken" not in table
    assert table["torchvision"] == ["retina-torchvision", "2", "mobilenet_v2, mobilenet_v3_large"]


def test_glob_and_substring_filters():
    table = rows(invoke("tf_efficientnet_lite?").output)
    assert table["timm"] == ["retina-cli", "5", ", ".join(f"tf_efficientnet_lite{i}" for i in range(5))]
    assert table["torchvision"] == ["retina-torchvision", "0", ""]
    table = rows(invoke("resnet1", "--provider", "torchvision").output)
    assert table == {"torchvision": ["retina-torchvision", "2", "resnet101, resnet18"]}


def test_limit_counts_what_is_cut():
    table = rows(invoke("mobilenet", "-p", "torchvision", "--limit", "1").output)
    assert table == {"torchvision": ["retina-torchvision", "2", "mobilenet_v2 ... (+1 more)"]}


def test_unknown_provider_is_a_usage_error():
    result = invoke("--provider", "nope")
    assert result.exit_code != 0
    assert "no provider named 'nope'" in result.output
