"""Provider discovery and loading through the ``retina_cli.backbones`` entry-point group."""

from __future__ import annotations

from importlib.metadata import EntryPoint

import pytest

from retina_cli import plugins
from retina_cli.errors import ConfigError, PluginLoadError


def test_builtin_and_plugin_are_discovered_alike():
    entries = plugins.discover()
    assert (entries["timm"].value, entries["timm"].distribution) == (
        "retina_cli.model.timm_backbones:provider", "retina-cli",
    )
    assert (entries["torchvision"].value, entries["torchvision"].distribution) == (
        "retina_torchvision:provider", "retina-torchvision",
    )


def test_broken_provider_names_its_package(monkeypatch):
    ep = EntryPoint(name="broken", value="retina_no_such_module:provider", group=plugins.GROUP)
    entry = plugins.ProviderEntry("broken", ep.value, "retina-broken", ep)
    monkeypatch.setattr(plugins, "discover", lambda: {"broken": entry})
    plugins.load_provider.cache_clear()
    try:
        with pytest.raises(PluginLoadError) as err:
            plugins.load_provider("broken")
    finally:
        plugins.load_provider.cache_clear()
    assert str(err.value) == (
        "backbone provider 'broken' from package 'retina-broken' (retina_no_such_module:provider) failed to load: "
        "ModuleNotFoundError: No module named 'retina_no_such_module'"
    )


def test_unknown_provider_and_backbone_suggest_close_names():
    with pytest.raises(ConfigError, match="no backbone provider named 'torchvison'; did you mean torchvision"):
        plugins.load_provider("torchvison")
    with pytest.raises(ConfigError) as err:
        plugins.create_backbone("torchvision", "resnet19")
    assert str(err.value) == (
        "unknown backbone 'resnet19' for provider 'torchvision'; close matches: resnet18, resnet101, resnet50, "
        "resnet34 (see `retina backbones`)"
    )


def test_split_backbone_name():
    assert plugins.split_backbone_name("torchvision:resnet18") == ("torchvision", "resnet18")
    assert plugins.split_backbone_name("resnet18") == ("timm", "resnet18")
