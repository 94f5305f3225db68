"""Speed of light: the share of its roofline bound a load point uses.

A deployment cannot serve faster than its GPUs stream the bytes and run the FLOPs the work
needs at the datasheet peaks (or at a hardware profile's measured figures, where higher).
For a load point with request rate ``R`` and per-user decode rate ``U`` (= 1 / TPOT), each
worker of a role must, per second:

- read, per decode step, its share of the weights (attention, dense MLPs, shared experts,
  LM head; the routed experts the step's tokens touch under uniform routing) and each
  decoding sequence's KV cache (sliding-window layers: their window). A sequence advances at
  most ``1 + draft_tokens`` tokens per step (speculative decoding with every draft
  accepted, the best case), so a rank runs at least ``U / (1 + draft_tokens)`` steps per
  second while it has sequences;
- run ``2 x`` the active parameters in FLOPs for every prompt and output token, plus the
  attention scores (MLA in its cheaper form), each module at the peak of the format it is
  stored in.

The busy fraction ``max(bytes / HBM bandwidth, FLOP time)`` per GPU is the point's share of
its speed of light: 1.0 means the GPUs would have to run at the datasheet peak doing only
this work. Disaggregated deployments get one share per role (prefill: the prompt FLOPs;
decode: the steps' bytes and output-token FLOPs); the point's share is the larger one.
Everything left out (fixed kernel costs, communication, host overhead, prefill weight reads,
routing skew) only lowers the bound, so a consistent model never predicts above it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .arch import ModelArch
from .deployment import Deployment, WorkerGroup
from .hardware import GPU
from .loadpoint import LoadPoint
from .memory import per_rank_concurrency, worker_memory
from .precision import kv_bytes_per_element
from .problem import Problem

__all__ = ["Roofline", "SpeedOfLight", "speed_of_light", "ttft_bound_ms"]


@dataclass(frozen=True)
class SpeedOfLight:
    """A point's share of its roofline bound: ``frac`` (the largest over roles) and the
    ``role`` that sets it (``agg``, ``prefill`` or ``decode``); ``per_role`` lists each."""

    frac: float
    role: str
    per_role: tuple[tuple[str, float], ...]


class Roofline:
    """The speed of light of one deployment for one problem, priced once, then applied to
    any number of its load points (``share``)."""

    def __init__(self, deployment: Deployment, problem: Problem, *, draft_tokens: int = 0) -> None:
        wl = problem.workload
        self._deployment, self._problem, self._draft = deployment, problem, draft_tokens
        self._ctx = wl.isl + wl.osl / 2.0
        self._roles = {
            role: _RoleBound(group, problem, context=self._ctx) for role, group in deployment.groups().items()
        }

    def share(self, point: LoadPoint) -> SpeedOfLight:
        """``point``'s share of the bound (see the module docstring)."""
        wl = self._problem.workload
        rate = point.requests_s if math.isfinite(point.requests_s) else 0.0
        user = point.tok_s_user if math.isfinite(point.tok_s_user) and wl.osl > 1 else 0.0
        shares = []
        for role, bound in self._roles.items():
            per_worker = rate / bound.group.count
            users = per_rank_concurrency(self._deployment, role, point.concurrency)
            shares.append(
                (
                    role,
                    bound.busy(
                        prompt_tok_s=per_worker * wl.isl if role != "decode" else 0.0,
                        output_tok_s=per_worker * (wl.osl - 1) if role != "prefill" else 0.0,
                        user_tok_s=user,
                        users=users,
                        draft_tokens=self._draft,
                    ),
                )
            )
        role, frac = max(shares, key=lambda item: item[1])
        return SpeedOfLight(frac=frac, role=role, per_role=tuple(shares))

    def ttft_ms(self) -> float:
        """The least time to first token: one prompt's FLOPs spread over every GPU of one
        prefill (or agg) worker at peak."""
        bound = self._roles["prefill" if "prefill" in self._roles else "agg"]
        return 1000.0 * self._problem.workload.isl * bound.prompt_s / bound.gpus


def speed_of_light(
    deployment: Deployment, problem: Problem, point: LoadPoint, *, draft_tokens: int = 0
) -> SpeedOfLight:
    """The share of its speed of light ``point`` uses (see the module docstring).

    ``draft_tokens``: speculative tokens proposed per step (1 for one MTP draft); the bound
    assumes all are accepted, so it holds whatever the real acceptance rate.
    """
    return Roofline(deployment, problem, draft_tokens=draft_tokens).share(point)


def ttft_bound_ms(deployment: Deployment, problem: Problem) -> float:
    """The least time to first token of ``deployment`` (:meth:`Roofline.ttft_ms`)."""
    return Roofline(deployment, problem).ttft_ms()


