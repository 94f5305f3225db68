"""LoadPoint: one measured (or predicted) operating point of a deployment."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

__all__ = ["PERCENTILES", "LoadPoint"]

PERCENTILES = (50, 90, 99)


@dataclass(frozen=True)
class LoadPoint:
    """A deployment at one closed-loop concurrency.

    ``tok_s_user`` = 1000 / median TPOT; ``tok_s_gpu`` = (input + output) tokens/s over all
    GPUs of the deployment (prefill + decode); ``output_tok_s_gpu`` counts output tokens only.
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
