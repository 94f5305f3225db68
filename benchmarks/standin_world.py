"""A stand-in "live" world for testing simulator-guided search without GPUs.

The simulator with hidden, perturbed global constants plus multiplicative measurement noise.
Some perturbed constants are among those :mod:`tuner.guided` refits (so a refit can find
them), others are not (communication efficiency, KV-transfer cost, kernel speed), so the
guided search also faces model error it cannot fit away, as it would on real GPUs.

Not a product backend: it is never registered in ``backends.registry``; tests and
``benchmarks/search_efficiency.py`` construct it directly.
"""

from __future__ import annotations

import hashlib
import math
import random
from dataclasses import replace
from typing import Any

from backends.base import PointCallback
from backends.simulator import SimulatorBackend
from serving import Deployment, LoadPoint, Problem

__all__ = ["HIDDEN_MULTIPLIERS", "StandInWorld"]

#: Hidden truth: constant name -> multiplier on the packaged constants. The first five are
#: refitted by the guided search (for Hopper and Blackwell, vLLM); the last three are not.
HIDDEN_MULTIPLIERS = {
    "hbm_efficiency": 0.82,
    "hbm_efficiency_blackwell": 0.85,
    "gemm_compute_efficiency": 0.8,
    "gemm_compute_efficiency_blackwell": 0.78,
    "step_overhead_us_vllm": 1.6,
    "request_overhead_us_vllm": 0.6,
    "moe_imbalance": 1.25,
    "comm_efficiency": 0.85,
    "kv_transfer_fixed_us": 2.0,
    "kernel_speed_vllm": 0.95,
}


class StandInWorld(SimulatorBackend):
    """The simulator with hidden constants (``HIDDEN_MULTIPLIERS`` x packaged values) and
    log-normal noise of ``noise`` (relative sigma) on throughput, TPOT and TTFT, drawn
    deterministically per (deployment, concurrency, ``seed``) so repeats agree."""

    name = "standin"
    instant = True

    def __init__(self, *, noise: float = 0.03, seed: int = 0, **options: Any) -> None:
        super().__init__(**options)
        base = self.constants
        self.constants = replace(base, **{k: getattr(base, k) * m for k, m in HIDDEN_MULTIPLIERS.items()})
        self.noise, self.seed = noise, seed
        self.measure_calls = 0

    def true_points(self, deployment: Deployment, problem: Problem) -> list[LoadPoint]:
        """The world's noiseless load points (its ground truth)."""
        return super().measure(deployment, problem)

    def measure(
        self, deployment: Deployment, problem: Problem, *, on_point: PointCallback | None = None
    ) -> list[LoadPoint]:
        """Noisy load points, as a live benchmark would report them."""
        self.measure_calls += 1
        out = []
        for point in self.true_points(deployment, problem):
            noisy = self._noisy(deployment, point)
            out.append(noisy)
            if on_point is not None:
                on_point(noisy)
        return out

    def _noisy(self, deployment: Deployment, point: LoadPoint) -> LoadPoint:
        digest = hashlib.sha256(f"{self.seed}:{deployment.key()}:{point.concurrency}".encode()).digest()
        rng = random.Random(digest)
        thr, tpot, ttft = (math.exp(rng.gauss(0.0, self.noise)) for _ in range(3))
        return replace(
            point,
            tok_s_gpu=point.tok_s_gpu * thr,
            output_tok_s_gpu=point.output_tok_s_gpu * thr,
            requests_s=point.requests_s * thr,
            tok_s_user=point.tok_s_user / tpot,
            tpot_ms_p50=point.tpot_ms_p50 * tpot,
            tpot_ms_p90=point.tpot_ms_p90 * tpot,
            tpot_ms_p99=point.tpot_ms_p99 * tpot,
            ttft_ms_p50=point.ttft_ms_p50 * ttft,
            ttft_ms_p90=point.ttft_ms_p90 * ttft,
            ttft_ms_p99=point.ttft_ms_p99 * ttft,
        )
