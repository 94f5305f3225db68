"""Capacity: how many replicas of a deployment serve R requests/s within the SLA, on how
many GPUs and nodes, at what cost. Pure functions over load points, like the front and the
pick.

A replica is one whole deployment as it was measured (for disagg: its prefill and decode
pools together), so scaling by replicas keeps the P:D worker ratio exactly. One replica's
capacity is the ``requests_s`` its load point sustains within the SLA: the closed-loop
throughput at that concurrency today, the sustained arrival rate of an open-loop point
alike. Replicas = ceil(R x (1 + headroom) / capacity), at least one.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from serving import Deployment, LoadPoint
from serving.launch import node_count

from .cost import usd_per_mtok, usd_per_mtok_at, usd_per_mtok_output
from .errors import NoFeasiblePick
from .pick import explain_infeasible, pick_best
from .results import MeasuredPoint
from .sla import SLA

__all__ = [
    "MAX_PLAN_GPUS",
    "ReplicaPlan",
    "capacity_point",
    "plan_capacity",
    "plan_deployment",
    "replicas_for",
    "scale",
]

#: The most GPUs a plan row is laid out on (nodes counted, export possible); above it the
#: row only says how many GPUs it would need. The spec's own fleet bound (tuner/spec.py).
MAX_PLAN_GPUS = 1_000_000
#: Relative slack when the rate is an exact multiple of a replica's capacity, so float
#: rounding (3 x 0.1 = 0.30000000000000004) does not add a replica.
_EXACT = 1e-9


def replicas_for(rate_rps: float, replica_rps: float, headroom: float) -> int:
    """Replicas whose summed capacity is at least ``rate_rps x (1 + headroom)``."""
    if not replica_rps > 0:
        raise ValueError(f"a replica's capacity must be > 0 requests/s, got {replica_rps}")
    need = rate_rps * (1.0 + headroom) / replica_rps
    return max(1, math.ceil(need * (1.0 - _EXACT)))


def scale(deployment: Deployment, replicas: int) -> Deployment:
    """``replicas`` copies of the deployment as one: every pool's worker count times
    ``replicas`` (agg workers, or prefill and decode workers: the P:D ratio is kept)."""
    groups = {
        role: dataclasses.replace(g, count=g.count * replicas) for role, g in deployment.groups().items()
    }
    return Deployment(mode=deployment.mode, **groups)


def capacity_point(points: Sequence[MeasuredPoint], sla: SLA) -> MeasuredPoint | None:
    """Of one deployment's points, the one meeting the SLA with the most requests/s (then
    the most tok/s/GPU); None when none meets it."""
    ok = [m for m in points if sla.meets(m.point)]
    return max(ok, key=lambda m: (m.point.requests_s, m.point.tok_s_gpu), default=None)


@dataclass(frozen=True)
class ReplicaPlan:
    """One deployment sized for a rate. ``deployment`` is all replicas as one deployment
    (what ``tuner plan --export`` writes); ``point`` the per-replica operating point."""

    role: Literal["pick", "front"]
    trial: int
    replica: Deployment
    point: LoadPoint
    rate_rps: float
    headroom: float
    replicas: int
    deployment: Deployment | None  # None above MAX_PLAN_GPUS
    gpus: int
    nodes: int | None
    usd_per_gpu_hour: float | None

    @property
    def capacity_rps(self) -> float:
        return self.replicas * self.point.requests_s

    @property
    def spare(self) -> float:
        """Capacity above the rate, as a fraction of the rate (>= the headroom asked)."""
        return self.capacity_rps / self.rate_rps - 1.0

    @property
    def usd_per_hour(self) -> float | None:
        return None if self.usd_per_gpu_hour is None else self.usd_per_gpu_hour * self.gpus

    @property
    def usd_per_mtok(self) -> float | None:
        """$/Mtok in and out at the operating point (every GPU busy)."""
        return usd_per_mtok(self.point, self.usd_per_gpu_hour)

    @property
    def usd_per_mtok_output(self) -> float | None:
        """$/Mtok of output at the operating point (every GPU busy)."""
        return usd_per_mtok_output(self.point, self.usd_per_gpu_hour)

    @property
    def usd_per_mtok_at_rate(self) -> float | None:
        """$/Mtok in and out of the whole planned fleet serving exactly ``rate_rps``: the
        headroom and the last replica's unused share are paid for too."""
        return self._usd_per_mtok_at_rate(self.point.tok_s_gpu)

    @property
    def usd_per_mtok_output_at_rate(self) -> float | None:
        """$/Mtok of output of the whole planned fleet serving exactly ``rate_rps``."""
        return self._usd_per_mtok_at_rate(self.point.output_tok_s_gpu)

    def _usd_per_mtok_at_rate(self, tok_s_gpu: float) -> float | None:
        """At the rate, for the token basis whose per-GPU rate at the point is ``tok_s_gpu``."""
        p, cost = self.point, self.usd_per_hour
        if cost is None or p.requests_s <= 0:
            return None
        tokens_per_request = tok_s_gpu * self.replica.gpus() / p.requests_s
        return usd_per_mtok_at(cost, self.rate_rps * tokens_per_request)

    def workers(self) -> dict[str, int]:
        """Workers per role of all replicas (``agg``, or ``prefill`` and ``decode``)."""
        return {role: g.count * self.replicas for role, g in self.replica.groups().items()}


