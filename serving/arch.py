"""Model architecture facts and the parameter and KV-cache arithmetic derived from them.

Everything the simulator and the memory-fit check need to know about a model is here, in
element counts; byte sizes follow from a precision (see :mod:`serving.precision`).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ModelArch"]


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

    # -- shape -------------------------------------------------------------------------
    @property
    def is_moe(self) -> bool:
        return self.experts > 0

    @property
    def is_mla(self) -> bool:
        return self.kv_lora_rank > 0

    @property
    def moe_layers(self) -> int:
        return self.layers - self.first_k_dense if self.is_moe else 0

    @property
    def dense_layers(self) -> int:
        return self.layers - self.moe_layers

    # -- parameters (elements) ---------------------------------------------------------
    def attention_params(self) -> int:
        """Attention weights of one layer (q, k, v, o projections or their MLA factors)."""
        h = self.hidden
        if self.is_mla:
            qk_dim = self.qk_nope_head_dim + self.qk_rope_head_dim
            if self.q_lora_rank:
                q = h * self.q_lora_rank + self.q_lora_rank * self.heads * qk_dim
            else:
                q = h * self.heads * qk_dim
            kv_a = h * (self.kv_lora_rank + self.qk_rope_head_dim)
            kv_b = self.kv_lora_rank * self.heads * (self.qk_nope_head_dim + self.v_head_dim)
            o = self.heads * self.v_head_dim * h
            return q + kv_a + kv_b + o
        q = h * self.heads * self.head_dim
        kv = 2 * h * self.kv_heads * self.head_dim
        o = self.heads * self.head_dim * h
        return q + kv + o

    def dense_ffn_params(self) -> int:
        """Gated MLP of one dense layer (gate, up, down)."""
        return 3 * self.hidden * self.intermediate

    def expert_params(self) -> int:
        """One routed (or shared) expert's gated MLP."""
        return 3 * self.hidden * self.moe_intermediate

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
        per_moe_layer = self.router_params() + self.shared_experts * self.expert_params()
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

    # -- KV cache ----------------------------------------------------------------------
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
