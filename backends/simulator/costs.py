"""Per-step GPU time of one worker: GEMMs, attention, element-wise kernels, communication.

A :class:`WorkerCost` is built once per (worker group, problem) and then prices engine steps
with plain float arithmetic, so a whole concurrency ladder costs microseconds. All times are
seconds. A *step* is one forward pass of the engine over one data-parallel rank's batch:
``decode`` sequences each adding one token plus ``prefill`` prompt tokens (chunked prefill).

Kernel shapes follow shared/fidelity/kernels/h200.md (cited as h200.md):

- GEMM or grouped GEMM: ``max(t0 + bytes / (eff_hbm * hbm), flops / (eff_flops * peak))``
  (takeaway 2); below ~128 tokens time is the weight stream, above ~512 it is FLOPs.
- decode attention: ``t0_attn + KV bytes / (0.94 * hbm)`` (takeaway 6), or its FLOPs for MLA
  whose absorbed form can be compute bound.
- causal prefill attention: FLOPs at ~55% of the 16-bit peak (takeaway 5).
"""

from __future__ import annotations

import math

from serving import Problem, WorkerGroup
from serving.memory import worker_memory
from serving.precision import kv_bytes_per_element

from .constants import Constants

__all__ = ["ACT_BYTES", "WorkerCost"]

#: Activations travel and live in 16-bit on every engine we model.
ACT_BYTES = 2.0


