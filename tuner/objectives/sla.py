"""Objective ``sla``: the best tok/s/GPU among points meeting the SLA (the pick's own rule)."""

from __future__ import annotations

from collections.abc import Sequence

from serving import LoadPoint

from ..front import pareto_front
from ..sla import SLA
from .base import Objective

__all__ = ["OBJECTIVE"]


def values(points: Sequence[LoadPoint], sla: SLA) -> tuple[list[float], float]:
    """Max tok/s/GPU over points meeting the SLA (violation 0); when none meets it, the
    tok/s/GPU of the point nearest to the SLA, with its positive violation, so the sampler
    learns which way the feasible region lies."""
    ok = [p.tok_s_gpu for p in points if sla.meets(p)]
    if ok:
        return [max(ok)], 0.0
    nearest = min(points, key=sla.violation)
    return [nearest.tok_s_gpu], sla.violation(nearest)


OBJECTIVE = Objective("sla", "best tok/s/GPU at the SLA", 1, values, pareto_front)
