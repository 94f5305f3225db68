"""Backends by name. A built-in is one line here; third parties use the
``tuner.backends`` entry-point group (``name = "package.module:Factory"``)."""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points
from typing import Any

from serving import ConfigError

from .base import Backend

__all__ = ["BACKENDS", "available", "create"]

#: name -> "module:factory"; imported lazily so the vllm backend's heavy imports stay optional.
BACKENDS: dict[str, str] = {
    "simulator": "backends.simulator:SimulatorBackend",
    "vllm": "backends.vllm:VllmBackend",
}


def _targets() -> dict[str, str]:
    found = {ep.name: ep.value for ep in entry_points(group="tuner.backends")}
    return {**found, **BACKENDS}


def available() -> list[str]:
    return sorted(_targets())


def create(name: str, options: dict[str, Any] | None = None) -> Backend:
    """Instantiate the backend ``name`` with its ``options`` (the spec's backend section)."""
    target = _targets().get(name)
    if target is None:
        raise ConfigError("backend.name", name, f"allowed: {', '.join(available())}")
    module_name, _, attr = target.partition(":")
    factory = getattr(importlib.import_module(module_name), attr)
    backend: Backend = factory(**(options or {}))
    return backend
