"""Load a search space from a preset name or a YAML file, with overrides, validated once.

The only I/O of the package: reading one YAML file. Everything else is pure validation in
:func:`search_spaces.space.parse_space`.
"""

from __future__ import annotations

from collections.abc import Mapping
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

from serving import ConfigError
from serving.deployment import ROLES
from serving.inputs import parse_yaml, read_text

from .space import SearchSpace, parse_space

__all__ = ["load_space", "preset_names"]

_SUFFIXES = (".yaml", ".yml")


def _presets_dir() -> Traversable:
    return resources.files("search_spaces").joinpath("presets")


def preset_names() -> list[str]:
    """Names of the built-in presets (file stems under ``search_spaces/presets/``), sorted."""
    return sorted(
        entry.name.rsplit(".", 1)[0] for entry in _presets_dir().iterdir() if entry.name.endswith(".yaml")
    )


def load_space(preset: str, overrides: Mapping[str, Any] | None = None) -> SearchSpace:
    """The search space of ``preset`` with ``overrides`` applied, validated.

    ``preset`` is a built-in preset name or a path to a YAML file (anything ending in
    ``.yaml``/``.yml`` or containing a path separator). ``overrides`` holds the same keys as
    the YAML; a value replaces the preset's, except that a role section (``agg``,
    ``prefill``, ``decode``) is merged key by key, so ``{"decode": {"tp": [8]}}`` changes
    only the decode TP choices. Raises :class:`serving.ConfigError` on any bad input.
    """
    data = _read(preset)
    if overrides is not None:
        if not isinstance(overrides, Mapping):
            raise ConfigError(
                "search_space", overrides, "allowed: a mapping of search-space keys as overrides"
            )
        data = _merge(data, overrides)
    return parse_space(data)


def _read(preset: str) -> Any:
    if not isinstance(preset, str) or not preset:
        raise ConfigError(
            "search_space.preset", preset, f"allowed: a YAML path or one of {', '.join(preset_names())}"
        )
    if preset.endswith(_SUFFIXES) or "/" in preset or "\\" in preset:
        path = Path(preset)
        if not path.is_file():
            raise ConfigError(
                "search_space.preset",
                preset,
                f"no such file; allowed: a YAML path or one of {', '.join(preset_names())}",
            )
        text, source = read_text(path, "search_space.preset", "must be a readable YAML file"), str(path)
    else:
        if preset not in preset_names():
            raise ConfigError(
                "search_space.preset", preset, f"unknown preset; allowed: {', '.join(preset_names())}"
            )
        text, source = _presets_dir().joinpath(f"{preset}.yaml").read_text(), preset
    return parse_yaml(text, "search_space.preset", source)


def _merge(base: Any, overrides: Mapping[str, Any]) -> Any:
    """``base`` with ``overrides`` on top; role sections merge one level deep."""
    if not isinstance(base, Mapping):
        return base  # parse_space reports the bad preset itself
    merged = dict(base)
    for key, value in overrides.items():
        if key in ROLES and isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = {**merged[key], **value}
        else:
            merged[key] = value
    return merged