class WorkerCost:
    """Prices one engine step of one worker of ``group`` (one pipeline round when pp > 1)."""

    __slots__ = (
        "_arch",
        "_attn_bw",
        "_attn_bytes",
        "_attn_core_flops_dec",
        "_attn_core_flops_pf",
        "_attn_core_rate",
        "_attn_fixed_s",
        "_attn_flops_per_tok",
        "_attn_gemm_peak",
        "_attn_kernels",
        "_attn_peak",
        "_attn_pf_rate",
        "_bw",
        "_c",
        "_dense_bytes",
        "_dense_flops_per_tok",
        "_dense_layers",
        "_dense_peak",
        "_dp",
        "_elem_fixed_s",
        "_ep",
        "_ep_link",
        "_expert_bytes",
        "_expert_flops_per_tok",
        "_expert_peak",
        "_experts",
        "_gemm_fixed_s",
        "_gen",
        "_hidden",
        "_layers",
        "_lm_bytes",
        "_lm_flops_per_tok",
        "_moe_layers",
        "_moe_tp",
        "_mtp",
        "_peak",
        "_pp",
        "_seq_overhead",
        "_shared_bytes",
        "_shared_flops_per_tok",
        "_shared_peak",
        "_sharp",
        "_step_overhead",
        "_top_k",
        "_tp",
        "_tp_link",
        "burst",
        "consts",
        "kv_token_bytes",
        "kv_tokens",
        "memory",
        "prefill_first",
        "request_overhead",
        "tokens_per_step",
    )

    def __init__(
        self,
        group: WorkerGroup,
        problem: Problem,
        consts: Constants,
        *,
        engine: str = "vllm",
        mtp: float = 0.0,
    ) -> None:
        arch, gpu, par = problem.arch, problem.gpu, group.parallel
        c = self._c = self.consts = consts
        self._arch = arch
        # Bytes per weight of each module group: the checkpoint's quantization_config keeps
        # some modules 16-bit (e.g. gpt-oss: attention; DeepSeek-R1-FP4: the q/kv projections).
        wb = arch.module_bytes_per_param(problem.precision)
        tp, dp, pp = par.tp, par.dp, par.pp
        self._tp, self._dp, self._pp, self._ep, self._moe_tp = tp, dp, pp, par.ep, par.moe_tp
        self._hidden = float(arch.hidden)
        self._layers = arch.layers / pp  # layers of one pipeline stage
        self._dense_layers = arch.dense_layers / pp
        self._moe_layers = arch.moe_layers / pp
        # Achievable fractions of the datasheet: per GPU generation (h200.md measured Hopper),
        # times the engine family's kernel speed relative to those PyTorch/cuBLAS kernels.
        speed, gen = c.kernel_speed(engine), gpu.generation
        hbm_eff, flop_eff = c.hbm(gen) * speed, c.compute(gen) * speed
        self._bw = gpu.hbm_tb_s * 1e12 * hbm_eff
        # Hardware profile (tuner profile): a GPU's measured_* figures are PyTorch-kernel rates
        # like h200.md's, so they replace "datasheet x generation fraction" and keep the
        # engine's kernel speed; None (every catalog GPU) leaves the fitted path untouched.
        if gpu.measured_hbm_tb_s is not None:
            self._bw = gpu.measured_hbm_tb_s * 1e12 * speed
        # Decode attention streams KV a little faster than GEMMs stream weights (h200.md: 94%
        # vs 89% on H200); the same ratio is kept on other generations.
        self._attn_bw = gpu.hbm_tb_s * 1e12 * hbm_eff * c.attn_decode_hbm_efficiency / c.hbm_efficiency
        if gpu.measured_attn_decode_tb_s is not None:
            self._attn_bw = gpu.measured_attn_decode_tb_s * 1e12 * speed
        self._peak = gpu.peak_tflops(problem.precision) * 1e12 * flop_eff
        if problem.precision == "fp4" and gpu.fp4_tflops:
            # NVFP4 GEMMs (16-element block scales, activation quantisation) reach a smaller
            # share of their doubled peak.
            self._peak *= c.precision_scale("fp4")
        measured_peak = gpu.measured_tflops(problem.precision)
        if measured_peak is not None:
            self._peak = measured_peak * 1e12 * speed
        if problem.precision == "fp8" and arch.fp8_weight_block:
            # Block-scaled FP8 checkpoints (128x128 weight blocks, per-token-group activation
            # scales) run slower GEMMs than the per-tensor e4m3 that h200.md and `tuner
            # profile` time, so the scale applies on top of either figure.
            self._peak *= c.precision_scale("fp8")
        # Modules the checkpoint leaves unquantized multiply in 16-bit, at the bf16 rate.
        peak16 = gpu.peak_tflops("bf16") * 1e12 * flop_eff
        if gpu.measured_tflops("bf16") is not None:
            peak16 = float(gpu.measured_tflops("bf16") or 0.0) * 1e12 * speed

        def peak(module: str) -> float:
            return (
                peak16
                if arch.weight_precision(problem.precision, module) != problem.precision
                else self._peak
            )

        # Fixed per-kernel costs, as timed one kernel at a time (h200.md) or by a profile,
        # times how much of them an engine's fused kernels and CUDA graphs still pay.
        fixed = c.kernel_fixed_scale
        gemm_us = gpu.gemm_overhead_us
        gemm_us = c.gemm_fixed_us if gemm_us is None else gemm_us
        self._gemm_fixed_s = fixed * 1e-6 * gemm_us
        attn_us = gpu.attn_decode_overhead_us
        attn_us = c.attn_decode_fixed_us if attn_us is None else attn_us
        self._attn_fixed_s = fixed * 1e-6 * attn_us
        self._elem_fixed_s = fixed * 1e-6 * c.elementwise_fixed_us
        # Multi-token prediction (DeepSeek-V3 MTP, one draft): every decode step verifies the
        # previous draft and proposes one, so it runs 2 query tokens per sequence plus the MTP
        # module (one extra layer) and emits 1 + acceptance tokens on average.
        self._mtp = mtp > 0.0
        self.tokens_per_step = 1.0 + mtp
        self._sharp = c.roofline_sharpness
        self._gen = gen
        self._step_overhead = c.step_overhead_s(engine)
        self.request_overhead = c.request_overhead_s(engine)
        self.burst = c.burst(engine)
        # SGLang's scheduler runs a ready prefill batch before the next decode batch and does
        # not mix prefill chunks into decode steps unless --enable-mixed-chunk is set (default
        # off: sglang/srt/managers/scheduler.py get_next_batch_to_run, server_args.py);
        # vLLM V1 and TRT-LLM's in-flight batching mix prefill chunks into decode steps.
        self.prefill_first = engine == "sglang"
        self._seq_overhead = c.seq_overhead_s(engine)
        kv_elem = kv_bytes_per_element(group.knobs.kv_cache_dtype, problem.precision)
        # Attention math runs in the KV-cache format (fp8 KV -> fp8 attention kernels).
        attn_prec = "fp8" if kv_elem < 2 else "bf16"
        self._attn_peak = gpu.peak_tflops(attn_prec) * 1e12 * speed
        # Decode-attention compute bound and prefill attention rate (h200.md takeaways 5, 6);
        # a profile measures bf16 prefill attention, scaled to fp8 by the datasheet ratio.
        self._attn_core_rate = self._attn_peak * c.compute(gen)
        self._attn_pf_rate = self._attn_peak * c.attn_prefill_efficiency
        measured_attn = gpu.measured_tflops(attn_prec)
        if measured_attn is not None:
            self._attn_core_rate = measured_attn * 1e12 * speed
        if gpu.measured_attn_prefill_tflops is not None:
            ratio = gpu.peak_tflops(attn_prec) / gpu.bf16_tflops
            self._attn_pf_rate = gpu.measured_attn_prefill_tflops * ratio * 1e12 * speed
        # Attention projections: sharded over attention TP, replicated over DP ranks; q/k/v
        # and o at their own formats, the GEMMs' compute at the flops-weighted rate.
        qkv, o = arch.qkv_params(), arch.o_params()
        self._attn_bytes = (qkv * wb["qkv"] + o * wb["o_proj"]) / tp
        self._attn_flops_per_tok = 2.0 * arch.attention_params() / tp
        self._attn_gemm_peak = (qkv + o) / (qkv / peak("qkv") + o / peak("o_proj"))
        # qkv + o for GQA; q_a/kv_a, q_b, absorbed kv_b (2 bmm), o for MLA.
        self._attn_kernels = 5 if arch.is_mla else 2
        self._dense_bytes = arch.dense_ffn_params() * wb["dense_mlp"] / tp
        self._dense_flops_per_tok = 2.0 * arch.dense_ffn_params() / tp
        self._dense_peak = peak("dense_mlp")
        self._shared_bytes = arch.shared_expert_params() * wb["shared_experts"] / tp
        self._shared_flops_per_tok = 2.0 * arch.shared_expert_params() / tp
        self._shared_peak = peak("shared_experts")
        self._experts = arch.experts
        self._top_k = arch.active_experts
        self._expert_bytes = arch.expert_params() * wb["experts"] / par.moe_tp  # one expert's shard
        self._expert_flops_per_tok = 2.0 * arch.expert_params() / par.moe_tp
        self._expert_peak = peak("experts")
        # LM head is kept 16-bit by every engine and is vocab-parallel over TP.
        self._lm_bytes = arch.vocab * arch.hidden * ACT_BYTES / tp
        self._lm_flops_per_tok = 2.0 * arch.vocab * arch.hidden / tp
        mem = self.memory = worker_memory(group, problem)
        self.kv_tokens = mem.kv_tokens()
        self.kv_token_bytes = mem.kv_per_token  # one cached token, all layers of a stage, one GPU
        # Attention core FLOPs per (query token, context position) per GPU: decode uses MLA's
        # absorbed form (arch), prefill runs MLA as plain attention over the decompressed
        # heads (qk = nope + rope, v) as FlashMLA/FlashInfer prefill kernels do.
        self._attn_core_flops_dec = arch.attention_flops_per_token(1) / tp
        if arch.is_mla:
            qk = arch.qk_nope_head_dim + arch.qk_rope_head_dim
            self._attn_core_flops_pf = 2.0 * arch.heads * (qk + arch.v_head_dim) / tp
        else:
            self._attn_core_flops_pf = self._attn_core_flops_dec
        # Links: a TP group, or the EP group of one stage, stays on NVLink when it fits the
        # NVLink domain; otherwise its collectives cross InfiniBand (per-GPU NIC bandwidth).
        self._tp_link = self._link(gpu.nvlink_gb_s, gpu.ib_gb_s, tp <= gpu.nvlink_domain)
        self._ep_link = self._link(gpu.nvlink_gb_s, gpu.ib_gb_s, tp * dp <= gpu.nvlink_domain)
        if gpu.measured_link_gb_s is not None:  # measured NCCL bus bandwidth inside the domain
            if tp <= gpu.nvlink_domain:
                self._tp_link = (gpu.measured_link_gb_s * 1e9, self._tp_link[1])
            if tp * dp <= gpu.nvlink_domain:
                self._ep_link = (gpu.measured_link_gb_s * 1e9, self._ep_link[1])

    def _link(self, nvlink_gb_s: float, ib_gb_s: float, inside: bool) -> tuple[float, float]:
        """(bytes/s, latency s) of a collective on NVLink or InfiniBand."""
        c = self._c
        if inside:
            return nvlink_gb_s * 1e9 * c.comm_efficiency, c.nvlink_latency_us * 1e-6
        return ib_gb_s * 1e9 * c.comm_efficiency, c.ib_latency_us * 1e-6

    # -- kernels ---------------------------------------------------------------------------
    def kv_sequences(self, seq_tokens: int) -> int:
        """Sequences of ``seq_tokens`` tokens one DP rank's KV cache holds (sliding-window
        layers keep only their window)."""
        return self.memory.kv_sequences(seq_tokens)

    def _gemm(self, weight_bytes: float, flops: float, kernels: float, peak: float = 0.0) -> float:
        """h200.md takeaway 2: fixed cost + weight stream, or FLOPs at sustained peak.

        The two regimes are joined by a p-norm (``roofline_sharpness``; infinity = hard max)
        because the measured knee is soft: at M = 256, near the ridge point, GEMMs reach only
        53-67% of peak (h200.md takeaway 3); p = 2 gives 71% at the ridge.
        """
        memory = kernels * self._gemm_fixed_s + weight_bytes / self._bw
        compute = flops / (peak or self._peak)
        p = self._sharp
        hi, lo = (memory, compute) if memory >= compute else (compute, memory)
        if lo <= 0.0:
            return hi
        return hi * (1.0 + (lo / hi) ** p) ** (1.0 / p)

    def _all_reduce(self, tokens: float, ranks: int, link: tuple[float, float]) -> float:
        """Ring all-reduce of ``tokens`` hidden vectors over ``ranks`` GPUs."""
        if ranks <= 1 or tokens <= 0:
            return 0.0
        bw, lat = link
        return lat + 2.0 * (ranks - 1) / ranks * tokens * self._hidden * ACT_BYTES / bw

    def _moe(self, tokens: float) -> float:
        """Routed experts of one MoE layer on the busiest GPU, plus EP all-to-alls.

        ``tokens`` per DP rank; the experts see every rank's tokens. Weights are read only
        for the experts a step touches: with N = tokens x top-k uniform assignments over E
        experts, each expert is untouched with probability (1 - 1/E)^N.
        """
        c, ep = self._c, self._ep
        assignments = tokens * self._dp * self._top_k
        mean = assignments / ep
        # Busiest EP rank: a persistent routing skew (moe_imbalance) on the mean, plus the
        # statistical excess of the largest of ep multinomial counts, ~sqrt(2 ln(ep) mean)
        # (expected maximum of ep near-Gaussian counts), which dominates at decode batches.
        # One EP rank (TP-only MoE) holds every expert: it computes all assignments, no skew.
        local = mean * c.moe_imbalance + math.sqrt(2.0 * math.log(ep) * mean) if ep > 1 else mean
        ratio = local / mean if mean > 0.0 else 1.0
        touched = self._experts / ep * (1.0 - math.pow(1.0 - 1.0 / self._experts, assignments))
        # Grouped GEMMs (gate_up, down) pay a small fixed cost per touched expert on top of
        # the kernel's own (tile scheduling, per-expert scales); routing adds the router
        # GEMM, top-k, token permute and un-permute/sum kernels (vLLM fused_moe:
        # topk_softmax, moe_align_block_size, moe_sum; TRT-LLM/SGLang likewise).
        fixed = c.moe_routing_kernels * self._elem_fixed_s + 2.0 * touched * c.moe_expert_fixed_us * 1e-6
        t = fixed + self._gemm(
            touched * self._expert_bytes, local * self._expert_flops_per_tok, 2, self._expert_peak
        )
        if self._dp > 1 and ep > 1:
            # Dispatch and combine: each token goes to the distinct remote EP ranks of its
            # top-k experts; the busiest rank sets the pace.
            remote = ep * (1.0 - math.pow(1.0 - 1.0 / ep, self._top_k)) * (ep - 1) / ep
            bw, lat = self._ep_link
            t += 2.0 * (lat + tokens * remote * self._hidden * ACT_BYTES * ratio / bw)
        else:
            # TEP / DPATP: every GPU holds all the tokens; partial expert outputs are summed.
            t += self._all_reduce(tokens * self._dp, self._tp * self._dp, self._ep_link)
        return t

    # -- one step ----------------------------------------------------------------------------
    def step(self, decode: float, decode_ctx: float, prefill: float = 0.0, prefill_ctx: float = 0.0) -> float:
        """Seconds for one engine step of one DP rank (one full pipeline round).

        ``decode`` sequences attend ``decode_ctx`` cached tokens each; ``prefill`` prompt
        tokens attend ``prefill_ctx`` tokens on average (causal: about half the prompt).
        With pp stages the batch is split into pp micro-batches that flow through the
        stages in turn, so a round costs pp stage-times of 1/pp of the batch.
        """
        c, pp = self._c, self._pp
        queries = 2.0 if self._mtp else 1.0
        decode, prefill = decode / pp, prefill / pp
        tokens = queries * decode + prefill
        attn = self._gemm(
            self._attn_bytes, tokens * self._attn_flops_per_tok, self._attn_kernels, self._attn_gemm_peak
        )
        if decode > 0:
            # KV one sequence reads, averaged over the stage's layers: sliding-window layers
            # read at most their window (and score it, plus the sink logit).
            kv = decode * self.memory.kv_bytes(decode_ctx) / self._layers
            core = queries * decode * self._arch.attended(decode_ctx) * self._attn_core_flops_dec
            attn += max(
                self._attn_fixed_s + kv / self._attn_bw,
                core / self._attn_core_rate,
            )
        if prefill > 0:
            attended = self._arch.attended(prefill_ctx)
            attn += prefill * attended * self._attn_core_flops_pf / self._attn_pf_rate
        attn += self._all_reduce(tokens, self._tp, self._tp_link)  # after o_proj
        misc = (
            c.elementwise_kernels_per_layer * self._elem_fixed_s
            + tokens * self._hidden * ACT_BYTES * c.elementwise_hidden_passes / self._bw
        )
        per_layer = attn + misc
        total = self._layers * per_layer
        if self._dense_layers:
            ffn = self._gemm(self._dense_bytes, tokens * self._dense_flops_per_tok, 2, self._dense_peak)
            total += self._dense_layers * (ffn + self._all_reduce(tokens, self._tp, self._tp_link))
        if self._moe_layers:
            moe = self._moe(tokens)
            if self._shared_bytes:
                moe += self._gemm(
                    self._shared_bytes, tokens * self._shared_flops_per_tok, 2, self._shared_peak
                )
            total += self._moe_layers * moe
        # LM head for the tokens that sample: every decode sequence and finishing prompts.
        logits = decode + (1.0 if prefill > 0 else 0.0)
        total += self._gemm(self._lm_bytes, logits * self._lm_flops_per_tok, 1)
        if self._mtp:
            total *= 1.0 + 1.0 / (self._layers * pp)  # the MTP module: one more layer
        if pp > 1:
            # Stage-to-stage hand-off of the micro-batch's hidden states.
            bw, lat = self._tp_link
            total += lat + tokens * self._hidden * ACT_BYTES / bw
        # Host work that grows with the batch: per-sequence scheduling, sampling, detokenising
        # and streaming one token (for every running sequence, each step).
        host = self._step_overhead + (decode * pp + (1.0 if prefill > 0 else 0.0)) * self._seq_overhead
        return pp * total + host
