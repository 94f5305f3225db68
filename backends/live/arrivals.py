"""When each request of an open-loop load point is sent: seconds from the point's start.

Definitions are those of ``vllm bench serve`` (``get_request`` in vllm/benchmarks/serve.py),
so that a rate here means what ``--request-rate`` means there:

- **Poisson / gamma** (``--request-rate R --burstiness b``): the gap before each request,
  the first included, is gamma-distributed with shape ``b`` and scale ``1 / (R b)`` (mean
  ``1 / R``, squared coefficient of variation ``1 / b``; ``b = 1`` is Poisson, ``b = inf``
  constant gaps). The cumulative send times are then rescaled so that the last one is at
  exactly ``N / R``: vLLM does this so that throughput does not vary by 1-2% with the seed.
- **Trace** (a dataset's ``arrival_s``): each request at its timestamp, counted from the
  trace's first arrival (an idle lead-in before it would measure nothing). With a target
  rate the trace is time-scaled so that its mean rate (requests after the first over the
  span, :attr:`serving.Workload.trace_rate_rps`) equals it; the gaps keep their shape.

Draws come from a :class:`numpy.random.Generator` the caller seeds (vLLM seeds numpy's
global generator; the schedules have the same distribution, not the same numbers).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

__all__ = ["gamma_schedule", "trace_schedule"]


def gamma_schedule(
    count: int, *, rate_rps: float, burstiness: float = 1.0, rng: np.random.Generator
) -> tuple[float, ...]:
    """Send times of ``count`` requests arriving at ``rate_rps`` with gamma gaps of shape
    ``burstiness`` (1: Poisson), the last rescaled to ``count / rate_rps``."""
    if count < 1:
        raise ValueError(f"count must be >= 1, got {count}")
    if not (rate_rps > 0 and math.isfinite(rate_rps)):
        raise ValueError(f"rate_rps must be finite and > 0, got {rate_rps}")
    if not burstiness > 0:
        raise ValueError(f"burstiness must be > 0, got {burstiness}")
    if math.isinf(burstiness):
        gaps = np.full(count, 1.0 / rate_rps)
    else:
        gaps = rng.gamma(shape=burstiness, scale=1.0 / (rate_rps * burstiness), size=count)
    times = np.cumsum(gaps)
    if times[-1] > 0:
        times *= (count / rate_rps) / times[-1]
    return tuple(float(t) for t in times)


def trace_schedule(arrivals_s: Sequence[float], *, rate_rps: float | None = None) -> tuple[float, ...]:
    """Send times from a trace's timestamps (non-decreasing seconds), from its first arrival;
    with ``rate_rps`` time-scaled so the trace's mean rate becomes ``rate_rps``."""
    if not arrivals_s:
        raise ValueError("a trace needs at least one arrival")
    times = np.asarray(arrivals_s, dtype=float)
    if not np.all(np.isfinite(times)) or np.any(np.diff(times) < 0):
        raise ValueError("trace arrivals must be finite and non-decreasing")
    times = times - times[0]
    if rate_rps is not None:
        if not (rate_rps > 0 and math.isfinite(rate_rps)):
            raise ValueError(f"rate_rps must be finite and > 0, got {rate_rps}")
        if len(times) < 2 or times[-1] <= 0:
            raise ValueError("a trace needs two distinct arrival times to be scaled to a rate")
        own_rate = (len(times) - 1) / times[-1]
        times = times * (own_rate / rate_rps)
    return tuple(float(t) for t in times)
