"""Objective ``cost``: the front on the cost chart: least $ per million output tokens,
reported as its price-free reciprocal, million output tokens per GPU-hour (at one price the
two rank the same, and a price change then changes no stored trial value), and max
tok/s/user. Its front is tok/s/user against $/Mtok (:func:`tuner.cost.cost_front`)."""

from __future__ import annotations

from collections.abc import Sequence

from serving import LoadPoint

from ..cost import cost_front, mtok_per_gpu_hour
from ..sla import SLA
from .base import Objective

__all__ = ["OBJECTIVE"]


def values(points: Sequence[LoadPoint], sla: SLA) -> tuple[list[float], float]:
    return [max(mtok_per_gpu_hour(p) for p in points), max(p.tok_s_user for p in points)], 0.0


OBJECTIVE = Objective("cost", "$/Mtok and tok/s/user", 2, values, cost_front)