def plan_deployment(
    m: MeasuredPoint,
    *,
    role: Literal["pick", "front"],
    rate_rps: float,
    headroom: float,
    gpus_per_node: int,
    usd_per_gpu_hour: float | None,
) -> ReplicaPlan:
    """Size the deployment of ``m`` for ``rate_rps`` at ``m``'s requests/s per replica."""
    replicas = replicas_for(rate_rps, m.point.requests_s, headroom)
    gpus = replicas * m.deployment.gpus()
    scaled = scale(m.deployment, replicas) if gpus <= MAX_PLAN_GPUS else None
    return ReplicaPlan(
        role=role,
        trial=m.trial,
        replica=m.deployment,
        point=m.point,
        rate_rps=rate_rps,
        headroom=headroom,
        replicas=replicas,
        deployment=scaled,
        gpus=gpus,
        nodes=None if scaled is None else node_count(scaled, gpus_per_node),
        usd_per_gpu_hour=usd_per_gpu_hour,
    )


def plan_capacity(
    points: Sequence[MeasuredPoint],
    front: Sequence[MeasuredPoint],
    sla: SLA,
    *,
    rate_rps: float,
    headroom: float,
    gpus_per_node: int,
    usd_per_gpu_hour: float | None,
) -> list[ReplicaPlan]:
    """The pick's deployment, then the other topologies of ``front``, fewest GPUs first;
    each sized for ``rate_rps`` at its own capacity point (:func:`capacity_point`). A
    topology (label) measured with several engine settings is planned with the one
    needing the fewest GPUs; one with no point meeting the SLA is left out. Raises
    :class:`NoFeasiblePick` when nothing meets the SLA (nothing can be planned)."""
    if not points:
        raise NoFeasiblePick(explain_infeasible(points, sla))
    pick = pick_best(points, sla)
    by_key: dict[str, list[MeasuredPoint]] = {}
    for m in points:
        by_key.setdefault(m.deployment.key(), []).append(m)

    def size(m: MeasuredPoint, role: Literal["pick", "front"]) -> ReplicaPlan:
        return plan_deployment(
            m,
            role=role,
            rate_rps=rate_rps,
            headroom=headroom,
            gpus_per_node=gpus_per_node,
            usd_per_gpu_hour=usd_per_gpu_hour,
        )

    first = capacity_point(by_key[pick.chosen.deployment.key()], sla)
    assert first is not None  # the pick's own point meets the SLA
    best: dict[str, ReplicaPlan] = {first.label: size(first, "pick")}
    for key in dict.fromkeys(m.deployment.key() for m in front):
        cap = capacity_point(by_key[key], sla)
        if cap is None or cap.label == first.label:
            continue
        plan = size(cap, "front")
        held = best.get(cap.label)
        if held is None or (plan.gpus, -plan.capacity_rps) < (held.gpus, -held.capacity_rps):
            best[cap.label] = plan
    others = sorted(list(best.values())[1:], key=lambda p: (p.gpus, -p.capacity_rps, p.replica.label()))
    return [best[first.label], *others]
