"""The Pareto front of throughput per GPU against interactivity: a pure function."""

from __future__ import annotations

from collections.abc import Sequence

from .results import MeasuredPoint

__all__ = ["pareto_front"]


def pareto_front(points: Sequence[MeasuredPoint], throughput: str = "tok_s_gpu") -> list[MeasuredPoint]:
    """Points not dominated in (tok_s_gpu, tok_s_user), both maximised; sorted by
    interactivity ascending (the chart's x axis).

    tok/s/GPU already divides by all GPUs of each deployment (prefill + decode), so
    deployments of different sizes compare fairly. Exact duplicates keep the first seen.
    Open-loop points past capacity are left out: their queue grows without bound, so they
    are not operating points (their throughput is the capacity, reached by a stable point
    just below it). ``throughput``: the LoadPoint field maximised (``output_tok_s_gpu`` for
    the cost front, :func:`tuner.cost.cost_front`).
    """
    # Sweep from the most interactive point down: a point is on the front when its
    # throughput beats every more-interactive point seen so far.
    stable = [m for m in points if not m.point.past_capacity]
    ordered = sorted(stable, key=lambda m: (-m.point.tok_s_user, -m.point.metric(throughput)))
    front: list[MeasuredPoint] = []
    best_gpu = float("-inf")
    for m in ordered:
        if m.point.metric(throughput) > best_gpu:
            front.append(m)
            best_gpu = m.point.metric(throughput)
    front.reverse()
    return front
