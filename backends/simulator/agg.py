"""Aggregated serving: continuous batching with chunked prefill, in a closed loop.

Each data-parallel rank of each agg worker serves ``C / (workers * dp)`` users
(:func:`serving.memory.per_rank_concurrency`). A rank runs at most
``min(max_num_seqs, KV capacity / (isl + osl))`` sequences; the other users' requests wait
in the engine queue, which is what makes TTFT grow with concurrency once the batch is full.

Fluid model of one rank at steady state: a request holds a batch slot for
``n_pf = ceil(isl / chunk)`` prefill steps plus ``osl - 1`` decode steps, so an average step
carries ``B (osl-1) / life`` decode tokens and ``B isl / life`` prefill tokens. Prefill
arrives in chunks: a fraction ``f`` of steps carries one (a *mixed* step, slower), the rest
are pure decode steps. The mean step time is the TPOT; the binomial spread of mixed steps over
a request's decode steps is its TPOT tail (prefill interference). Little's law over the closed
loop gives the queueing part of TTFT.
"""

from __future__ import annotations

import math

from serving import LoadPoint, WorkerGroup, Workload

from .costs import WorkerCost
from .spread import QUANTILES, Latencies, Z, build_point, prefill_wait

__all__ = ["agg_point", "batch_capacity"]


def batch_capacity(cost: WorkerCost, group: WorkerGroup, workload: Workload) -> int:
    """Sequences one DP rank runs at once: max_num_seqs, bounded by KV-cache room for
    whole requests (vLLM admits while blocks remain and preempts when they run out, so
    at steady state the cache holds about this many full-length sequences; sliding-window
    layers hold only their window)."""
    kv_seqs = cost.kv_sequences(workload.seq_len)
    return max(1, min(group.knobs.max_num_seqs, kv_seqs))


def agg_point(
    cost: WorkerCost, group: WorkerGroup, workload: Workload, *, concurrency: int, gpus: int
) -> LoadPoint:
    """Predict one closed-loop concurrency level of an aggregated deployment.

    Phase structure: a closed-loop benchmark starts every user at once and equal lengths keep
    a *cohort* of ``1 + burst (B - 1)`` of a rank's ``B`` users in phase. The cohort's prompts
    are prefilled together (their TTFT, the burst) while none of them decodes; the other
    users' prompts arrive spread out and are mixed into decode steps (their TPOT). Every
    prompt is prefilled once per cycle either way, so the burst share moves prefill time
    between TTFT and TPOT; the closed loop then sets throughput by Little's law,
    ``users = rate x (TTFT + (osl - 1) TPOT)``, which keeps the three consistent.
    """
    isl, osl = workload.isl, workload.osl
    ranks = group.count * group.parallel.dp
    c_rank = concurrency / ranks
    cap = batch_capacity(cost, group, workload)
    busiest = float(min(math.ceil(c_rank - 1e-9), cap))  # lockstep DP ranks wait for it
    budget = group.knobs.max_num_batched_tokens
    chunk = min(isl, budget) if group.knobs.enable_chunked_prefill else isl
    n_pf = math.ceil(isl / chunk)
    tps = cost.tokens_per_step  # > 1 with multi-token prediction
    dec_steps = max(osl - 1, 0) / tps
    life = n_pf + dec_steps
    decode = busiest * dec_steps / life
    ctx_dec, ctx_pf = isl + osl / 2.0, isl / 2.0
    cohort = 1.0 + cost.burst * (busiest - 1.0)
    room = max(float(chunk), budget - decode)
    if busiest * isl / life > room:
        return _prefill_bound(cost, workload, concurrency=concurrency, gpus=gpus, ranks=ranks, budget=budget)
    # Prompts outside the cohort: spread over the decode steps, ``prefill`` tokens per step.
    prefill = (busiest - cohort) * isl / life
    frac_mixed = min(1.0, prefill / chunk)
    mixed_tokens = prefill / frac_mixed if frac_mixed > 0.0 else float(chunk)
    t_dec = cost.step(decode, ctx_dec)
    if cost.prefill_first:
        # SGLang runs a waiting prompt as a prefill-only batch ahead of the decode batch
        # (no mixed chunks by default): the decode step waits for the whole prefill step.
        t_mix = t_dec + cost.step(0.0, 0.0, mixed_tokens, ctx_pf)
    else:
        t_mix = cost.step(decode, ctx_dec, mixed_tokens, ctx_pf)
    step = (1.0 - frac_mixed) * t_dec + frac_mixed * t_mix

    # TPOT: a request's decode steps include ~f mixed ones (binomial spread).
    sd = (t_mix - t_dec) * math.sqrt(frac_mixed * (1.0 - frac_mixed) / max(dec_steps, 1))
    tpot = tuple((step + z * sd) / tps for z in Z)
    itl = tuple(t_dec if q <= 1.0 - frac_mixed else t_mix for q in QUANTILES)

    # TTFT: the prompts queued ahead of a request in its cohort's burst (position q gives the
    # q-quantile), chunked into budget-sized steps; the cohort is not decoding meanwhile, so
    # those steps carry only the spread-out users' decode tokens.
    pf_step = max(float(chunk), budget - decode)
    burst_decode = 0.0 if cost.prefill_first else decode * (1.0 - cohort / busiest)
    t_burst = cost.step(burst_decode, ctx_dec, min(cohort * isl, pf_step), ctx_pf)
    ttft = [prefill_wait(q, cohort, isl, pf_step, n_pf) * t_burst for q in QUANTILES]
    cycle = prefill_wait(0.5, cohort, isl, pf_step, n_pf) * t_burst + dec_steps * step
    # Closed loop: a user spends the serving-stack overhead outside the engine each cycle; a
    # full batch hands its slot straight to a queued request, so the engine's rate is at most
    # cap / cycle, and users beyond that wait in the engine queue for a free slot.
    overhead = cost.request_overhead
    rate = min(c_rank / (overhead + cycle), cap / cycle)
    queue = max(0.0, c_rank / rate - overhead - cycle)
    ttft = [v + queue + overhead for v in ttft]
    lat = Latencies(ttft=tuple(ttft), tpot=tpot, itl=itl, requests_s=rate * ranks)
    return build_point(lat, concurrency=concurrency, gpus=gpus, isl=isl, osl=osl)


def _prefill_bound(
    cost: WorkerCost, workload: Workload, *, concurrency: int, gpus: int, ranks: int, budget: int
) -> LoadPoint:
    """Prompts need more tokens per step than the budget leaves: every step is full and the
    token budget, split isl : osl - 1, sets the rate; TTFT is the rest of the closed loop's
    cycle (Little's law)."""
    isl, osl = workload.isl, workload.osl
    tps = cost.tokens_per_step
    dec_steps = max(osl - 1, 0) / tps
    decode = budget * dec_steps / (isl + dec_steps)
    prefill = budget - decode
    step = cost.step(decode, isl + osl / 2.0, prefill, isl / 2.0)
    rate = prefill / isl / step
    c_rank = concurrency / ranks
    ttft = max(c_rank / rate - dec_steps * step, step) + cost.request_overhead
    tpot = tuple(step / tps for _ in Z)
    lat = Latencies(ttft=(ttft,) * 3, tpot=tpot, itl=tpot, requests_s=rate * ranks)
    return build_point(lat, concurrency=concurrency, gpus=gpus, isl=isl, osl=osl)
