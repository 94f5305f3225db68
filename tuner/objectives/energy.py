"""Objective ``energy``: output tokens per joule against interactivity, and its front.

Convention: **output tokens per joule** (``LoadPoint.tok_per_j``), the energy of all GPUs
of the deployment (prefill + decode) over the point's window charged to the tokens it
generates, as $/Mtok is (:mod:`tuner.cost`). Measured points carry NVML readings, simulated
ones the simulator's estimate (``backends/simulator/power.py``); a point without energy
(``energy_source: missing``, e.g. on a CPU) takes no part in the front.

Unlike $/Mtok, tok/J is not a function of output tok/s/GPU alone: a GPU that is busier draws
more power, so the energy front can keep a point that the throughput front drops, and the
other way round. Pure functions over load points.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from serving import LoadPoint

from ..front import pareto_front
from ..results import MeasuredPoint
from ..sla import SLA
from .base import Objective

__all__ = ["OBJECTIVE", "energy_front", "energy_values", "has_energy"]


def has_energy(point: LoadPoint) -> bool:
    """True when the point carries a usable tok/J (measured or estimated)."""
    return point.energy_source != "missing" and math.isfinite(point.tok_per_j) and point.tok_per_j > 0


def energy_values(points: Sequence[LoadPoint], sla: SLA) -> tuple[list[float], float]:
    """The trial's values: (max tok/J, max tok/s/user) over its points, SLA violation 0.
    tok/J is 0 when no point has energy (nothing to rank on that axis; the trial still
    counts for interactivity)."""
    tok_per_j = [p.tok_per_j for p in points if has_energy(p)]
    return [max(tok_per_j, default=0.0), max(p.tok_s_user for p in points)], 0.0


def energy_front(points: Sequence[MeasuredPoint]) -> list[MeasuredPoint]:
    """Points not dominated in (tok/J, tok/s/user), both maximised; sorted by interactivity
    ascending (the chart's x axis); past-capacity points and points without energy left out."""
    return pareto_front([m for m in points if has_energy(m.point)], throughput="tok_per_j")


OBJECTIVE = Objective("energy", "tok/J and tok/s/user", 2, energy_values, energy_front, estimates=True)
