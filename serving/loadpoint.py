"""LoadPoint: one measured (or predicted) operating point of a deployment."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

__all__ = ["PERCENTILES", "LoadPoint"]

PERCENTILES = (50, 90, 99)


@dataclass(frozen=True)
class LoadPoint:
    """A deployment at one load: a closed-loop concurrency or an open-loop arrival rate.

    ``tok_s_user`` = 1000 / median TPOT; ``tok_s_gpu`` = (input + output) tokens/s over all
    GPUs of the deployment (prefill + decode); ``output_tok_s_gpu`` counts output tokens only.
    ``request_rate_rps`` is the open-loop arrival rate (NaN for a closed loop, where
    ``concurrency`` is the load; open loop, ``concurrency`` is the mean number of requests in
    flight). ``utilization`` is the arrival rate over the deployment's capacity (NaN when not
    known): at 1 or more the queue grows without bound and the latencies only say how long
    the benchmark ran, so no SLA accepts such a point.
    """

    concurrency: int
    gpus: int
    ttft_ms_p50: float
    ttft_ms_p90: float
    ttft_ms_p99: float
    tpot_ms_p50: float
    tpot_ms_p90: float
    tpot_ms_p99: float
    tok_s_user: float
    tok_s_gpu: float
    output_tok_s_gpu: float
    requests_s: float
    itl_ms_p50: float = float("nan")
    itl_ms_p90: float = float("nan")
    itl_ms_p99: float = float("nan")
    e2e_ms_p50: float = float("nan")
    e2e_ms_p90: float = float("nan")
    e2e_ms_p99: float = float("nan")
    num_requests: int = 0
    request_rate_rps: float = float("nan")
    utilization: float = float("nan")

    # Estimated points (the simulator) carry a calibrated 80% interval of the measured value
    # per metric (backends/simulator/intervals.py); measured points leave them NaN.
    ttft_ms_low: float = float("nan")
    ttft_ms_high: float = float("nan")
    tpot_ms_low: float = float("nan")
    tpot_ms_high: float = float("nan")
    tok_s_gpu_low: float = float("nan")
    tok_s_gpu_high: float = float("nan")

    @property
    def open_loop(self) -> bool:
        return math.isfinite(self.request_rate_rps)

    @property
    def load_key(self) -> float:
        """The load this point was measured at: the arrival rate (open loop) or the
        concurrency (closed loop); what a ladder is matched on (resume, guided, check)."""
        return self.request_rate_rps if self.open_loop else float(self.concurrency)

    @property
    def past_capacity(self) -> bool:
        """Open-loop arrivals faster than the deployment serves: an unbounded queue."""
        return self.utilization >= 1.0

    @classmethod
    def from_percentiles(
        cls,
        *,
        concurrency: int,
        gpus: int,
        ttft_ms: Sequence[float],
        tpot_ms: Sequence[float],
        itl_ms: Sequence[float],
        e2e_ms: Sequence[float],
        tokens_s: float,
        output_tokens_s: float,
        requests_s: float,
        num_requests: int,
    ) -> LoadPoint:
        """A point from (p50, p90, p99) latency triples and whole-deployment throughputs.

        The metric definitions live here, once: tok/s/user = 1000 / median TPOT (NaN when
        TPOT is 0, i.e. one-token outputs), per-GPU figures divide by all ``gpus``.
        """
        return cls(
            concurrency=concurrency,
            gpus=gpus,
            ttft_ms_p50=ttft_ms[0],
            ttft_ms_p90=ttft_ms[1],
            ttft_ms_p99=ttft_ms[2],
            tpot_ms_p50=tpot_ms[0],
            tpot_ms_p90=tpot_ms[1],
            tpot_ms_p99=tpot_ms[2],
            itl_ms_p50=itl_ms[0],
            itl_ms_p90=itl_ms[1],
            itl_ms_p99=itl_ms[2],
            e2e_ms_p50=e2e_ms[0],
            e2e_ms_p90=e2e_ms[1],
            e2e_ms_p99=e2e_ms[2],
            tok_s_user=1000.0 / tpot_ms[0] if tpot_ms[0] > 0 else float("nan"),
            tok_s_gpu=tokens_s / gpus,
            output_tok_s_gpu=output_tokens_s / gpus,
            requests_s=requests_s,
            num_requests=num_requests,
        )

    def metric(self, name: str, percentile: int = 50) -> float:
        """``metric("ttft_ms", 90)`` -> ``ttft_ms_p90``; plain names pass through."""
        if name in ("ttft_ms", "tpot_ms", "itl_ms", "e2e_ms"):
            return float(getattr(self, f"{name}_p{percentile}"))
        return float(getattr(self, name))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LoadPoint:
        kinds = {f.name: f.type for f in fields(cls)}
        out: dict[str, Any] = {}
        for name, kind in kinds.items():
            if name in data and data[name] not in (None, ""):
                out[name] = int(float(data[name])) if kind in ("int", int) else float(data[name])
        return cls(**out)
