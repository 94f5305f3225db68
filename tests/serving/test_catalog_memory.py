"""Catalog lookups, parameter arithmetic and the memory-fit check."""

from __future__ import annotations

import pytest

from serving import ConfigError, Deployment, EngineKnobs, Parallelism, Problem, WorkerGroup, Workload
from serving.catalog import gpu_names, load_gpu, load_model, model_names
from serving.memory import fit_reason, worker_memory


@pytest.mark.parametrize(
    ("name", "total_b", "active_b"),
    [
        # Published sizes: Llama-3.1-8B 8.0B, Qwen3-32B 32.8B, DeepSeek-R1 671B / 37B active,
        # Qwen3-235B-A22B 235B / 22B active, Qwen3-30B-A3B 30.5B / 3.3B active.
        ("meta-llama/Llama-3.1-8B", 8.0, None),
        ("Qwen/Qwen3-32B", 32.8, None),
        ("deepseek-ai/DeepSeek-R1", 671.0, 37.0),
        ("Qwen/Qwen3-235B-A22B", 235.0, 22.0),
        ("Qwen/Qwen3-30B-A3B", 30.5, 3.3),
    ],
)
def test_parameter_counts_match_published_sizes(name: str, total_b: float, active_b: float | None) -> None:
    arch = load_model(name)
    assert arch.total_params() / 1e9 == pytest.approx(total_b, rel=0.03)
    if active_b is not None:
        assert arch.active_params_per_token() / 1e9 == pytest.approx(active_b, rel=0.1)


def test_catalog_covers_models_and_gpus() -> None:
    assert {"Llama-3.1-8B", "Llama-3.1-70B", "Qwen3-32B", "DeepSeek-R1", "gpt-oss-120b"} <= set(model_names())
    assert {"h100_sxm", "h200_sxm", "b200", "gb200", "b300", "gb300"} <= set(gpu_names())
    assert load_gpu("H200").hbm_gb == 141
    assert load_gpu("gb200").nvlink_domain == 72


def test_mla_kv_is_compressed() -> None:
    r1 = load_model("DeepSeek-R1")
    assert r1.is_mla and r1.kv_elements_per_token_layer() == 576


def test_unknown_gpu_error() -> None:
    with pytest.raises(ConfigError, match=r"gpu: got 'H900'; allowed: .*h200_sxm"):
        load_gpu("H900")


def problem(model: str, gpu: str, precision: str, concurrency: int = 64) -> Problem:
    return Problem(load_model(model), load_gpu(gpu), precision, Workload(4000, 1000, (1, concurrency)), 64, 8)


def test_weights_alone_too_big() -> None:
    dep = Deployment("agg", agg=WorkerGroup(Parallelism(tp=1)))
    reason = fit_reason(dep, problem("DeepSeek-R1", "H100", "bf16"))
    assert reason is not None and reason.startswith("memory:")


def test_kv_for_batch_counts() -> None:
    prob = problem("Qwen3-32B", "H200", "bf16", concurrency=256)
    small = Deployment("agg", agg=WorkerGroup(Parallelism(tp=1), knobs=EngineKnobs(max_num_seqs=8)))
    large = Deployment("agg", agg=WorkerGroup(Parallelism(tp=1), knobs=EngineKnobs(max_num_seqs=256)))
    assert fit_reason(small, prob) is None
    assert fit_reason(large, prob) is not None


def test_tp_shards_weights_and_kv() -> None:
    prob = problem("Llama-3.1-70B", "H100", "fp8")
    m1 = worker_memory(WorkerGroup(Parallelism(tp=1)), prob)
    m8 = worker_memory(WorkerGroup(Parallelism(tp=8)), prob)
    assert m8.weights < m1.weights / 6
    assert m8.kv_per_token == pytest.approx(m1.kv_per_token / 8)
