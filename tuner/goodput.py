"""Goodput: the share of a load point's requests that meet every latency limit of the SLA.

A pure function of a :class:`~serving.LoadPoint` and an SLA, the same for measured and
predicted points, since a point carries percentiles, not its requests.

How the share is estimated. Each metric's distribution over requests is known at three
quantiles (p50, p90, p99). Between them its CDF is interpolated linearly in the tail
coordinate ``y = -ln(1 - q)`` (y = 0.69, 2.30, 4.61): exact for an exponential tail, the
shape of a queueing wait, and close for a normal's body. Above p99 the p90-p99 slope
continues (an exponential tail); below p50 the p50-p90 slope continues down to ``q = 0``.
Equal quantiles mean no spread: every request sits at that value.

The joint share: TTFT and TPOT are taken as independent (a request's wait for prefill and
the batches it later decodes in have different causes), so both are met by
``P(TTFT) x P(TPOT)``; end-to-end latency is mostly their sum, so its misses largely
coincide with theirs and the joint share is ``min(P(E2E), P(TTFT) x P(TPOT))``. A point past
capacity (open-loop arrivals faster than it serves) has goodput 0: its queue, and so every
latency, grows without bound.

``vllm bench serve --goodput`` reports the *rate* of such requests: this share times the
point's request rate (:func:`goodput_rps`).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from serving import LoadPoint

if TYPE_CHECKING:
    from .sla import SLA

__all__ = ["goodput", "goodput_rps", "share_within"]

_Y = tuple(-math.log(1.0 - q) for q in (0.5, 0.9, 0.99))


def share_within(point: LoadPoint, metric: str, limit_ms: float) -> float:
    """Estimated share of requests whose ``metric`` (``ttft_ms``, ``tpot_ms``, ``e2e_ms``) is
    at most ``limit_ms``; NaN when the point does not report that metric."""
    xs = [point.metric(metric, p) for p in (50, 90, 99)]
    if not all(math.isfinite(x) for x in xs):
        return math.nan
    x50, x90, x99 = sorted(xs)
    if limit_ms >= x99:
        if x99 <= x90:
            return 1.0
        y = _Y[2] + (limit_ms - x99) * (_Y[2] - _Y[1]) / (x99 - x90)
    elif limit_ms >= x90:
        y = _Y[1] + (limit_ms - x90) * (_Y[2] - _Y[1]) / (x99 - x90)
    elif limit_ms >= x50:
        y = _Y[0] + (limit_ms - x50) * (_Y[1] - _Y[0]) / (x90 - x50) if x90 > x50 else _Y[0]
    else:
        if x90 <= x50:
            return 0.0
        y = _Y[0] - (x50 - limit_ms) * (_Y[1] - _Y[0]) / (x90 - x50)
        if y <= 0.0:
            return 0.0
    return 1.0 - math.exp(-y)


def goodput(point: LoadPoint, sla: SLA) -> float:
    """Share of the point's requests meeting every latency limit of ``sla`` (1.0 when it
    sets none; 0.0 past capacity). See the module doc for the estimate."""
    if point.past_capacity:
        return 0.0
    shares = {
        metric: share_within(point, metric, limit)
        for metric, limit in (
            ("ttft_ms", sla.max_ttft_ms),
            ("tpot_ms", sla.max_tpot_ms),
            ("e2e_ms", sla.max_e2e_ms),
        )
        if limit is not None
    }
    shares = {k: v for k, v in shares.items() if not math.isnan(v)}
    both = shares.get("ttft_ms", 1.0) * shares.get("tpot_ms", 1.0)
    return min(shares.get("e2e_ms", 1.0), both)


def goodput_rps(point: LoadPoint, sla: SLA) -> float:
    """Requests per second that meet every limit (``vllm bench serve --goodput``'s figure)."""
    return goodput(point, sla) * point.requests_s
