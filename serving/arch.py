"""Model architecture facts and the parameter and KV-cache arithmetic derived from them.

Everything the simulator and the memory-fit check need to know about a model is here, in
element counts; byte sizes follow from a precision (see :mod:`serving.precision`).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from .precision import bytes_per_param

__all__ = ["QUANT_MODULES", "ModelArch"]

#: Weight groups a checkpoint's ``quantization_config`` can keep out of its low-precision
#: format (``modules_to_not_convert``, ``ignore``, ``exclude_modules``): q/k/v (and MLA
#: q_a/q_b/kv_a/kv_b) projections, the output projection, dense-layer MLPs, shared experts,
#: routed experts. The router, embedding and LM head are always priced in 16-bit.
QUANT_MODULES = ("qkv", "o_proj", "dense_mlp", "shared_experts", "experts")


@dataclass(frozen=True)
class ModelArch:
    """A decoder-only transformer, dense or mixture-of-experts, with GQA or MLA attention.

    Field names follow the Hugging Face ``config.json`` meanings. ``experts == 0`` means a
    dense model; ``kv_lora_rank > 0`` means multi-head latent attention (DeepSeek).
    """

    name: str
    layers: int
    hidden: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    vocab: int
    max_position: int = 131072
    experts: int = 0
    active_experts: int = 0
    shared_experts: int = 0
    moe_intermediate: int = 0
    first_k_dense: int = 0
    q_lora_rank: int = 0
    kv_lora_rank: int = 0
    qk_nope_head_dim: int = 0
    qk_rope_head_dim: int = 0
    v_head_dim: int = 0
    tied_embeddings: bool = False
    hf_id: str = ""
    #: Block edge of the published FP8 checkpoint's weight scales (config.json
    #: ``quantization_config.weight_block_size``, e.g. 128 for DeepSeek-V3/R1 and Qwen3-*-FP8);
    #: 0 = per-tensor or per-channel scales (e.g. NVIDIA's Llama FP8 checkpoints).
    fp8_weight_block: int = 0
    #: Sliding-window attention: tokens a sliding layer attends to and keeps in its KV cache
    #: (config.json ``sliding_window``), and how many layers use it (``layer_types`` entries
    #: ``sliding_attention``; every layer when a window is given without ``layer_types``).
    sliding_window: int = 0
    sliding_layers: int = 0
    #: Learned per-head attention-sink logits (gpt-oss): one parameter per head per layer and
    #: one more score per query; they hold no KV.
    attention_sinks: bool = False
    #: Mixed dense/MoE stacks besides ``first_k_dense``: layer i (from 0) is MoE only when
    #: ``(i + 1) % moe_layer_step == 0`` (Qwen-MoE ``decoder_sparse_step``, Llama-4
    #: ``interleave_moe_layer_step``) and i is not in ``mlp_only_layers``.
    moe_layer_step: int = 1
    mlp_only_layers: tuple[int, ...] = ()
    #: Width of each shared expert when it differs from the routed ones (Qwen2-MoE
    #: ``shared_expert_intermediate_size``); 0 = ``moe_intermediate``.
    shared_expert_intermediate: int = 0
    #: Modules (of :data:`QUANT_MODULES`) the published fp8 / fp4 checkpoint keeps in 16-bit,
    #: from its ``quantization_config`` (e.g. gpt-oss: everything but the experts;
    #: nvidia/DeepSeek-R1-FP4: the q/kv projections).
    fp8_unquantized: tuple[str, ...] = ()
    fp4_unquantized: tuple[str, ...] = ()
    #: The 4-bit format of the fp4 checkpoint: ``nvfp4`` (ModelOpt; an FP8 scale per 16
    #: values) or ``mxfp4`` (OCP microscaling; an E8M0 scale per 32 values, gpt-oss).
    fp4_format: str = "nvfp4"

    def __post_init__(self) -> None:
        # YAML and JSON give lists; a frozen record keeps tuples (hashable, immutable).
        for name in ("mlp_only_layers", "fp8_unquantized", "fp4_unquantized"):
            object.__setattr__(self, name, tuple(getattr(self, name)))

    # -- shape -------------------------------------------------------------------------
    @property
    def is_moe(self) -> bool:
        return self.experts > 0

    @property
    def is_mla(self) -> bool:
        return self.kv_lora_rank > 0

    @cached_property
    def moe_layers(self) -> int:
        """Layers with routed experts: past ``first_k_dense``, every ``moe_layer_step``-th,
        not in ``mlp_only_layers``."""
        if not self.is_moe:
            return 0
        step, dense = max(self.moe_layer_step, 1), set(self.mlp_only_layers)
        return sum(
            1 for i in range(self.first_k_dense, self.layers) if (i + 1) % step == 0 and i not in dense
        )

    @property
    def dense_layers(self) -> int:
        return self.layers - self.moe_layers

    @property
    def full_layers(self) -> int:
        """Layers whose attention spans the whole context."""
        return self.layers - self.sliding_layers

    # -- parameters (elements) ---------------------------------------------------------
    def qkv_params(self) -> int:
        """Input projections of one attention layer: q, k, v (MLA: q_a, q_b, kv_a, kv_b),
        plus the sink logits (one per head) where the model has them."""
        h = self.hidden
        sinks = self.heads if self.attention_sinks else 0
        if self.is_mla:
            qk_dim = self.qk_nope_head_dim + self.qk_rope_head_dim
            if self.q_lora_rank:
                q = h * self.q_lora_rank + self.q_lora_rank * self.heads * qk_dim
            else:
                q = h * self.heads * qk_dim
            kv_a = h * (self.kv_lora_rank + self.qk_rope_head_dim)
            kv_b = self.kv_lora_rank * self.heads * (self.qk_nope_head_dim + self.v_head_dim)
            return q + kv_a + kv_b + sinks
        return h * self.heads * self.head_dim + 2 * h * self.kv_heads * self.head_dim + sinks

    def o_params(self) -> int:
        """Output projection of one attention layer."""
        v_dim = self.v_head_dim if self.is_mla else self.head_dim
        return self.heads * v_dim * self.hidden

    def attention_params(self) -> int:
        """Attention weights of one layer (q, k, v, o projections or their MLA factors)."""
        return self.qkv_params() + self.o_params()

    def dense_ffn_params(self) -> int:
        """Gated MLP of one dense layer (gate, up, down)."""
        return 3 * self.hidden * self.intermediate

    def expert_params(self) -> int:
        """One routed expert's gated MLP."""
        return 3 * self.hidden * self.moe_intermediate

    def shared_expert_params(self) -> int:
        """All shared experts of one MoE layer (applied to every token, like a dense MLP)."""
        width = self.shared_expert_intermediate or self.moe_intermediate
        return self.shared_experts * 3 * self.hidden * width

    def router_params(self) -> int:
        return self.hidden * self.experts

    def embedding_params(self) -> int:
        """Input embedding plus LM head (once when tied)."""
        return self.vocab * self.hidden * (1 if self.tied_embeddings else 2)

    def routed_expert_params_total(self) -> int:
        """All routed experts of all MoE layers: the part expert parallelism shards."""
        return self.moe_layers * self.experts * self.expert_params()

    def non_expert_params_total(self) -> int:
        """Everything but the routed experts: attention, dense MLPs, shared experts, router."""
        per_moe_layer = self.router_params() + self.shared_expert_params()
        return (
            self.layers * self.attention_params()
            + self.dense_layers * self.dense_ffn_params()
            + self.moe_layers * per_moe_layer
        )

    def total_params(self) -> int:
        return self.non_expert_params_total() + self.routed_expert_params_total() + self.embedding_params()

    def active_params_per_token(self) -> int:
        """Parameters one token multiplies through (routed experts: only the active ones)."""
        routed = self.moe_layers * self.active_experts * self.expert_params()
        return self.non_expert_params_total() + routed + self.vocab * self.hidden

    def module_params(self) -> dict[str, int]:
        """Parameters of each :data:`QUANT_MODULES` group over the whole model."""
        return {
            "qkv": self.layers * self.qkv_params(),
            "o_proj": self.layers * self.o_params(),
            "dense_mlp": self.dense_layers * self.dense_ffn_params(),
            "shared_experts": self.moe_layers * self.shared_expert_params(),
            "experts": self.routed_expert_params_total(),
        }

    def weight_precision(self, precision: str, module: str) -> str:
        """The format ``module``'s weights are stored and multiplied in when the model runs
        at ``precision``: 16-bit for what the fp8/fp4 checkpoint leaves unquantized."""
        kept = {"fp8": self.fp8_unquantized, "fp4": self.fp4_unquantized}.get(precision, ())
        return "bf16" if module in kept else precision

    def module_bytes_per_param(self, precision: str) -> dict[str, float]:
        """Bytes per weight of each :data:`QUANT_MODULES` group at ``precision``: the
        checkpoint's own 4-bit format, 16-bit for the modules it leaves unquantized."""
        cached = self._bytes_per_precision.get(precision)
        if cached is None:
            cached = {
                m: bytes_per_param(self.weight_precision(precision, m), self.fp4_format)
                for m in QUANT_MODULES
            }
            self._bytes_per_precision[precision] = cached
        return cached

    @cached_property
    def _bytes_per_precision(self) -> dict[str, dict[str, float]]:
        return {}  # memo of module_bytes_per_param: the simulator asks per candidate

    @cached_property
    def _module_params(self) -> dict[str, int]:
        return self.module_params()

    def non_expert_weight_bytes(self, precision: str) -> float:
        """Bytes of everything but the routed experts and the embeddings, at ``precision``
        per module; the router stays 16-bit."""
        per, params = self.module_bytes_per_param(precision), self._module_params
        quantized = sum(params[m] * per[m] for m in QUANT_MODULES if m != "experts")
        return quantized + self.moe_layers * self.router_params() * 2.0

    def routed_expert_weight_bytes(self, precision: str) -> float:
        """Bytes of all routed experts of all MoE layers at ``precision``."""
        return self.routed_expert_params_total() * self.module_bytes_per_param(precision)["experts"]

    # -- KV cache ----------------------------------------------------------------------
    def kv_layer_tokens(self, context: float) -> float:
        """Token-layers of KV one sequence of ``context`` tokens holds (and a decode step
        reads): full-attention layers keep every token, sliding layers the last window."""
        if not self.sliding_window:
            return self.layers * context
        return self.full_layers * context + self.sliding_layers * min(context, self.sliding_window)

    def attended(self, context: float) -> float:
        """Positions one query scores against, averaged over layers, with ``context`` cached
        tokens: the window on sliding layers, plus the sink logit where there is one."""
        sink = 1.0 if self.attention_sinks else 0.0
        return self.kv_layer_tokens(context) / self.layers + sink

    def kv_elements_per_token_layer(self) -> int:
        """KV-cache elements one token stores in one layer (MLA: the compressed latent)."""
        if self.is_mla:
            return self.kv_lora_rank + self.qk_rope_head_dim
        return 2 * self.kv_heads * self.head_dim

    def attention_flops_per_token(self, context: int) -> float:
        """Score and value FLOPs of one query token against ``context`` cached tokens, one
        layer. MLA is counted in its weight-absorbed form (attention over the latent)."""
        if self.is_mla:
            per_pos = self.heads * (2 * (self.kv_lora_rank + self.qk_rope_head_dim) + 2 * self.kv_lora_rank)
        else:
            per_pos = 4 * self.heads * self.head_dim
        return float(per_pos) * context
