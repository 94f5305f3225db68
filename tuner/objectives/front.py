"""Objective ``front``: how far the deployment's curve reaches along each axis of the main
chart (max tok/s/GPU, max tok/s/user)."""

from __future__ import annotations

from collections.abc import Sequence

from serving import LoadPoint

from ..front import pareto_front
from ..sla import SLA
from .base import Objective

__all__ = ["OBJECTIVE"]


def values(points: Sequence[LoadPoint], sla: SLA) -> tuple[list[float], float]:
    return [max(p.tok_s_gpu for p in points), max(p.tok_s_user for p in points)], 0.0


OBJECTIVE = Objective("front", "tok/s/GPU and tok/s/user", 2, values, pareto_front)
