"""A stand-in "live" world for testing simulator-guided search without GPUs.

The simulator with hidden, perturbed global constants plus multiplicative measurement noise.
Some perturbed constants are among those :mod:`tuner.guided` refits (so a refit can find
them), others are not (communication efficiency, KV-transfer cost, kernel speed), so the
guided search also faces model error it cannot fit away, as it would on real GPUs.

Two worlds:

- ``default``: the fixed :data:`HIDDEN_MULTIPLIERS` for every seed. Whole families of
  deployments move together, so the simulator's prior ranking stays nearly right.
- ``harsh``: per-seed multipliers (:func:`harsh_multipliers`) drawn log-normally around
  the default ones over more constants (:data:`HARSH_SIGMAS`), most of them outside the
  refitted set (collective bandwidth and latency, KV hand-off, attention kernels, per-sequence
  host time, expert fixed cost), so topology families move relative to each other and the
  top of the prior ranking reorders. Still global constants only: no per-deployment term.

Not a product backend: it is never registered in ``backends.registry``; tests and
``benchmarks/search_efficiency.py`` construct it directly.
"""

from __future__ import annotations

import hashlib
import math
import random
from dataclasses import replace
from typing import Any

from backends.base import Capabilities, PointCallback
from backends.simulator import SimulatorBackend
from backends.simulator.constants import Constants
from serving import Deployment, LoadPoint, Problem

__all__ = ["HARSH_SIGMAS", "HIDDEN_MULTIPLIERS", "WORLDS", "StandInWorld", "harsh_multipliers"]

#: The worlds :class:`StandInWorld` can be.
WORLDS = ("default", "harsh")

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

#: Harsh world: log-normal sigma of each constant's multiplier around its default-world
#: value (1 for constants the default world leaves alone). Sized to what a calibration run
#: cannot pin down from the kernel tables alone: collective bandwidth and latency vary with
#: NCCL protocol and topology by tens of percent (nccl-tests busbw on NVLink vs IB), disagg
#: KV hand-off cost by ~2x between connectors, attention and per-kernel fixed costs by
#: ~1.5x between kernel libraries (h200.md "Caveats"); the refitted constants get a smaller
#: sigma so they stay findable. Constants not listed are the packaged ones.
HARSH_SIGMAS = {
    # refitted by tuner.guided
    "hbm_efficiency": 0.15,
    "hbm_efficiency_blackwell": 0.15,
    "gemm_compute_efficiency": 0.2,
    "gemm_compute_efficiency_blackwell": 0.2,
    "step_overhead_us_vllm": 0.3,
    "request_overhead_us_vllm": 0.3,
    "moe_imbalance": 0.2,
    # not refitted: move topology families relative to each other
    "comm_efficiency": 0.35,
    "nvlink_latency_us": 0.4,
    "ib_latency_us": 0.4,
    "kv_transfer_fixed_us": 0.4,
    "kernel_speed_vllm": 0.15,
    "attn_decode_hbm_efficiency": 0.2,
    "attn_prefill_efficiency": 0.35,
    "seq_overhead_us_vllm": 0.4,
    "kernel_fixed_scale": 0.3,
    "moe_expert_fixed_us": 0.4,
    "fp8_block_compute_scale": 0.3,
}
#: Harsh multipliers stay within this range of the packaged constants (physically plausible).
HARSH_RANGE = (0.4, 2.5)
#: Constants that are shares of a datasheet peak (at most 1) or ratios (at least 1).
_AT_MOST_ONE = (
    "hbm_efficiency",
    "hbm_efficiency_blackwell",
    "gemm_compute_efficiency",
    "gemm_compute_efficiency_blackwell",
    "comm_efficiency",
    "attn_decode_hbm_efficiency",
    "attn_prefill_efficiency",
    "fp8_block_compute_scale",
)
_AT_LEAST_ONE = ("moe_imbalance",)


def harsh_multipliers(seed: int, prior: Constants) -> dict[str, float]:
    """The harsh world's hidden multipliers on ``prior`` for ``seed``: deterministic per
    seed, within :data:`HARSH_RANGE`, and keeping every constant valid (efficiencies at
    most 1, imbalance at least 1)."""
    rng = random.Random(f"standin-harsh:{seed}")
    lo, hi = HARSH_RANGE
    out = {}
    for name, sigma in HARSH_SIGMAS.items():  # fixed order: the same draws per seed
        m = HIDDEN_MULTIPLIERS.get(name, 1.0) * math.exp(rng.gauss(0.0, sigma))
        m = min(max(m, lo), hi)
        value = getattr(prior, name)
        if name in _AT_MOST_ONE:
            m = min(m, 1.0 / value)
        if name in _AT_LEAST_ONE:
            m = max(m, 1.0 / value)
        out[name] = m
    return out


class StandInWorld(SimulatorBackend):
    """The simulator with hidden constants (``HIDDEN_MULTIPLIERS`` x packaged values, or
    :func:`harsh_multipliers` for ``world="harsh"``) and log-normal noise of ``noise``
    (relative sigma) on throughput, TPOT and TTFT, drawn deterministically per (deployment,
    concurrency, ``seed``) so repeats agree. ``seed`` also picks the harsh world's constants."""

    name = "standin"
    capabilities = Capabilities(instant=True)

    def __init__(self, *, noise: float = 0.03, seed: int = 0, world: str = "default", **options: Any) -> None:
        if world not in WORLDS:
            raise ValueError(f"world must be one of {', '.join(WORLDS)}; got {world!r}")
        super().__init__(**options)
        base = self.constants
        multipliers = HIDDEN_MULTIPLIERS if world == "default" else harsh_multipliers(seed, base)
        self.multipliers = dict(multipliers)
        self.constants = replace(base, **{k: getattr(base, k) * m for k, m in multipliers.items()})
        if world != "default":  # validate: a harsh draw must still be a legal constants set
            Constants.from_dict(self.constants.to_dict(), source="standin-harsh")
        self.noise, self.seed, self.world = noise, seed, world
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
