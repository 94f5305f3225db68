"""Screening: price the whole feasible space with an instant backend, rank it.

With a backend that measures in microseconds (the simulator), pricing every feasible
candidate costs about a second even for a 64-GPU MoE space, and tells exactly where the
optimum and the front are. The study then starts from those candidates (enqueued trials)
and spends the rest of its budget exploring with its sampler. The same ranking is what a
live search uses to spend its budget where the predicted front is.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from serving import Deployment

from .front import pareto_front
from .results import MeasuredPoint
from .search.task import Task

__all__ = ["Screening", "screen"]


@dataclass(frozen=True)
class Screening:
    """Feasible candidates ranked best first, and why the others were rejected."""

    ranked: list[Deployment]
    front: list[Deployment]
    candidates: int
    infeasible: Counter[str] = field(default_factory=Counter)

    @property
    def feasible(self) -> int:
        return len(self.ranked)

    def warm_start(self, limit: int) -> list[Deployment]:
        """Up to ``limit`` candidates: the best by objective first, then the front's owners."""
        out: list[Deployment] = []
        seen: set[str] = set()
        best_half = max(1, limit // 2)
        for dep in [*self.ranked[:best_half], *self.front, *self.ranked[best_half:]]:
            if len(out) >= limit:
                break
            if dep.key() not in seen:
                seen.add(dep.key())
                out.append(dep)
        return out


def screen(task: Task) -> Screening:
    """Price every feasible candidate of the task once; rank by its objective.

    The ranking and the front read the point predictions only, so a backend that can
    leave out its estimates (intervals, energy) does, unless the objective reads them."""
    scored: list[tuple[tuple[float, float], int, Deployment]] = []
    points: list[MeasuredPoint] = []
    feasible = task.feasible
    bare = task.backend.capabilities.estimates and not task.objective_type.estimates
    for i, dep in enumerate(feasible.deployments):
        if bare:
            measured = task.backend.measure(dep, task.problem, estimates=False)  # type: ignore[call-arg]
        else:
            measured = task.backend.measure(dep, task.problem)
        values, violation = task.values(measured)
        # Feasible first (violation 0), then by objective; fewer GPUs break ties.
        scored.append((task.objective_type.rank_key(values, violation), dep.gpus(), dep))
        points.extend(MeasuredPoint(i, dep, p) for p in measured)
    scored.sort(key=lambda s: (s[0], s[1]))
    owners: list[Deployment] = []
    seen: set[str] = set()
    for m in sorted(pareto_front(points), key=lambda m: -m.point.tok_s_gpu):
        if m.deployment.key() not in seen:
            seen.add(m.deployment.key())
            owners.append(m.deployment)
    return Screening([dep for _, _, dep in scored], owners, feasible.candidates, Counter(feasible.infeasible))
