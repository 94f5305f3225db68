"""Deterministic latency spread and the LoadPoint assembly shared by agg and disagg.

The simulator predicts means from a fluid model; percentiles come from closed-form spread
models (normal approximation of averages, exponential waiting-time tails), never from random
sampling, so a prediction is a pure function of its inputs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from serving import LoadPoint

__all__ = [
    "NOMINAL_ROUNDS",
    "QUANTILES",
    "Latencies",
    "Z",
    "build_point",
    "mean_wait",
    "prefill_wait",
    "wait_quantile",
]

#: The percentiles every LoadPoint carries, as probabilities.
QUANTILES = (0.5, 0.9, 0.99)
#: Standard-normal quantiles for (p50, p90, p99).
Z = (0.0, 1.2816, 2.3263)
#: A benchmark run sends about ten requests per user (vLLM bench / InferenceX use
#: num_prompts = 10 x concurrency); the point reports that many requests.
NOMINAL_ROUNDS = 10
#: Highest utilisation a queue formula is evaluated at (M/D/1 waits diverge at 1).
MAX_RHO = 0.95


def wait_quantile(rho: float, service_s: float, q: float) -> float:
    """q-quantile of an M/D/1-like waiting time at utilisation ``rho``.

    Mean wait is ``service * rho / (2 (1 - rho))`` (Pollaczek-Khinchine, deterministic
    service); the tail is taken exponential, ``P(W > w) = rho * exp(-w / theta)`` with
    ``theta = mean / rho``, so a fraction ``1 - rho`` of arrivals does not wait at all.
    """
    rho = min(max(rho, 0.0), MAX_RHO)
    if rho <= 0.0 or q <= 1.0 - rho:
        return 0.0
    theta = service_s / (2.0 * (1.0 - rho))
    return theta * math.log(rho / (1.0 - q))


def mean_wait(rho: float, service_s: float) -> float:
    """Mean of :func:`wait_quantile`'s distribution."""
    rho = min(max(rho, 0.0), MAX_RHO)
    return service_s * rho / (2.0 * (1.0 - rho))


def prefill_wait(q: float, cohort: float, isl: int, step_tokens: float, min_steps: int) -> float:
    """Prefill steps until the prompt at quantile ``q`` of a burst of ``cohort`` prompts is done.

    The prompts ahead of it (``q (cohort - 1)``) and its own are prefilled first-come first-
    served, ``step_tokens`` per step; a prompt needs at least ``min_steps`` (its own chunks).
    """
    position = 1.0 + q * max(cohort - 1.0, 0.0)
    return max(float(min_steps), math.ceil(position * isl / step_tokens - 1e-9))


@dataclass(frozen=True)
class Latencies:
    """Per-percentile latencies in seconds, (p50, p90, p99) each, and the request rate."""

    ttft: tuple[float, ...]
    tpot: tuple[float, ...]
    itl: tuple[float, ...]
    requests_s: float


def build_point(lat: Latencies, *, concurrency: int, gpus: int, isl: int, osl: int) -> LoadPoint:
    """Turn seconds into a :class:`~serving.LoadPoint` with per-GPU throughputs."""
    ttft = sorted(1e3 * v for v in lat.ttft)
    tpot = sorted(1e3 * v for v in lat.tpot)
    itl = sorted(1e3 * v for v in lat.itl)
    decode_steps = max(osl - 1, 0)
    e2e = [ttft[i] + decode_steps * tpot[i] for i in range(3)]
    return LoadPoint.from_percentiles(
        concurrency=concurrency,
        gpus=gpus,
        ttft_ms=ttft,
        tpot_ms=tpot,
        itl_ms=itl,
        e2e_ms=e2e,
        tokens_s=lat.requests_s * (isl + osl),
        output_tokens_s=lat.requests_s * osl,
        requests_s=lat.requests_s,
        num_requests=NOMINAL_ROUNDS * concurrency,
    )