class _RoleBound:
    """Per-token FLOP time and per-step bytes of one worker group at peak."""

    def __init__(self, group: WorkerGroup, problem: Problem, *, context: float) -> None:
        arch, par, wl = problem.arch, group.parallel, problem.workload
        self.group, self._arch, self._dp = group, arch, par.dp
        self.gpus = par.tp * par.dp * par.pp
        self.prompt_s = _seconds_per_token(group, problem, context=wl.isl / 2.0, sampled=False)
        self._output_s = _seconds_per_token(group, problem, context=context, sampled=True)
        per = arch.module_bytes_per_param(problem.precision)
        params = arch.module_params()
        dense = sum(params[m] * per[m] for m in ("qkv", "o_proj", "dense_mlp", "shared_experts"))
        dense += arch.vocab * arch.hidden * 2.0  # LM head, 16-bit
        self._weights = dense / (par.tp * par.pp)
        # One touched routed expert, all MoE layers, averaged over the worker's GPUs.
        self._expert = arch.expert_params() * per["experts"] * arch.moe_layers / self.gpus
        self._kv_seq = worker_memory(group, problem).kv_bytes(context)
        self._hbm = _hbm(problem.gpu)

    def busy(
        self, *, prompt_tok_s: float, output_tok_s: float, user_tok_s: float, users: float, draft_tokens: int
    ) -> float:
        """Busy fraction of the worker's GPUs at peak for the given token rates."""
        flop_s = (prompt_tok_s * self.prompt_s + output_tok_s * self._output_s) / self.gpus
        byte_s = 0.0
        if output_tok_s > 0.0 and user_tok_s > 0.0:
            decoding = output_tok_s / self._dp / user_tok_s  # mean sequences decoding per rank
            # A rank steps only while it holds sequences: at least the share of time its
            # mean occupancy needs when all its users decode together.
            active = min(1.0, decoding / max(1.0, math.ceil(users - 1e-9)))
            steps_s = active * user_tok_s / (1.0 + draft_tokens)
            byte_s = steps_s * self._step_bytes(decoding / active)
        return max(byte_s / self._hbm, flop_s)

    def _step_bytes(self, batch: float) -> float:
        """Bytes one GPU reads, on average over the worker, in a decode step of ``batch``
        sequences per DP rank: weights, the experts uniform routing touches, the KV."""
        arch, weights = self._arch, self._weights
        if arch.is_moe:
            assignments = batch * self._dp * arch.active_experts
            weights += arch.experts * (1.0 - math.pow(1.0 - 1.0 / arch.experts, assignments)) * self._expert
        return weights + batch * self._kv_seq


def _seconds_per_token(group: WorkerGroup, problem: Problem, *, context: float, sampled: bool) -> float:
    """GPU-seconds at peak one token's FLOPs take on one GPU (sum over the worker's GPUs)."""
    arch, gpu, prec = problem.arch, problem.gpu, problem.precision
    params = arch.module_params()
    t = 0.0
    for module in ("qkv", "o_proj", "dense_mlp", "shared_experts"):
        t += 2.0 * params[module] / _rate(gpu, arch.weight_precision(prec, module))
    active = arch.moe_layers * arch.active_experts * arch.expert_params()
    t += 2.0 * active / _rate(gpu, arch.weight_precision(prec, "experts"))
    if sampled:  # LM head: at the faster of 16-bit and the run's format
        t += 2.0 * arch.vocab * arch.hidden / max(_rate(gpu, "bf16"), _rate(gpu, prec))
    kv_elem = kv_bytes_per_element(group.knobs.kv_cache_dtype, prec)
    t += (
        arch.layers
        * _score_flops_per_position(arch)
        * arch.attended(context)
        / _rate(gpu, "fp8" if kv_elem < 2 else "bf16")
    )
    return t


def _score_flops_per_position(arch: ModelArch) -> float:
    """Attention FLOPs of one query against one cached position, one layer, the cheaper
    of MLA's absorbed and decompressed forms."""
    absorbed = arch.attention_flops_per_token(1)
    if arch.is_mla:
        qk = arch.qk_nope_head_dim + arch.qk_rope_head_dim
        return min(absorbed, 2.0 * arch.heads * (qk + arch.v_head_dim))
    return absorbed


def _rate(gpu: GPU, precision: str) -> float:
    """Peak FLOP/s for ``precision``: the datasheet, or a measured figure where higher."""
    return max(gpu.peak_tflops(precision), gpu.measured_tflops(precision) or 0.0) * 1e12


def _hbm(gpu: GPU) -> float:
    """Peak HBM bytes/s: the datasheet, or a measured figure where higher."""
    measured = max(gpu.measured_hbm_tb_s or 0.0, gpu.measured_attn_decode_tb_s or 0.0)
    return max(gpu.hbm_tb_s, measured) * 1e12
