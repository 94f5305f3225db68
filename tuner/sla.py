"""The interactivity SLA and how a load point is judged against it."""

from __future__ import annotations

from dataclasses import dataclass

from serving import LoadPoint

from .goodput import goodput

__all__ = ["CAPACITY_PENALTY", "SLA"]

#: Shortfall of a point exactly at capacity (utilization 1): not met, and farther from it
#: than a point a few percent short of a latency limit.
CAPACITY_PENALTY = 0.1


@dataclass(frozen=True)
class SLA:
    """Service-level targets. ``min_tok_s_user`` is interactivity (1000 / median TPOT);
    ``max_ttft_ms``, ``max_tpot_ms`` and ``max_e2e_ms`` apply at ``percentile`` (50, 90 or
    99, over requests); ``min_goodput`` is the least share of requests that must meet every
    latency limit at once (:mod:`tuner.goodput`). An open-loop point past its capacity
    (arrivals faster than it serves) never meets an SLA: constraint ``capacity``.
    ``confidence``: the robust pick's one-sided confidence (``tuner/confidence.py``); None =
    0.6 (``DEFAULT_CONFIDENCE``) for estimated (simulator) points, off for measured ones."""

    min_tok_s_user: float = 0.0
    max_ttft_ms: float | None = None
    max_tpot_ms: float | None = None
    percentile: int = 50
    max_e2e_ms: float | None = None
    min_goodput: float | None = None
    confidence: float | None = None

    def check(self, point: LoadPoint) -> dict[str, float]:
        """Relative shortfall per violated constraint (0 < x); empty when the SLA is met."""
        out: dict[str, float] = {}
        if self.min_tok_s_user and point.tok_s_user < self.min_tok_s_user:
            out["min_tok_s_user"] = 1.0 - point.tok_s_user / self.min_tok_s_user
        if self.max_ttft_ms is not None:
            ttft = point.metric("ttft_ms", self.percentile)
            if ttft > self.max_ttft_ms:
                out["max_ttft_ms"] = ttft / self.max_ttft_ms - 1.0
        if self.max_tpot_ms is not None:
            tpot = point.metric("tpot_ms", self.percentile)
            if tpot > self.max_tpot_ms:
                out["max_tpot_ms"] = tpot / self.max_tpot_ms - 1.0
        if self.max_e2e_ms is not None:
            e2e = point.metric("e2e_ms", self.percentile)
            if e2e > self.max_e2e_ms:
                out["max_e2e_ms"] = e2e / self.max_e2e_ms - 1.0
        if point.past_capacity:
            # The queue grows without bound; the shortfall grows with the overload.
            out["capacity"] = point.utilization - 1.0 + CAPACITY_PENALTY
        if self.min_goodput is not None:
            share = goodput(point, self)
            if share < self.min_goodput:
                out["min_goodput"] = 1.0 - share / self.min_goodput
        return out

    def meets(self, point: LoadPoint) -> bool:
        return not self.check(point)

    def violation(self, point: LoadPoint) -> float:
        """Sum of relative shortfalls: 0 when met, larger the further away."""
        return sum(self.check(point).values())

    def describe(self) -> str:
        parts = [f"tok/s/user >= {self.min_tok_s_user:g}"] if self.min_tok_s_user else []
        if self.max_ttft_ms is not None:
            parts.append(f"TTFT p{self.percentile} <= {self.max_ttft_ms:g} ms")
        if self.max_tpot_ms is not None:
            parts.append(f"TPOT p{self.percentile} <= {self.max_tpot_ms:g} ms")
        if self.max_e2e_ms is not None:
            parts.append(f"E2E p{self.percentile} <= {self.max_e2e_ms:g} ms")
        if self.min_goodput is not None:
            parts.append(f"goodput >= {self.min_goodput:g}")
        text = ", ".join(parts) or "none"
        return text if self.confidence is None else f"{text} at confidence {self.confidence:g}"
