"""Open-loop load: requests arrive at ``R`` req/s (Poisson, gamma gaps or a trace), not from a
fixed number of users.

Aggregated rank at arrival rate ``lam`` (requests spread evenly over the DP ranks). Fluid
steady state as in :mod:`.agg`: a request holds a batch slot for ``n_pf`` prefill steps and
``osl - 1`` decode steps (``life`` steps); with ``b`` requests in the batch an average step
carries ``b (osl-1) / life`` decode tokens and ``b isl / life`` prompt tokens, mixed into a
fraction of the steps in chunks (chunked-prefill interference: the mixed steps are slower,
which is the TPOT the rate costs). Little's law ties the two, ``lam = b / (life * step(b))``,
solved for ``b`` by bisection. Capacity ``lam_max`` is the rate at the first bound: a full
batch (``b`` = max_num_seqs or the KV room) or a full token budget (prompt + decode tokens =
max_num_batched_tokens).

Queueing in front of prefill, two queues in series, each with a wait that diverges as its
utilisation reaches 1:

- the token budget, a single server doing ``isl`` tokens of work per prompt: Kingman's
  G/G/1 mean wait ``rho / (1 - rho) * (ca2 + cs2) / 2 * service`` (Pollaczek-Khinchine for
  Poisson arrivals), with ``cs2`` the squared coefficient of variation of the prompt lengths;
- the batch slots, ``c`` servers each holding a request for its whole life: Sakasegawa's
  M/G/c approximation ``rho^(sqrt(2 (c + 1)) - 1) / (c (1 - rho)) * (ca2 + cs2) / 2 * service``
  (Sakasegawa 1977; ``cs2`` from the output lengths, which set a request's life).

``ca2`` is the arrivals' squared coefficient of variation: 1 for Poisson, ``1/burstiness``
for vLLM's gamma gaps, measured on the gaps of a trace. Each wait's distribution is taken
as "no wait with probability ``1 - p_wait``, else exponential", so its quantiles follow from
the mean; the two queues' quantiles add (comonotone, the pessimistic reading).

Past capacity (``lam >= lam_max``) the queue grows without bound: the engine completes
``lam_max`` and the k-th of ``N`` requests waits ``k (1/lam_max - 1/lam)`` more. The point
reports that for a benchmark of :data:`OPEN_LOOP_REQUESTS` requests, and its ``utilization``
(``lam / lam_max`` >= 1) marks it; the SLA refuses every such point.

Disaggregated: the prefill pool is one such token-budget queue per prefill rank (capacity
from :func:`.disagg._prefill_pool`), the decode pool the batch-slot queue of its ranks
(``b = lam * (osl - 1) * t_d(b)``), and TTFT adds the KV transfer and the first decode step.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

from serving import Deployment, LoadPoint, WorkerGroup, Workload

from .agg import batch_capacity
from .costs import WorkerCost
from .disagg import _prefill_pool
from .spread import QUANTILES, Latencies, Z, build_point

__all__ = ["OPEN_LOOP_REQUESTS", "agg_open_point", "disagg_open_point", "spread_lengths"]

#: Requests one open-loop benchmark sends (``vllm bench serve --num-prompts`` default): past
#: capacity, how long the queue grows before the run ends.
OPEN_LOOP_REQUESTS = 1000
_BISECTIONS = 48


@dataclasses.dataclass(frozen=True)
class _Queue:
    """One queue's waiting-time model: P(wait > 0) and the mean wait in seconds."""

    p_wait: float
    mean_s: float

    def quantile(self, q: float) -> float:
        if self.p_wait <= 0.0 or self.mean_s <= 0.0 or q <= 1.0 - self.p_wait:
            return 0.0
        theta = self.mean_s / self.p_wait
        return theta * math.log(self.p_wait / (1.0 - q))


def _kingman(rho: float, service_s: float, ca2: float, cs2: float) -> _Queue:
    rho = max(rho, 0.0)
    if rho >= 1.0:
        return _Queue(1.0, math.inf)
    return _Queue(rho, rho / (1.0 - rho) * (ca2 + cs2) / 2.0 * service_s)


def _sakasegawa(rho: float, servers: float, service_s: float, ca2: float, cs2: float) -> _Queue:
    rho = max(rho, 0.0)
    if rho >= 1.0:
        return _Queue(1.0, math.inf)
    p_wait = min(1.0, rho ** (math.sqrt(2.0 * (servers + 1.0)) - 1.0))
    return _Queue(p_wait, p_wait / (servers * (1.0 - rho)) * (ca2 + cs2) / 2.0 * service_s)


