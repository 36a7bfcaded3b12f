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

    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"--config {path}: a folder; expected a YAML file such as a run's args.yaml")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: config file not found") from exc
    except (UnicodeDecodeError, OSError) as exc:
        raise ConfigError(f"{path}: cannot read the config file as UTF-8 text ({type(exc).__name__})") from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or type(exc).__name__
        raise ConfigError(f"{path}{where}: not valid YAML ({problem})") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of flag names to values")
    return {str(k).replace("-", "_"): v for k, v in data.items()}
