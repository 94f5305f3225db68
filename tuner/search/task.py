"""What one run searches: the problem, the space, the measuring backend, the SLA and the
objective, as one frozen :class:`Task`, with its feasible set computed once.

The feasibility filter is written here only (:func:`infeasible`): the static rules of the
space (:func:`search_spaces.infeasible_reason`: GPU budget, placement, divisibility, memory)
and then the backend's own check. The study loop, the grid, the screening, the explorer and
the guided search all take their candidates from :attr:`Task.feasible`, so a run enumerates
the space at most once.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Protocol

from backends import Backend
from search_spaces import SearchSpace, infeasible_reason
from serving import Deployment, LoadPoint, Problem

from ..objectives import Objective, get_objective
from ..sla import SLA

__all__ = ["Checker", "Feasible", "Task", "feasible_set", "infeasible"]


class Checker(Protocol):
    """What the filter needs of a backend: its static check (:meth:`backends.Backend.check`)."""

    def check(self, deployment: Deployment, problem: Problem) -> str | None: ...


def infeasible(deployment: Deployment, problem: Problem, backend: Checker) -> str | None:
    """Why ``deployment`` cannot run for ``problem`` on ``backend`` (``"rule: detail"``), or
    None: the one feasibility filter of a run."""
    return infeasible_reason(deployment, problem) or backend.check(deployment, problem)


@dataclass(frozen=True)
class Feasible:
    """The space's feasible deployments for a problem, in the space's order; how many
    candidates the space holds; why the others were rejected (by rule)."""

    deployments: tuple[Deployment, ...]
    candidates: int
    infeasible: Counter[str] = field(default_factory=Counter)

    def __len__(self) -> int:
        return len(self.deployments)


def feasible_set(space: SearchSpace, problem: Problem, backend: Checker) -> Feasible:
    """Enumerate ``space`` once and keep what :func:`infeasible` lets through."""
    kept: list[Deployment] = []
    rejected: Counter[str] = Counter()
    total = 0
    for dep in space.candidates(problem):
        total += 1
        reason = infeasible(dep, problem, backend)
        if reason is None:
            kept.append(dep)
        else:
            rejected[reason.split(":", 1)[0]] += 1
    return Feasible(tuple(kept), total, rejected)


@dataclass(frozen=True, eq=False)
class Task:
    """One search: which deployments (``space`` for ``problem``), measured how (``backend``),
    judged how (``sla``, ``objective``: a name in :data:`tuner.objectives.OBJECTIVES`).

    :attr:`feasible` is enumerated on first use and kept (a run that never needs it, a live
    single run whose sampler never repeats itself, pays nothing).
    """

    problem: Problem
    space: SearchSpace
    backend: Backend
    sla: SLA
    objective: str = "sla"

    @cached_property
    def feasible(self) -> Feasible:
        return feasible_set(self.space, self.problem, self.backend)

    @property
    def objective_type(self) -> Objective:
        return get_objective(self.objective)

    def reason(self, deployment: Deployment) -> str | None:
        """Why ``deployment`` cannot run, or None (:func:`infeasible`)."""
        return infeasible(deployment, self.problem, self.backend)

    def values(self, points: Sequence[LoadPoint]) -> tuple[list[float], float]:
        """The trial values and SLA violation of ``points`` under the task's objective."""
        return self.objective_type.values(points, self.sla)
