"""What a token costs: GPU-hour prices, $ per million tokens, and the cost front.

Two token bases, both over all GPUs of the deployment (prefill + decode), with every GPU
busy at the point's rate:

- ``usd_per_mtok``: per million tokens **in and out** (prompt + generated), the basis of the
  main chart's tok/s/GPU, as DESIGN.md defines the cost per million tokens:

      usd_per_mtok = usd_per_gpu_hour / (tok_s_gpu x 3600 / 1e6)

- ``usd_per_mtok_output``: per million **output** tokens, the convention of API price
  lists (the whole GPU bill charged to the generated tokens):

      usd_per_mtok_output = usd_per_gpu_hour / (output_tok_s_gpu x 3600 / 1e6)

For one workload the two differ by a constant factor, (input + output) / output tokens per
request, so they rank points alike. At a fixed price $/Mtok is a decreasing function of
tok/s/GPU alone, so the cost front (least $/Mtok at each interactivity) needs no price: the
price only labels its axis. Pure functions; the price comes from the spec
(``hardware.usd_per_gpu_hour``) or the catalog (``serving/data/gpu_prices.yaml``, with its
sources).
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
    "usd_per_mtok_at",
    "usd_per_mtok_output",
]

SECONDS_PER_HOUR = 3600.0


def mtok_per_gpu_hour(point: LoadPoint) -> float:
    """Million output tokens one GPU of the deployment yields per hour at this point."""
    return _mtok_per_hour(point.output_tok_s_gpu)


def _mtok_per_hour(tok_s: float) -> float:
    return tok_s * SECONDS_PER_HOUR / 1e6


def usd_per_mtok(point: LoadPoint, usd_per_gpu_hour: float | None) -> float | None:
    """$ per million tokens in and out at this point (every GPU busy at its measured rate),
    or None without a price or without tokens."""
    return usd_per_mtok_at(usd_per_gpu_hour, point.tok_s_gpu)


def usd_per_mtok_output(point: LoadPoint, usd_per_gpu_hour: float | None) -> float | None:
    """$ per million output tokens at this point (every GPU busy at its measured rate), or
    None without a price or without output tokens."""
    return usd_per_mtok_at(usd_per_gpu_hour, point.output_tok_s_gpu)


def usd_per_mtok_at(usd_per_hour: float | None, tok_s: float) -> float | None:
    """$ per million tokens of something that costs ``usd_per_hour`` and yields ``tok_s``
    tokens per second (one GPU at its rate, or a whole fleet), or None without a price or
    without tokens."""
    mtok_per_hour = _mtok_per_hour(tok_s)
    if usd_per_hour is None or not math.isfinite(mtok_per_hour) or mtok_per_hour <= 0:
        return None
    return usd_per_hour / mtok_per_hour


def spec_price(gpu: str | None, override: float | None) -> float | None:
    """The price of the study's GPU: the spec's ``hardware.usd_per_gpu_hour`` when given,
    else the catalog default for ``gpu`` (None for a GPU the catalog does not price)."""
    if override is not None:
        return override
    return None if gpu is None else gpu_price_usd_per_hour(gpu)


def cost_front(points: Sequence[MeasuredPoint]) -> list[MeasuredPoint]:
    """Points not dominated in ($/Mtok, tok/s/user): the least cost per token at each
    interactivity, both compared at one price, so ranked by output tok/s/GPU (for one
    workload the same order as tok/s/GPU, so either basis gives this front); sorted by
    interactivity ascending (the chart's x axis); past-capacity points left out, as on the main front."""
    return pareto_front(points, throughput="output_tok_s_gpu")
