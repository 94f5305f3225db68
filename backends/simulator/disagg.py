"""Disaggregated serving: a prefill pool, a decode pool and the KV hand-off between them.

Closed loop over ``C`` users. Each request is prefilled by one prefill DP rank, its prompt's
KV cache moves to a decode rank, and the decode rank generates ``osl - 1`` more tokens. The
pools run at their own rates: the prefill pool can complete at most ``x_p`` requests/s (full
``max_num_batched_tokens`` steps on every rank), the decode pool at most ``x_d`` (its batch
bounded by max_num_seqs, KV capacity and the users it holds). The slower pool sets the
throughput; the faster one idles (decode) or its queue stays short (prefill). TTFT = prefill
queueing (position in the burst of prompts, plus Little's-law queueing when the prefill
pool is the bottleneck) + prefill time + KV transfer + first decode step; TPOT is the decode step time at
the decode batch the throughput implies.
"""

from __future__ import annotations

import math

from serving import Deployment, LoadPoint, Problem, WorkerGroup, Workload

from .agg import batch_capacity
from .constants import Constants
from .costs import WorkerCost
from .spread import QUANTILES, Latencies, Z, build_point, prefill_wait

__all__ = ["disagg_point", "kv_transfer_s"]


def kv_transfer_s(deployment: Deployment, problem: Problem, prefill: WorkerCost, consts: Constants) -> float:
    """Seconds to move one prompt's KV cache from its prefill worker to a decode worker.

    Every GPU of the prefill worker sends its own shard in parallel, over NVLink when the
    whole deployment fits one NVLink domain (e.g. GB200 NVL72), else over the GPU's NIC.
    """
    gpu = problem.gpu
    if deployment.gpus() <= gpu.nvlink_domain:
        bw, lat = gpu.nvlink_gb_s * 1e9, consts.nvlink_latency_us * 1e-6
    else:
        bw, lat = gpu.ib_gb_s * 1e9, consts.ib_latency_us * 1e-6
    shard = prefill.memory.kv_bytes(problem.workload.isl)  # sliding layers: their window
    return consts.kv_transfer_fixed_us * 1e-6 + lat + shard / (bw * consts.comm_efficiency)


def _prefill_pool(cost: WorkerCost, group: WorkerGroup, workload: Workload) -> tuple[float, float]:
    """(seconds to prefill one prompt alone, most requests/s the pool completes)."""
    isl, budget = workload.isl, group.knobs.max_num_batched_tokens
    chunk = min(isl, budget) if group.knobs.enable_chunked_prefill else isl
    alone = math.ceil(isl / chunk) * cost.step(0.0, 0.0, chunk, isl / 2.0)
    # A loaded rank packs whole prompts into each step up to the token budget.
    full_tokens = float(max(budget // isl, 1) * isl if isl <= budget else chunk)
    full_step = cost.step(0.0, 0.0, full_tokens, isl / 2.0)
    ranks = group.count * group.parallel.dp
    return alone, ranks * full_tokens / isl / full_step


def disagg_point(
    pcost: WorkerCost,
    dcost: WorkerCost,
    deployment: Deployment,
    workload: Workload,
    *,
    concurrency: int,
    xfer_s: float,
) -> LoadPoint:
    """Predict one closed-loop concurrency level of a disaggregated deployment."""
    assert deployment.prefill is not None and deployment.decode is not None
    isl, osl = workload.isl, workload.osl
    tps = dcost.tokens_per_step  # > 1 with multi-token prediction
    dec_steps = max(osl - 1, 0) / tps
    serve_p, x_p = _prefill_pool(pcost, deployment.prefill, workload)
    d_group = deployment.decode
    d_ranks = d_group.count * d_group.parallel.dp
    cap = float(batch_capacity(dcost, d_group, workload))
    ctx = isl + osl / 2.0

    def tdec(b: float) -> float:
        # The busiest DP rank holds ceil(b) sequences and sets the lockstep pace.
        return dcost.step(float(min(math.ceil(b - 1e-9), cap)), ctx)

    b = max(min(concurrency / d_ranks, cap), 1.0 / d_ranks)
    t_d = tdec(b)
    x_d = d_ranks * b / (dec_steps * t_d) if dec_steps else math.inf
    cycle0 = serve_p + xfer_s + t_d + dec_steps * t_d
    rate = min(x_p, x_d, concurrency / cycle0)
    for _ in range(3):  # decode occupancy implied by the rate (Little's law), to a fixed point
        b = max(min(rate * dec_steps * t_d / d_ranks, cap), 1.0 / d_ranks)
        t_d = tdec(b)
    # Batch occupancy fluctuates like a Poisson count around b: its upper quantiles make
    # the slow steps (ITL tail) and the slow requests (TPOT tail).
    tails = [tdec(min(cap, b + z * math.sqrt(b))) for z in Z]
    tpot = (t_d, max(t_d, tails[1]), max(t_d, tails[2]))
    # TTFT: the users' prompts reach the prefill pool as a burst (closed-loop users stay in
    # phase); a request waits for the prompts ahead of it on its prefill rank (queueing
    # position q gives the q-quantile), then its KV moves and the first decode step runs.
    p_group = deployment.prefill
    p_ranks = p_group.count * p_group.parallel.dp
    cohort = 1.0 + pcost.burst * (math.ceil(concurrency / p_ranks - 1e-9) - 1.0)
    budget = p_group.knobs.max_num_batched_tokens
    chunk = min(isl, budget) if p_group.knobs.enable_chunked_prefill else isl
    step_tokens = max(float(chunk), budget)
    t_burst = pcost.step(0.0, 0.0, min(cohort * isl, step_tokens), isl / 2.0)
    n_pf = math.ceil(isl / chunk)
    after = xfer_s + t_d + pcost.request_overhead
    ttft = [prefill_wait(q, cohort, isl, step_tokens, n_pf) * t_burst + after for q in QUANTILES]
    ttft_mean = prefill_wait(0.5, cohort, isl, step_tokens, n_pf) * t_burst + after
    # Little's law: whatever the cycle time exceeds service by is spent queueing.
    queue = max(0.0, concurrency / rate - dec_steps * t_d - ttft_mean)
    tpot = (tpot[0] / tps, tpot[1] / tps, tpot[2] / tps)
    lat = Latencies(ttft=tuple(v + queue for v in ttft), tpot=tpot, itl=tpot, requests_s=rate)
    return build_point(lat, concurrency=concurrency, gpus=deployment.gpus(), isl=isl, osl=osl)