def _invert(rate_of: Callable[[float], float], target: float, high: float) -> float:
    """The ``b`` in (0, high] with ``rate_of(b) == target`` (``rate_of`` increasing)."""
    lo, hi = 0.0, high
    for _ in range(_BISECTIONS):
        mid = 0.5 * (lo + hi)
        if rate_of(mid) < target:
            lo = mid
        else:
            hi = mid
    return hi


def _prefill_tokens(workload: Workload, tokens: float) -> float:
    """Prompt tokens that are computed: the shared prefix comes from the prefix cache."""
    return max(1.0, tokens * (1.0 - workload.shared_prefix))


def agg_open_point(
    cost: WorkerCost, group: WorkerGroup, workload: Workload, *, rate_rps: float, gpus: int
) -> LoadPoint:
    """Predict one open-loop arrival rate of an aggregated deployment."""
    isl, osl = workload.isl, workload.osl
    pf = _prefill_tokens(workload, isl)
    ranks = group.count * group.parallel.dp
    lam = rate_rps / ranks
    cap = float(batch_capacity(cost, group, workload))
    budget = float(group.knobs.max_num_batched_tokens)
    chunk = min(pf, budget) if group.knobs.enable_chunked_prefill else pf
    n_pf = math.ceil(pf / chunk - 1e-9)
    tps = cost.tokens_per_step
    dec_steps = max(osl - 1, 0) / tps
    life = n_pf + dec_steps
    ctx_dec, ctx_pf = isl + osl / 2.0, isl - pf / 2.0

    def steps(b: float) -> tuple[float, float, float, float]:
        """(mean step, decode-only step, mixed step, share of mixed steps) at batch ``b``."""
        decode, prefill = b * dec_steps / life, b * pf / life
        frac = min(1.0, prefill / chunk)
        mixed = prefill / frac if frac > 0.0 else chunk
        t_dec = cost.step(decode, ctx_dec)
        if cost.prefill_first:
            t_mix = t_dec + cost.step(0.0, 0.0, mixed, ctx_pf)
        else:
            t_mix = cost.step(decode, ctx_dec, mixed, ctx_pf)
        return (1.0 - frac) * t_dec + frac * t_mix, t_dec, t_mix, frac

    def rate_of(b: float) -> float:
        return b / (life * steps(b)[0]) if b > 0 else 0.0

    # The first bound the batch reaches: its slots, or the token budget (prompt + decode).
    b_max = min(cap, budget * life / (pf + dec_steps))
    lam_max = rate_of(b_max)
    util = lam / lam_max
    b = b_max if util >= 1.0 else _invert(rate_of, lam, b_max)
    step, t_dec, t_mix, frac = steps(b)

    sd = (t_mix - t_dec) * math.sqrt(frac * (1.0 - frac) / max(dec_steps, 1.0))
    tpot = tuple((step + z * sd) / tps for z in Z)
    itl = tuple(t_dec if q <= 1.0 - frac else t_mix for q in QUANTILES)

    ca2 = workload.arrival_cv2
    decode_tokens = b * dec_steps / life
    room = max(budget - decode_tokens, chunk)
    budget_q = _kingman(b * pf / life / room, pf / room * step, ca2, workload.inputs.cv2)
    slots_q = _sakasegawa(b / cap, cap, life * step, ca2, workload.outputs.cv2)

    def own(q: float) -> float:
        """Arrival -> first token of a q-quantile prompt, once it reaches the engine: the
        step in progress, then its own chunks, each riding on a step with the decodes."""
        tokens = _prefill_tokens(workload, workload.inputs.quantile(q))
        n = math.ceil(tokens / chunk - 1e-9)
        t = cost.step(decode_tokens, ctx_dec, max(min(tokens, chunk), frac * chunk), ctx_pf)
        return q * step + n * t + cost.request_overhead

    if util < 1.0:
        ttft = tuple(own(q) + budget_q.quantile(q) + slots_q.quantile(q) for q in QUANTILES)
    else:  # past capacity: the backlog grows for the whole benchmark
        backlog = OPEN_LOOP_REQUESTS * (1.0 / lam_max - 1.0 / lam) / ranks
        ttft = tuple(own(q) + q * backlog for q in QUANTILES)
    served = min(lam, lam_max) * ranks
    lat = Latencies(ttft=ttft, tpot=tpot, itl=itl, requests_s=served)
    return _open(lat, workload, gpus=gpus, rate_rps=rate_rps, util=util)


