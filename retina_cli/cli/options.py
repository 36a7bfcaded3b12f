"""Parsing of flag values shared by several commands (levels, number lists, YAML config files)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from retina_cli.errors import ConfigError


def parse_levels(text: str) -> tuple[int, int]:
    """``"3-7"`` -> (3, 7); a single ``"5"`` -> (5, 5)."""
    try:
        if "-" in text:
            lo, hi = (int(x) for x in text.split("-", 1))
        else:
            lo = hi = int(text)
    except ValueError as exc:
        raise ConfigError(f"--fpn-levels {text!r}: expected a range such as 3-7") from exc
    if not 1 <= lo <= hi:
        raise ConfigError(f"--fpn-levels {text!r}: expected MIN-MAX with 1 <= MIN <= MAX")
    return lo, hi


def parse_floats(text: str, flag: str) -> tuple[float, ...]:
    """``"0.5,1,2"`` -> (0.5, 1.0, 2.0); empty text -> ()."""
    if not text.strip():
        return ()
    try:
        values = tuple(float(x) for x in text.replace(" ", "").split(",") if x)
    except ValueError as exc:
        raise ConfigError(f"{flag} {text!r}: expected comma-separated numbers") from exc
    if any(v <= 0 for v in values):
        raise ConfigError(f"{flag} {text!r}: values must be positive")
    return values


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


def apply_config_file(ctx: Any, params: dict[str, Any], path: Path | None) -> dict[str, Any]:
    """Values from ``path`` for every flag not given on the command line; unknown names are an error."""
    if path is None:
        return params
    values = load_yaml_config(path)
    unknown = sorted(set(values) - set(params))
    if unknown:
        raise ConfigError(f"{path}: unknown settings {', '.join(unknown)} (use the flag names, e.g. img_size)")
    out = dict(params)
    for name, value in values.items():
        source = ctx.get_parameter_source(name)
        # compared by name: typer may carry its own copy of click's ParameterSource enum
        if source is None or source.name in ("DEFAULT", "DEFAULT_MAP"):
            out[name] = value
    return out
