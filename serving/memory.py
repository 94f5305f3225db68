"""Per-GPU memory arithmetic: weights, KV cache, reserve; the static memory-fit check.

Shared by the search space (reject candidates that cannot start) and by backends (how many
sequences a worker's KV cache holds), so both agree on what fits.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from .deployment import Deployment, WorkerGroup
from .precision import kv_bytes_per_element
from .problem import Problem

__all__ = ["WorkerMemory", "fit_reason", "per_rank_concurrency", "start_reason", "worker_memory"]

GIB = 1024**3
#: Fixed per-GPU reserve for the CUDA context, CUDA graphs, NCCL and allocator slack.
#: vLLM's profiling run typically leaves 1.5-3 GiB of non-KV, non-weight usage on Hopper.
FIXED_RESERVE_BYTES = 2.5 * GIB
#: Activation working set per batched token, in hidden-size multiples of 16-bit values
#: (residual, norm output, attention and MLP intermediates alive at once).
ACTIVATION_HIDDEN_MULTIPLE = 12


@dataclass(frozen=True)
class WorkerMemory:
    """Memory of one GPU of a worker, in bytes.

    ``kv_per_token`` is what one cached token takes in every layer of a pipeline stage;
    with sliding-window attention the ``sliding_share`` of it (the sliding layers) is held
    only for the last ``sliding_window`` tokens of a sequence (vLLM's hybrid KV-cache
    manager frees the blocks that leave the window).
    """

    weights: float
    kv_per_token: float
    reserve: float
    capacity: float
    sliding_share: float = 0.0
    sliding_window: int = 0

    @property
    def kv_room(self) -> float:
        """Bytes left for the KV cache after weights and reserve."""
        return self.capacity - self.weights - self.reserve

    def kv_bytes(self, seq_tokens: float) -> float:
        """KV bytes one sequence of ``seq_tokens`` tokens holds on this GPU."""
        if not self.sliding_window:
            return seq_tokens * self.kv_per_token
        sliding = self.kv_per_token * self.sliding_share
        return (self.kv_per_token - sliding) * seq_tokens + sliding * min(seq_tokens, self.sliding_window)

    def kv_sequences(self, seq_tokens: int) -> int:
        """Sequences of ``seq_tokens`` tokens the KV cache of one data-parallel rank holds."""
        need = self.kv_bytes(max(seq_tokens, 1))
        return max(0, int(self.kv_room // need)) if need > 0 else 0

    def kv_tokens(self) -> int:
        """Tokens the KV cache of one data-parallel rank can hold at full-attention cost."""
        return max(0, int(self.kv_room // self.kv_per_token)) if self.kv_per_token else 0


def worker_memory(group: WorkerGroup, problem: Problem) -> WorkerMemory:
    """Per-GPU weights, KV bytes per cached token and reserve for one worker of ``group``."""
    arch, par, knobs = problem.arch, group.parallel, group.knobs
    # Attention, dense MLPs, shared experts: sharded by attention TP, replicated over DP;
    # each module at the format its checkpoint stores it in (quantization_config).
    non_expert = arch.non_expert_weight_bytes(problem.precision) / par.tp / par.pp
    # Routed experts: spread over every GPU of the worker (EP groups x MoE TP).
    experts = arch.routed_expert_weight_bytes(problem.precision) / (par.tp * par.dp) / par.pp
    # Embedding and LM head stay 16-bit in practice and are vocab-parallel over TP.
    embed = arch.embedding_params() * 2.0 / par.tp
    kv_elem = kv_bytes_per_element(knobs.kv_cache_dtype, problem.precision)
    if arch.is_mla:
        per_layer = arch.kv_elements_per_token_layer()  # latent is replicated over TP
    else:
        heads_per_gpu = math.ceil(arch.kv_heads / par.tp)
        per_layer = 2 * heads_per_gpu * arch.head_dim
    kv_per_token = per_layer * kv_elem * arch.layers / par.pp
    activations = knobs.max_num_batched_tokens * arch.hidden * 2.0 * ACTIVATION_HIDDEN_MULTIPLE
    logits = knobs.max_num_seqs * arch.vocab * 4.0 / par.tp
    return WorkerMemory(
        weights=non_expert + experts + embed,
        kv_per_token=kv_per_token,
        reserve=FIXED_RESERVE_BYTES + activations + logits,
        capacity=problem.gpu.hbm_bytes * knobs.gpu_memory_utilization,
        sliding_share=arch.sliding_layers / arch.layers if arch.sliding_window else 0.0,
        sliding_window=arch.sliding_window,
    )


def per_rank_concurrency(deployment: Deployment, role: str, concurrency: int) -> float:
    """Requests in flight on one data-parallel rank of ``role`` at a deployment concurrency."""
    group = deployment.groups()[role]
    return concurrency / (group.count * group.parallel.dp)


def _batch_sequences(deployment: Deployment, role: str, problem: Problem) -> int:
    group = deployment.groups()[role]
    peak = max(problem.workload.concurrency)
    seqs = min(group.knobs.max_num_seqs, math.ceil(per_rank_concurrency(deployment, role, peak)))
    if role == "prefill":
        # A prefill worker holds a prompt's KV only until decode pulls it: about one
        # scheduling step's worth of prompts.
        seqs = min(seqs, group.knobs.max_num_batched_tokens // problem.workload.isl + 1)
    return max(1, seqs)


def fit_reason(deployment: Deployment, problem: Problem) -> str | None:
    """Why ``deployment`` cannot hold weights + KV for its batch + reserve, or None if it fits."""
    return _kv_reason(deployment, problem, lambda role: _batch_sequences(deployment, role, problem))


def start_reason(deployment: Deployment, problem: Problem) -> str | None:
    """Why ``deployment`` could not start at all, or None.

    The engine's rule, looser than :func:`fit_reason`: vLLM refuses to start only when the
    KV cache left after weights and reserve cannot hold one maximum-length request
    (``isl + osl`` tokens; ``isl`` on a prefill worker) on each data-parallel rank; with less
    room than the batch needs it simply runs smaller batches. Backends use this rule; the
    search space keeps :func:`fit_reason`, which also asks for room for the whole batch.
    """
    return _kv_reason(deployment, problem, lambda role: 1)


def _kv_reason(deployment: Deployment, problem: Problem, sequences: Callable[[str], int]) -> str | None:
    """The first role whose GPUs cannot hold weights + reserve + KV for ``sequences(role)``
    full-length sequences (``isl`` tokens on a prefill worker), as a ``memory:`` reason."""
    for role, group in deployment.groups().items():
        mem = worker_memory(group, problem)
        seqs = sequences(role)
        wl = problem.workload
        # A batch holds requests of the mean length; one sequence is the longest request.
        if seqs == 1:
            seq_tokens = wl.longest_input if role == "prefill" else wl.longest
        else:
            seq_tokens = wl.isl if role == "prefill" else wl.seq_len
        need_kv = seqs * mem.kv_bytes(seq_tokens)
        if mem.weights + mem.reserve + need_kv > mem.capacity:
            what = f"one {seq_tokens}-token sequence" if seqs == 1 else f"{seqs} seqs x {seq_tokens} tokens"
            return (
                f"memory: {role} {group.parallel.label()} needs {mem.weights / GIB:.1f} GiB weights"
                f" + {need_kv / GIB:.2f} GiB KV ({what})"
                f" + {mem.reserve / GIB:.1f} GiB reserve per GPU > {mem.capacity / GIB:.1f} GiB"
            )
    return None