def disagg_open_point(
    pcost: WorkerCost,
    dcost: WorkerCost,
    deployment: Deployment,
    workload: Workload,
    *,
    rate_rps: float,
    xfer_s: float,
) -> LoadPoint:
    """Predict one open-loop arrival rate of a disaggregated deployment."""
    assert deployment.prefill is not None and deployment.decode is not None
    isl, osl = workload.isl, workload.osl
    p_group, d_group = deployment.prefill, deployment.decode
    pf_workload = dataclasses.replace(workload, isl=max(1, round(_prefill_tokens(workload, isl))))
    alone, x_p = _prefill_pool(pcost, p_group, pf_workload)
    p_ranks = p_group.count * p_group.parallel.dp
    d_ranks = d_group.count * d_group.parallel.dp
    tps = dcost.tokens_per_step
    dec_steps = max(osl - 1, 0) / tps
    cap = float(batch_capacity(dcost, d_group, workload))
    ctx = isl + osl / 2.0

    def rate_of(b: float) -> float:  # one decode rank's completions/s with b in its batch
        return b / (max(dec_steps, 1.0 / tps) * dcost.step(b, ctx)) if b > 0 else 0.0

    lam_d = rate_rps / d_ranks
    x_d = rate_of(cap) * d_ranks
    lam_max = min(x_p, x_d)
    util = rate_rps / lam_max
    b = cap if lam_d >= rate_of(cap) else _invert(rate_of, lam_d, cap)
    t_d = dcost.step(b, ctx)
    tails = [dcost.step(min(cap, b + z * math.sqrt(b)), ctx) for z in Z]
    tpot = (t_d / tps, max(t_d, tails[1]) / tps, max(t_d, tails[2]) / tps)

    ca2 = workload.arrival_cv2
    # A prefill rank serves prompts one full step at a time: service 1 / (its rate).
    p_service = p_ranks / x_p
    prefill_q = _kingman(rate_rps / x_p, p_service, ca2, workload.inputs.cv2)
    slots_q = _sakasegawa(b / cap, cap, dec_steps * t_d, ca2, workload.outputs.cv2)
    after = xfer_s + t_d + pcost.request_overhead

    def own(q: float) -> float:
        return alone * workload.inputs.quantile(q) / max(isl, 1) + after

    if util < 1.0:
        ttft = tuple(own(q) + prefill_q.quantile(q) + slots_q.quantile(q) for q in QUANTILES)
    else:
        backlog = OPEN_LOOP_REQUESTS * (1.0 / lam_max - 1.0 / rate_rps)
        ttft = tuple(own(q) + q * backlog for q in QUANTILES)
    lat = Latencies(ttft=ttft, tpot=tpot, itl=tpot, requests_s=min(rate_rps, lam_max))
    return _open(lat, workload, gpus=deployment.gpus(), rate_rps=rate_rps, util=util)


def _open(lat: Latencies, workload: Workload, *, gpus: int, rate_rps: float, util: float) -> LoadPoint:
    """The LoadPoint of an open-loop rate: in flight = rate x E2E (Little's law)."""
    point = spread_lengths(
        build_point(lat, concurrency=1, gpus=gpus, isl=workload.isl, osl=workload.osl), workload
    )
    in_flight = lat.requests_s * point.e2e_ms_p50 / 1000.0
    return dataclasses.replace(
        point,
        concurrency=max(1, round(in_flight)) if math.isfinite(in_flight) else 1,
        request_rate_rps=rate_rps,
        utilization=util,
        num_requests=OPEN_LOOP_REQUESTS,
    )


def spread_lengths(point: LoadPoint, workload: Workload) -> LoadPoint:
    """E2E percentiles with the output-length spread: the q-quantile request generates the
    q-quantile output at the q-quantile TPOT after the q-quantile TTFT (comonotone: the
    pessimistic reading). A no-op for fixed lengths."""
    if workload.outputs.distribution == "fixed":
        return point
    e2e = [
        point.metric("ttft_ms", pct) + (workload.outputs.quantile(q) - 1) * point.metric("tpot_ms", pct)
        for pct, q in zip((50, 90, 99), QUANTILES, strict=True)
    ]
    return dataclasses.replace(point, e2e_ms_p50=e2e[0], e2e_ms_p90=e2e[1], e2e_ms_p99=e2e[2])
