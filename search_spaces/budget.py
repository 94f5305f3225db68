"""Which worker shapes of a space can be part of a deployment within the GPU budget.

For one problem, :func:`plan` lists per role the worker layouts (tp, dp, pp, ep) that pass
every per-worker static rule of :mod:`search_spaces.constraints` (NVLink domain, head and
expert divisibility, vLLM's EP rule, placement, weights fitting in memory) and that leave
room, at the smallest worker counts of the space, for the rest of the deployment. The
encoding snaps every drawn layout onto this list and clips worker counts to what the budget
leaves, so a suggested deployment never exceeds the budget. The plan depends only on the
space and the problem, both fixed for a study, so Optuna's distributions never change
between trials.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from serving import EngineKnobs, Parallelism, Problem, WorkerGroup
from serving.memory import worker_memory

from .constraints import worker_reason

if TYPE_CHECKING:
    from .space import RoleSpace, SearchSpace

__all__ = ["Plan", "Shape", "min_count", "plan"]

# Symbols, repeated from space.py to avoid an import cycle (space imports the encoding).
_EP_ALL = "all"
_COUNT_MAX = "max"


@dataclass(frozen=True)
class Shape:
    """One admissible worker layout and the ``ep`` symbol the space writes it with."""

    parallel: Parallelism
    ep_symbol: Any  # 1 or "all"

    @property
    def gpus(self) -> int:
        return self.parallel.gpus


@dataclass(frozen=True)
class Plan:
    """Admissible modes and worker layouts of a space for one problem.

    ``fits`` is False when no deployment of the space fits the budget at all: then the plan
    offers every layout unclipped and the constraints reject what is drawn.
    """

    budget: int
    modes: tuple[str, ...]
    shapes: dict[str, tuple[Shape, ...]]
    fits: bool


def min_count(rs: RoleSpace) -> int:
    """The fewest workers a role's ``count`` choices can give (``max`` can give one)."""
    ints = [c for c in rs.count if not isinstance(c, str)]
    return 1 if _COUNT_MAX in rs.count or not ints else min(ints)


def plan(space: SearchSpace, problem: Problem) -> Plan:
    """Admissible modes and layouts of ``space`` for ``problem`` (pure, a few ms)."""
    valid = {role: _valid_shapes(space, role, problem) for role in ("agg", "prefill", "decode")}
    budget = problem.gpus
    agg = tuple(s for s in valid["agg"] if s.gpus * min_count(space.agg) <= budget)
    p_min, d_min = min_count(space.prefill), min_count(space.decode)
    p_least = min((s.gpus * p_min for s in valid["prefill"]), default=math.inf)
    decode = tuple(s for s in valid["decode"] if s.gpus * d_min + p_least <= budget)
    d_least = min((s.gpus * d_min for s in decode), default=math.inf)
    prefill = tuple(s for s in valid["prefill"] if s.gpus * p_min + d_least <= budget)
    modes = tuple(m for m in space.modes if (m == "agg" and agg) or (m == "disagg" and decode and prefill))
    if modes:
        return Plan(budget, modes, {"agg": agg, "prefill": prefill, "decode": decode}, fits=True)
    every = {role: _all_shapes(space.role(role)) for role in ("agg", "prefill", "decode")}
    return Plan(budget, space.modes, every, fits=False)


def _all_shapes(rs: RoleSpace) -> tuple[Shape, ...]:
    """Every layout the role's choices spell, in the order of the choices."""
    out: list[Shape] = []
    seen: set[Parallelism] = set()
    for tp in rs.tp:
        for dp in rs.dp:
            for pp in rs.pp:
                for ep_symbol in rs.ep:
                    par = Parallelism(tp=tp, dp=dp, pp=pp, ep=tp * dp if ep_symbol == _EP_ALL else 1)
                    if par not in seen:
                        seen.add(par)
                        out.append(Shape(par, ep_symbol))
    return tuple(out)


def _valid_shapes(space: SearchSpace, role: str, problem: Problem) -> tuple[Shape, ...]:
    """Layouts of ``role`` passing the per-worker rules whose weights fit in memory with the
    most lenient knobs of the space (so no layout that could fit is dropped)."""
    rs = space.role(role)
    lenient = EngineKnobs(
        max_num_seqs=min(rs.max_num_seqs),
        max_num_batched_tokens=min(rs.max_num_batched_tokens),
        gpu_memory_utilization=max(space.gpu_memory_utilization),
    )
    out = []
    for shape in _all_shapes(rs):
        if shape.gpus > problem.gpus:
            continue
        group = WorkerGroup(shape.parallel, 1, lenient)
        if worker_reason(role, group, problem) is not None:
            continue
        mem = worker_memory(group, problem)
        if mem.weights + mem.reserve <= mem.capacity:
            out.append(shape)
    return tuple(out)
