"""What a token costs: GPU-hour prices, $ per million output tokens, and the cost front.

Convention (the one API price lists and cost-per-token benchmarks quote): **$ per million
output tokens**. The whole GPU bill of a point is charged to the tokens it generates; input
(prompt) tokens are not counted, they are what the output tokens cost to read. So

    usd_per_mtok_output = usd_per_gpu_hour x GPUs / (output tokens per hour / 1e6)
                        = usd_per_gpu_hour / (output_tok_s_gpu x 3600 / 1e6)

with ``output_tok_s_gpu`` over all GPUs of the deployment (prefill + decode). At a fixed
price, $/Mtok is a decreasing function of output tok/s/GPU alone, so the cost front (least
$/Mtok at each interactivity) needs no price: the price only labels its axis. Pure
functions; the price comes from the spec (``hardware.usd_per_gpu_hour``) or the catalog
(``serving/data/gpu_prices.yaml``, with its sources).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from serving import LoadPoint
from serving.catalog import gpu_price_usd_per_hour

from .front import pareto_front
from .results import MeasuredPoint

__all__ = [
    "SECONDS_PER_HOUR",
    "cost_front",
    "mtok_per_gpu_hour",
    "spec_price",
    "usd_per_mtok",
]

SECONDS_PER_HOUR = 3600.0


def mtok_per_gpu_hour(point: LoadPoint) -> float:
    """Million output tokens one GPU of the deployment yields per hour at this point."""
    return point.output_tok_s_gpu * SECONDS_PER_HOUR / 1e6


def usd_per_mtok(point: LoadPoint, usd_per_gpu_hour: float | None) -> float | None:
    """$ per million output tokens at this point (every GPU busy at its measured rate), or
    None without a price or without output tokens."""
    rate = mtok_per_gpu_hour(point)
    if usd_per_gpu_hour is None or not math.isfinite(rate) or rate <= 0:
        return None
    return usd_per_gpu_hour / rate


def spec_price(gpu: str | None, override: float | None) -> float | None:
    """The price of the study's GPU: the spec's ``hardware.usd_per_gpu_hour`` when given,
    else the catalog default for ``gpu`` (None for a GPU the catalog does not price)."""
    if override is not None:
        return override
    return None if gpu is None else gpu_price_usd_per_hour(gpu)


def cost_front(points: Sequence[MeasuredPoint]) -> list[MeasuredPoint]:
    """Points not dominated in ($/Mtok, tok/s/user): the least cost per output token at
    each interactivity, both compared at one price, so ranked by output tok/s/GPU; sorted by
    interactivity ascending (the chart's x axis); past-capacity points left out, as on the main front."""
    return pareto_front(points, throughput="output_tok_s_gpu")
