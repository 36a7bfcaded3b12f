"""Parsing of flag values shared by several commands (levels, number lists, YAML config files)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from retina_cli.errors import ConfigError
from retina_cli.train_settings import parse_floats, parse_levels  # noqa: F401  (flag values of several commands)


def load_yaml_config(path: Path) -> dict[str, Any]:
    """A YAML mapping of flag names (``img_size: 512`` or ``img-size: 512``) to values, as a run
    folder's ``args.yaml`` holds them."""
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text())
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: config file not found") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of flag names to values")
    return {str(k).replace("-", "_"): v for k, v in data.items()}
