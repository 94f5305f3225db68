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
    at steady state the cache holds about this many full-length sequences)."""
    kv_seqs = cost.kv_tokens // max(workload.seq_len, 1)
    return max(1, min(group.knobs.max_num_seqs, kv_seqs))


def agg_point(
    cost: WorkerCost, group: WorkerGroup, workload: Workload, *, concurrency: int, gpus: int
) -> LoadPoint:
    """Predict one closed-loop concurrency level of an aggregated deployment."""
    isl, osl = workload.isl, workload.osl
    ranks = group.count * group.parallel.dp
    c_rank = concurrency / ranks
    cap = batch_capacity(cost, group, workload)
    batch = min(c_rank, cap)  # mean running sequences on a rank
    busiest = float(min(math.ceil(c_rank - 1e-9), cap))  # lockstep DP ranks wait for it
    budget = group.knobs.max_num_batched_tokens
    chunk = min(isl, budget) if group.knobs.enable_chunked_prefill else isl
    n_pf = math.ceil(isl / chunk)
    tps = cost.tokens_per_step  # > 1 with multi-token prediction
    dec_steps = max(osl - 1, 0) / tps
    life = n_pf + dec_steps
    decode = busiest * dec_steps / life
    prefill = busiest * isl / life  # prefill tokens per step, on average
    ctx_dec, ctx_pf = isl + osl / 2.0, isl / 2.0
    frac_mixed = min(1.0, prefill / chunk)
    mixed_tokens = prefill / frac_mixed  # a chunk, or more when prompts overlap
    room = max(float(chunk), budget - decode)
    prefill_bound = mixed_tokens > room
    if prefill_bound:
        # Prompts need more tokens per step than the budget leaves: every step is full and
        # the token budget, split isl : osl-1, sets the rate.
        decode = budget * dec_steps / (isl + dec_steps)
        mixed_tokens = budget - decode
    t_dec = cost.step(decode, ctx_dec)
    t_mix = cost.step(decode, ctx_dec, mixed_tokens, ctx_pf)
    step = (1.0 - frac_mixed) * t_dec + frac_mixed * t_mix
    # Requests/s of one rank: the token budget when prefill-bound, else the batch's cycle.
    rate = mixed_tokens / isl / step if prefill_bound else batch / (life * step)

    # TPOT: a request's decode steps include ~f mixed ones (binomial spread).
    sd = (t_mix - t_dec) * math.sqrt(frac_mixed * (1.0 - frac_mixed) / max(dec_steps, 1))
    tpot = tuple((step + z * sd) / tps for z in Z)
    itl = tuple(t_dec if q <= 1.0 - frac_mixed else t_mix for q in QUANTILES)

    # TTFT: a closed-loop benchmark starts every user at once and equal lengths keep them in
    # phase, so a rank's users send their prompts as a burst; a request's TTFT is the prefill
    # of the prompts queued ahead of it in that burst (its queueing position), chunked into
    # budget-sized steps. Position q of the burst gives the q-quantile.
    cohort = 1.0 + cost.burst * (busiest - 1.0)
    pf_step = max(float(chunk), budget - decode)
    t_burst = cost.step(decode, ctx_dec, min(cohort * isl, pf_step), ctx_pf)
    ttft = [prefill_wait(q, cohort, isl, pf_step, n_pf) * t_burst for q in QUANTILES]
    ttft_mean = prefill_wait(0.5, cohort, isl, pf_step, n_pf) * t_burst
    # Little's law over the closed loop: cycle = c_rank / rate = TTFT + (osl-1) TPOT; users
    # beyond the batch capacity wait in the engine queue for a free slot.
    queue = max(0.0, c_rank / rate - dec_steps * step - ttft_mean)
    ttft = [v + queue + cost.request_overhead for v in ttft]
    lat = Latencies(ttft=tuple(ttft), tpot=tpot, itl=itl, requests_s=rate * ranks)
    return build_point(lat, concurrency=concurrency, gpus=gpus, isl=isl, osl=osl)
