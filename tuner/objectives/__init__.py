"""Study objectives: what Optuna maximises per trial, and the front a run reports.

One module per objective (its values function and its :class:`Objective`), one line per
objective in :data:`OBJECTIVES`; ``study.objective`` in the spec names one. Every value is
maximised (Optuna directions all MAXIMIZE), and the first value is the one a screening or
the guided search ranks candidates by.

- ``sla`` (:mod:`.sla`): the best tok/s/GPU among points meeting the SLA.
- ``front`` (:mod:`.front`): max tok/s/GPU and max tok/s/user.
- ``cost`` (:mod:`.cost`): million output tokens per GPU-hour and max tok/s/user.
- ``energy`` (:mod:`.energy`): max output tokens per joule and max tok/s/user.

A new objective: a module beside these defining ``OBJECTIVE = Objective(...)``, and its line
below.
"""

from __future__ import annotations

from . import cost, energy, front, sla
from .base import Front, Objective, Values

__all__ = ["OBJECTIVES", "Front", "Objective", "Values", "get_objective"]

OBJECTIVES: dict[str, Objective] = {
    "sla": sla.OBJECTIVE,
    "front": front.OBJECTIVE,
    "cost": cost.OBJECTIVE,
    "energy": energy.OBJECTIVE,
}


def get_objective(name: str) -> Objective:
    """The registered objective ``name`` (the spec parser has checked the name)."""
    return OBJECTIVES[name]
