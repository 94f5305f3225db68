"""The subcommands of ``tuner``: one module each, registered in :data:`COMMANDS`.

A module exposes ``register(subparsers)``, which adds its parser and sets ``func`` to a
function taking the parsed arguments and returning the exit code. A new subcommand is one
new module and one line here.
"""

from __future__ import annotations

from importlib import import_module
from types import ModuleType

__all__ = ["COMMANDS", "command_modules"]

#: Subcommand modules in ``--help`` order.
COMMANDS = (
    "tune",
    "worker",
    "status",
    "k8s-workers",
    "show",
    "pick",
    "plan",
    "export",
    "check",
    "validate",
    "profile",
    "router",
    "gpus",
)


def command_modules() -> list[ModuleType]:
    return [import_module(f"{__name__}.{name.replace('-', '_')}") for name in COMMANDS]
