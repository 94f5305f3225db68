"""Every config.json field that changes FLOPs, bytes or memory is priced: one test per
feature (docs/fidelity/checkpoint-fields.md lists them), each comparing a model with and
without the feature so that dropping its pricing fails the test."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from backends.simulator import load_constants
from backends.simulator.costs import WorkerCost
from serving import Deployment, EngineKnobs, Parallelism, Problem, WorkerGroup, Workload, load_gpu, load_model
from serving.arch import ModelArch
from serving.catalog import arch_from_hf_config
from serving.memory import fit_reason, worker_memory
from serving.precision import bytes_per_param

#: openai/gpt-oss-120b config.json, the fields that shape the model (huggingface.co/openai/
#: gpt-oss-120b/blob/main/config.json; mirrored in ai-dynamo/aiconfigurator model_configs).
GPT_OSS_CONFIG: dict[str, Any] = {
    "model_type": "gpt_oss",
    "num_hidden_layers": 36,
    "hidden_size": 2880,
    "num_attention_heads": 64,
    "num_key_value_heads": 8,
    "head_dim": 64,
    "intermediate_size": 2880,
    "num_local_experts": 128,
    "num_experts_per_tok": 4,
    "vocab_size": 201088,
    "max_position_embeddings": 131072,
    "sliding_window": 128,
    "layer_types": ["sliding_attention", "full_attention"] * 18,
    "tie_word_embeddings": False,
    "quantization_config": {
        "quant_method": "mxfp4",
        "modules_to_not_convert": [
            "model.layers.*.self_attn",
            "model.layers.*.mlp.router",
            "model.embed_tokens",
            "lm_head",
        ],
    },
}


def _problem(arch: ModelArch, precision: str = "bf16", isl: int = 4096, users: int = 1) -> Problem:
    return Problem(
        arch=arch,
        gpu=load_gpu("h200"),
        precision=precision,
        workload=Workload(isl=isl, osl=1024, concurrency=(users,)),
        gpus=8,
        gpus_per_node=8,
    )


def _group(tp: int = 1, dp: int = 1, ep: int = 1, **knobs: Any) -> WorkerGroup:
    return WorkerGroup(parallel=Parallelism(tp=tp, dp=dp, ep=ep), knobs=EngineKnobs(**knobs))


def _cost(arch: ModelArch, precision: str = "bf16", **group: Any) -> WorkerCost:
    return WorkerCost(_group(**group), _problem(arch, precision), load_constants())


# -- sliding_window / layer_types ------------------------------------------------------------
def test_catalog_gpt_oss_matches_its_config_json() -> None:
    parsed = arch_from_hf_config(GPT_OSS_CONFIG, name="gpt-oss-120b")
    catalog = load_model("openai/gpt-oss-120b")
    assert replace(parsed, name="x") == replace(catalog, name="x", hf_id="")
    assert (catalog.sliding_window, catalog.sliding_layers, catalog.full_layers) == (128, 18, 18)
    # Published sizes: 116.8B total, 5.1B active (gpt-oss model card); 20b: 20.9B / 3.6B.
    assert catalog.total_params() / 1e9 == pytest.approx(116.8, rel=0.01)
    assert catalog.active_params_per_token() / 1e9 == pytest.approx(5.1, rel=0.02)
    small = load_model("gpt-oss-20b")
    assert small.total_params() / 1e9 == pytest.approx(20.9, rel=0.01)
    assert small.active_params_per_token() / 1e9 == pytest.approx(3.6, rel=0.02)


def test_layer_types_set_which_layers_slide() -> None:
    base = {k: v for k, v in GPT_OSS_CONFIG.items() if k not in ("layer_types", "quantization_config")}
    mistral = arch_from_hf_config(base, name="all")  # a window and no layer_types: every layer
    assert mistral.sliding_layers == 36
    qwen = arch_from_hf_config({**base, "use_sliding_window": False}, name="unused")
    assert qwen.sliding_window == 0 and qwen.sliding_layers == 0
    gemma = arch_from_hf_config({**base, "sliding_window_pattern": 6}, name="gemma3")
    assert gemma.sliding_layers == 30
    few = arch_from_hf_config(
        {**base, "layer_types": ["full_attention"] * 34 + ["sliding_attention"] * 2}, name="x"
    )
    assert few.sliding_layers == 2


def test_shorter_window_lowers_decode_kv_of_sliding_layers_and_nothing_else() -> None:
    arch = load_model("gpt-oss-120b")
    narrow = replace(arch, sliding_window=64)
    wide, short = worker_memory(_group(), _problem(arch)), worker_memory(_group(), _problem(narrow))
    ctx = 4096.0
    per_layer_token = wide.kv_per_token / arch.layers
    # Only the 18 sliding layers change, by (128 - 64) tokens each.
    assert wide.kv_bytes(ctx) - short.kv_bytes(ctx) == pytest.approx(18 * 64 * per_layer_token)
    assert wide.kv_bytes(ctx) == pytest.approx(per_layer_token * (18 * ctx + 18 * 128))
    assert (wide.weights, wide.kv_per_token, wide.reserve) == (
        short.weights,
        short.kv_per_token,
        short.reserve,
    )
    # A context inside both windows reads the same KV; the decode step is cheaper only past it.
    assert wide.kv_bytes(60) == short.kv_bytes(60)
    cw, cs = _cost(arch), _cost(narrow)
    assert cs.step(64, ctx) < cw.step(64, ctx)
    assert cs.step(0, 0.0, 2048, 32.0) == cw.step(0, 0.0, 2048, 32.0)  # prefill inside both windows


def test_kv_memory_sizing_uses_the_window() -> None:
    arch = load_model("gpt-oss-120b")
    full = replace(arch, sliding_window=0, sliding_layers=0)
    problem = _problem(arch, "fp4", isl=32768, users=32)
    dense_problem = _problem(full, "fp4", isl=32768, users=32)
    windowed, plain = worker_memory(_group(), problem), worker_memory(_group(), dense_problem)
    seq = problem.workload.seq_len
    assert windowed.kv_sequences(seq) > 1.9 * plain.kv_sequences(seq)  # half the layers hold 128
    # The fit check asks for the windowed footprint of the batch (32 users on one H200).
    dep = Deployment(mode="agg", agg=_group(max_num_seqs=32))
    assert fit_reason(dep, problem) is None and fit_reason(dep, dense_problem) is not None


# -- attention sinks ------------------------------------------------------------------------
def test_attention_sinks_add_a_logit_per_head_and_a_score_per_query() -> None:
    arch = load_model("gpt-oss-120b")
    plain = replace(arch, attention_sinks=False)
    assert arch.total_params() - plain.total_params() == arch.heads * arch.layers
    assert arch.attended(4096) - plain.attended(4096) == 1.0
    assert (
        worker_memory(_group(), _problem(arch)).kv_per_token
        == worker_memory(_group(), _problem(plain)).kv_per_token
    )
    assert arch_from_hf_config(GPT_OSS_CONFIG, name="x").attention_sinks


# -- first_k_dense_replace and mixed dense/MoE stacks ----------------------------------------
def test_first_k_dense_replace_sets_the_moe_layer_count() -> None:
    r1 = load_model("DeepSeek-R1")
    assert (r1.moe_layers, r1.dense_layers) == (58, 3)
    all_moe = replace(r1, first_k_dense=0)
    assert (all_moe.moe_layers, all_moe.dense_layers) == (61, 0)
    per_moe = r1.experts * r1.expert_params() + r1.shared_expert_params() + r1.router_params()
    assert all_moe.total_params() - r1.total_params() == 3 * (per_moe - r1.dense_ffn_params())
    assert _cost(all_moe, tp=8, dp=1, ep=8).step(64, 2048) != _cost(r1, tp=8, dp=1, ep=8).step(64, 2048)


def test_decoder_sparse_step_and_mlp_only_layers_mix_dense_and_moe() -> None:
    cfg = {
        "num_hidden_layers": 48, "hidden_size": 2048, "num_attention_heads": 32, "num_key_value_heads": 4,
        "head_dim": 128, "intermediate_size": 6144, "moe_intermediate_size": 768, "num_experts": 128,
        "num_experts_per_tok": 8, "vocab_size": 151936,
    }  # fmt: skip
    assert arch_from_hf_config(cfg, name="every").moe_layers == 48
    assert arch_from_hf_config({**cfg, "decoder_sparse_step": 2}, name="half").moe_layers == 24
    assert arch_from_hf_config({**cfg, "mlp_only_layers": [0, 47]}, name="ends").moe_layers == 46
    assert arch_from_hf_config({**cfg, "interleave_moe_layer_step": 4}, name="llama4").moe_layers == 12


# -- shared experts -------------------------------------------------------------------------
def test_shared_experts_run_for_every_token_outside_expert_parallelism() -> None:
    r1 = load_model("DeepSeek-R1")
    none = replace(r1, shared_experts=0)
    assert r1.active_params_per_token() - none.active_params_per_token() == 58 * r1.expert_params()
    assert r1.routed_expert_params_total() == none.routed_expert_params_total()
    wide = replace(r1, shared_expert_intermediate=4096)  # Qwen2-MoE style own width
    assert wide.shared_expert_params() == 2 * r1.shared_expert_params()
    # Sharded with attention (TP), not spread over the EP group: the DEP8 GPU holds all of it.
    m_r1, m_none = (worker_memory(_group(dp=8, ep=8), _problem(a, "fp8")) for a in (r1, none))
    assert m_r1.weights - m_none.weights == pytest.approx(58 * r1.expert_params() * 1.0)
    parsed = arch_from_hf_config(
        {"num_hidden_layers": 24, "hidden_size": 2048, "num_attention_heads": 16, "vocab_size": 151936,
         "num_experts": 60, "num_experts_per_tok": 4, "moe_intermediate_size": 1408,
         "shared_expert_intermediate_size": 5632},
        name="qwen2-moe",
    )  # fmt: skip
    assert (parsed.shared_experts, parsed.shared_expert_params()) == (1, 3 * 2048 * 5632)


# -- tied embeddings ------------------------------------------------------------------------
def test_tied_embeddings_save_memory_but_not_lm_head_reads() -> None:
    arch = load_model("Qwen3-8B")
    tied = replace(arch, tied_embeddings=True)
    assert arch.total_params() - tied.total_params() == arch.vocab * arch.hidden
    m, t = worker_memory(_group(tp=2), _problem(arch)), worker_memory(_group(tp=2), _problem(tied))
    assert m.weights - t.weights == pytest.approx(arch.vocab * arch.hidden * 2.0 / 2)
    assert _cost(arch, tp=2).step(8, 2048) == _cost(tied, tp=2).step(8, 2048)  # LM head still read


# -- MLA ranks ------------------------------------------------------------------------------
def test_mla_ranks_set_the_latent_kv_and_the_attention_weights() -> None:
    r1 = load_model("DeepSeek-R1")
    small = replace(r1, kv_lora_rank=256)
    assert r1.kv_elements_per_token_layer() - small.kv_elements_per_token_layer() == 256
    m1, m8 = (
        worker_memory(_group(tp=1), _problem(r1, "fp8")),
        worker_memory(_group(tp=8), _problem(r1, "fp8")),
    )
    assert m1.kv_per_token == m8.kv_per_token  # the latent is replicated over TP
    assert r1.attention_params() > small.attention_params()
    no_q_lora = replace(r1, q_lora_rank=0)
    assert no_q_lora.qkv_params() - r1.qkv_params() == pytest.approx(
        r1.hidden * r1.heads * 192 - (r1.hidden * 1536 + 1536 * r1.heads * 192)
    )
    assert _cost(small, "fp8", tp=8).step(64, 8192) < _cost(r1, "fp8", tp=8).step(64, 8192)


# -- quantization_config per module ---------------------------------------------------------
def test_mxfp4_experts_lower_expert_bytes_but_not_attention_bytes() -> None:
    arch = load_model("gpt-oss-120b")
    fp4, bf16 = arch.module_bytes_per_param("fp4"), arch.module_bytes_per_param("bf16")
    assert fp4["experts"] == 0.5 + 1 / 32 and bf16["experts"] == 2.0  # MXFP4: E8M0 per 32
    assert fp4["qkv"] == fp4["o_proj"] == 2.0  # self_attn is in modules_to_not_convert
    assert arch.routed_expert_weight_bytes("fp4") == pytest.approx(
        arch.routed_expert_weight_bytes("bf16") * 0.53125 / 2
    )
    assert arch.non_expert_weight_bytes("fp4") == arch.non_expert_weight_bytes("bf16")
    c4, c16 = _cost(arch, "fp4"), _cost(arch, "bf16")
    assert c4._attn_bytes == c16._attn_bytes and c4._expert_bytes < c16._expert_bytes
    # Attention GEMMs multiply at the 16-bit rate; without the exclusion they would use fp4's.
    quantized_attn = _cost(replace(arch, fp4_unquantized=()), "fp4")
    assert c4._attn_gemm_peak < quantized_attn._attn_gemm_peak
    assert quantized_attn._attn_bytes < c4._attn_bytes


def test_quantization_config_excluded_modules_are_read_per_checkpoint() -> None:
    gpt = arch_from_hf_config(GPT_OSS_CONFIG, name="x")
    assert (gpt.fp4_format, gpt.fp4_unquantized) == ("mxfp4", ("qkv", "o_proj"))
    # ModelOpt NVFP4 (nvidia/DeepSeek-V3.1-NVFP4 hf_quant_config): q/kv projections excluded.
    r1_fp4 = arch_from_hf_config(
        {**_R1, "quantization_config": {"quant_method": "modelopt", "quant_algo": "NVFP4",
         "exclude_modules": ["lm_head", "model.layers.0.self_attn.kv_a_proj_with_mqa",
                             "model.layers.0.self_attn.q_b_proj", "model.layers.61*"]}},
        name="r1-fp4",
    )  # fmt: skip
    assert (r1_fp4.fp4_format, r1_fp4.fp4_unquantized) == ("nvfp4", ("qkv",))
    assert load_model("DeepSeek-R1-FP4").fp4_unquantized == ("qkv",)
    per = r1_fp4.module_bytes_per_param("fp4")
    assert (per["qkv"], per["o_proj"], per["experts"]) == (2.0, 0.5625, 0.5625)
    # Qwen3-235B NVFP4 excludes only the routers (mlp.gate): every linear layer is 4-bit.
    qwen = arch_from_hf_config(
        {
            **_R1,
            "quantization_config": {
                "quant_algo": "NVFP4",
                "exclude_modules": ["model.layers.0.mlp.gate", "lm_head"],
            },
        },
        name="q",
    )
    assert qwen.fp4_unquantized == ()
    fp8 = arch_from_hf_config(
        {**_R1, "quantization_config": {"quant_method": "fp8", "weight_block_size": [128, 128],
         "modules_to_not_convert": ["model.layers.0.mlp"]}},
        name="fp8",
    )  # fmt: skip
    assert (fp8.fp8_weight_block, fp8.fp8_unquantized) == (128, ("dense_mlp",))
    assert fp8.module_bytes_per_param("fp8")["dense_mlp"] == 2.0
    assert fp8.module_bytes_per_param("fp4")["dense_mlp"] == 0.5625  # fp8-only exclusion


def test_block_and_per_tensor_fp8_scales() -> None:
    # Block-scaled FP8 (weight_block_size) runs GEMMs at fp8_block_compute_scale of the rate;
    # per-tensor FP8 (NVIDIA's Llama FP8, no block size) at the plain FP8 rate.
    qwen = load_model("Qwen3-32B")
    per_tensor = replace(qwen, fp8_weight_block=0)
    assert _cost(qwen, "fp8")._peak == pytest.approx(
        _cost(per_tensor, "fp8")._peak * load_constants().fp8_block_compute_scale
    )
    assert _cost(qwen, "fp8")._bw == _cost(per_tensor, "fp8")._bw


def test_fp4_formats_carry_their_block_scales() -> None:
    assert bytes_per_param("fp4", "nvfp4") == 0.5 + 1 / 16  # E4M3 scale per 16 values
    assert bytes_per_param("fp4", "mxfp4") == 0.5 + 1 / 32  # E8M0 scale per 32 values
    assert load_model("Llama-3.1-70B").module_bytes_per_param("fp4")["dense_mlp"] == 0.5625


# -- KV-cache dtype -------------------------------------------------------------------------
def test_kv_cache_dtype_sets_kv_bytes_and_attention_format() -> None:
    arch = load_model("Llama-3.1-8B")
    auto = worker_memory(_group(), _problem(arch, "fp8"))
    fp8 = worker_memory(_group(kv_cache_dtype="fp8"), _problem(arch, "fp8"))
    assert auto.kv_per_token == 2 * fp8.kv_per_token  # auto keeps 16-bit KV, as vLLM does
    assert _cost(arch, "fp8", kv_cache_dtype="fp8").step(64, 8192) < _cost(arch, "fp8").step(64, 8192)


_R1: dict[str, Any] = {
    "num_hidden_layers": 61, "hidden_size": 7168, "num_attention_heads": 128, "num_key_value_heads": 128,
    "intermediate_size": 18432, "moe_intermediate_size": 2048, "n_routed_experts": 256,
    "n_shared_experts": 1, "num_experts_per_tok": 8, "first_k_dense_replace": 3, "q_lora_rank": 1536,
    "kv_lora_rank": 512, "qk_nope_head_dim": 128, "qk_rope_head_dim": 64, "v_head_dim": 128,
    "vocab_size": 129280,
}  # fmt: skip
