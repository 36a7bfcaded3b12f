"""Backbone providers, discovered through the ``retina_cli.backbones`` entry-point group.

The built-in timm provider is registered in this project's pyproject exactly like a third-party
plugin. Discovery reads entry-point metadata only; a provider's module is imported the first time
it is used, and a provider that fails to import is reported (``PluginLoadError``) without taking
the CLI down.

A provider is an object with:

- ``name: str``
- ``list_backbones(pattern: str | None = None) -> list[str]``: names it can build (glob filter)
- ``create(name: str, pretrained: bool = False) -> nn.Module``: a module whose ``forward(x)``
  returns a list of feature maps and which has ``channels: list[int]`` and ``strides: list[int]``
  describing them, in the same order
- ``normalization(name: str) -> tuple[mean, std]``: the input normalisation its weights expect,
  in 0..1 pixel units
"""

from __future__ import annotations

import difflib
import fnmatch
from dataclasses import dataclass
from functools import lru_cache
from importlib.metadata import EntryPoint, entry_points
from typing import TYPE_CHECKING, Any, Protocol

from retina_cli.errors import ConfigError, PluginLoadError

if TYPE_CHECKING:  # torch only for the annotations: `retina --help` and completion must not import it
    from torch import nn

GROUP = "retina_cli.backbones"
DEFAULT_PROVIDER = "timm"


class BackboneProvider(Protocol):
    name: str

    def list_backbones(self, pattern: str | None = None) -> list[str]: ...

    def create(self, name: str, pretrained: bool = False) -> nn.Module: ...

    def normalization(self, name: str) -> tuple[tuple[float, ...], tuple[float, ...]]: ...


@dataclass(frozen=True)
class ProviderEntry:
    """A discovered provider: its entry-point name and the distribution that declares it."""

    name: str
    value: str
    distribution: str
    entry_point: EntryPoint


def discover() -> dict[str, ProviderEntry]:
    """All declared providers by name, without importing any of them."""
    found: dict[str, ProviderEntry] = {}
    for ep in entry_points(group=GROUP):
        dist = ep.dist.name if ep.dist is not None else "unknown distribution"
        found.setdefault(ep.name, ProviderEntry(ep.name, ep.value, dist, ep))
    return found


@lru_cache(maxsize=None)
def load_provider(name: str) -> Any:
    """Import and return the provider called ``name``.

    Raises ConfigError for an unknown name and PluginLoadError (naming the distribution) when the
    provider's module fails to import.
    """
    entries = discover()
    if name not in entries:
        close = difflib.get_close_matches(name, list(entries), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else f"; installed: {', '.join(sorted(entries)) or 'none'}"
        raise ConfigError(f"no backbone provider named {name!r}{hint}")
    entry = entries[name]
    try:
        obj = entry.entry_point.load()
    except Exception as exc:  # a broken plugin must not take the CLI down
        raise PluginLoadError(
            f"backbone provider {name!r} from package {entry.distribution!r} ({entry.value}) failed to load: "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    return obj() if isinstance(obj, type) else obj


def filter_names(names: list[str], pattern: str | None) -> list[str]:
    """Names matching ``pattern``: a glob (``resnet*``) or, without wildcards, a substring."""
    if not pattern:
        return list(names)
    glob = pattern if any(c in pattern for c in "*?[") else f"*{pattern}*"
    return [n for n in names if fnmatch.fnmatch(n, glob)]


def split_backbone_name(spec: str) -> tuple[str, str]:
    """``"provider:name"`` -> (provider, name); a bare name belongs to the timm provider."""
    if ":" in spec:
        provider, name = spec.split(":", 1)
        return provider, name
    return DEFAULT_PROVIDER, spec


def check_backbone_name(provider: str, name: str) -> Any:
    """The provider, once it is known to build ``name``; ConfigError with close matches otherwise."""
    prov = load_provider(provider)
    known = prov.list_backbones()
    if name not in known:
        close = difflib.get_close_matches(name, known, n=5, cutoff=0.6)
        hint = f"; close matches: {', '.join(close)}" if close else ""
        raise ConfigError(f"unknown backbone {name!r} for provider {provider!r}{hint} (see `retina backbones`)")
    return prov


def create_backbone(provider: str, name: str, pretrained: bool = False) -> nn.Module:
    """Build ``name`` with ``provider``; an unknown name is a ConfigError with close matches."""
    return check_backbone_name(provider, name).create(name, pretrained=pretrained)
