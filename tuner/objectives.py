"""Study objectives: what Optuna maximises per trial, and the front a run reports.

One registry entry per objective (:data:`OBJECTIVES`); ``study.objective`` in the spec names
one. Every value is maximised (Optuna directions all MAXIMIZE), and the first value is the
one a screening or the guided search ranks candidates by.

- ``sla``: the best tok/s/GPU among points meeting the SLA (the pick's own rule).
- ``front``: how far the deployment's curve reaches along each axis of the main chart
  (max tok/s/GPU, max tok/s/user).
- ``cost``: the same on the cost chart: least $ per million output tokens, reported as its
  price-free reciprocal, million output tokens per GPU-hour (at one price the two rank the
  same, and a price change then changes no stored trial value), and max tok/s/user. Its
  front is tok/s/user against $/Mtok (:func:`tuner.cost.cost_front`).
- ``energy``: max output tokens per joule and max tok/s/user; its front is tok/s/user
  against tok/J (:mod:`tuner.energy`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from serving import LoadPoint

from .cost import cost_front, mtok_per_gpu_hour
from .energy import energy_front, energy_values
from .front import pareto_front
from .results import MeasuredPoint
from .sla import SLA

__all__ = ["OBJECTIVES", "Objective", "get_objective"]

#: (trial values, SLA violation: 0 when met) of a deployment's load points.
Values = Callable[[Sequence[LoadPoint], SLA], tuple[list[float], float]]
Front = Callable[[Sequence[MeasuredPoint]], list[MeasuredPoint]]


@dataclass(frozen=True)
class Objective:
    """``values`` turns a trial's points into its (maximised) values and SLA violation;
    ``front`` is the front the run writes to ``front.csv``."""

    name: str
    help: str
    n_values: int
    values: Values
    front: Front


def _sla_values(points: Sequence[LoadPoint], sla: SLA) -> tuple[list[float], float]:
    """Max tok/s/GPU over points meeting the SLA (violation 0); when none meets it, the
    tok/s/GPU of the point nearest to the SLA, with its positive violation, so the sampler
    learns which way the feasible region lies."""
    ok = [p.tok_s_gpu for p in points if sla.meets(p)]
    if ok:
        return [max(ok)], 0.0
    nearest = min(points, key=sla.violation)
    return [nearest.tok_s_gpu], sla.violation(nearest)


def _front_values(points: Sequence[LoadPoint], sla: SLA) -> tuple[list[float], float]:
    return [max(p.tok_s_gpu for p in points), max(p.tok_s_user for p in points)], 0.0


def _cost_values(points: Sequence[LoadPoint], sla: SLA) -> tuple[list[float], float]:
    return [max(mtok_per_gpu_hour(p) for p in points), max(p.tok_s_user for p in points)], 0.0


OBJECTIVES: dict[str, Objective] = {
    "sla": Objective("sla", "best tok/s/GPU at the SLA", 1, _sla_values, pareto_front),
    "front": Objective("front", "tok/s/GPU and tok/s/user", 2, _front_values, pareto_front),
    "cost": Objective("cost", "$/Mtok and tok/s/user", 2, _cost_values, cost_front),
    "energy": Objective("energy", "tok/J and tok/s/user", 2, energy_values, energy_front),
}


def get_objective(name: str) -> Objective:
    """The registered objective ``name`` (the spec parser has checked the name)."""
    return OBJECTIVES[name]
