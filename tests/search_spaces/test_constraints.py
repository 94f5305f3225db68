"""Static constraints reject known-infeasible deployments and accept known-feasible ones."""

from __future__ import annotations

import dataclasses

import pytest

from search_spaces import CONSTRAINTS, count_feasible, infeasible_reason, load_space
from serving import Deployment, EngineKnobs, Parallelism, WorkerGroup

from .conftest import PRESET_PROBLEMS, make_problem


def agg(tp: int = 1, dp: int = 1, ep: int = 1, pp: int = 1, count: int = 1) -> Deployment:
    return Deployment(mode="agg", agg=WorkerGroup(Parallelism(tp=tp, dp=dp, pp=pp, ep=ep), count))


def dep(prefill: tuple[int, int], decode: tuple[int, int]) -> Deployment:
    """``count x DEP(size)`` prefill + decode: attention DP, experts EP over the worker."""
    (p_count, p_size), (d_count, d_size) = prefill, decode
    return Deployment(
        mode="disagg",
        prefill=WorkerGroup(Parallelism(dp=p_size, ep=p_size), p_count),
        decode=WorkerGroup(Parallelism(dp=d_size, ep=d_size), d_count),
    )


QWEN32_H200 = make_problem("Qwen3-32B", "H200", isl=4000, osl=1000)


def reason_name(deployment: Deployment, problem: object) -> str | None:
    reason = infeasible_reason(deployment, problem)  # type: ignore[arg-type]
    return None if reason is None else reason.split(":", 1)[0]


def test_tp8_qwen3_32b_on_8_h200_is_feasible() -> None:
    assert infeasible_reason(agg(tp=8), QWEN32_H200) is None


def test_tp3_does_not_divide_64_heads() -> None:
    reason = infeasible_reason(agg(tp=3), make_problem("Llama-3.1-70B", "H200"))
    assert reason is not None and reason.startswith("tp_divides_heads:")


def test_gpu_budget_exceeded() -> None:
    reason = infeasible_reason(agg(tp=4, count=4), QWEN32_H200)
    assert reason == "gpu_budget: 4xTP4 uses 16 GPUs > budget 8"


def test_tp_group_larger_than_h100_nvlink_domain() -> None:
    problem = make_problem("Llama-3.1-70B", "H100", gpus=16)
    assert reason_name(agg(tp=16), problem) == "nvlink_domain"
    # PP may cross nodes: TP8 x PP2 over two H100 nodes is allowed.
    assert reason_name(agg(tp=8, pp=2), problem) is None


def test_moe_tp_group_without_ep_must_fit_the_domain() -> None:
    problem = make_problem("Qwen3-235B-A22B", "H200", gpus=16)
    assert reason_name(agg(tp=1, dp=16, ep=1), problem) == "nvlink_domain"  # DPATP16: MoE TP 16
    assert reason_name(agg(tp=1, dp=16, ep=16), problem) is None  # DEP16 spans nodes over EP


def test_tp16_replicates_qwen3_32b_kv_heads_on_gb200() -> None:
    # 8 KV heads, tp 16: vLLM replicates each KV head twice, which is allowed; 64 heads / 16 ok.
    problem = make_problem("Qwen3-32B", "GB200", gpus=16, gpus_per_node=4)
    assert infeasible_reason(agg(tp=16), problem) is None
    # The same TP16 on H200 breaks the 8-GPU NVLink domain instead.
    assert reason_name(agg(tp=16), make_problem("Qwen3-32B", "H200", gpus=16)) == "nvlink_domain"


def test_kv_heads_and_tp_must_divide_one_another() -> None:
    # A model with 48 heads and 12 KV heads: tp 8 divides the heads but neither 12 % 8 nor
    # 8 % 12 is 0, so vLLM can neither shard nor replicate the KV heads evenly.
    problem = make_problem("Qwen3-32B", "H200")
    odd = dataclasses.replace(problem, arch=dataclasses.replace(problem.arch, heads=48, kv_heads=12))
    assert reason_name(agg(tp=8), odd) == "tp_kv_heads"
    assert reason_name(agg(tp=4), odd) is None  # 12 KV heads shard 3 per rank


def test_experts_not_divisible_by_ep() -> None:
    problem = make_problem("Qwen3-30B-A3B", "H200")  # 128 experts
    assert reason_name(agg(dp=3, ep=3), problem) == "ep_divides_experts"


def test_vllm_cannot_launch_tp4_ep2() -> None:
    problem = make_problem("Qwen3-235B-A22B", "H200", precision="fp8")
    assert reason_name(agg(tp=4, ep=2), problem) == "vllm_ep_size"
    assert reason_name(agg(tp=8, ep=8), problem) is None  # TEP8


def test_dense_models_take_no_ep_or_dp() -> None:
    assert reason_name(agg(tp=2, ep=2), QWEN32_H200) == "dense_no_ep"
    assert reason_name(agg(tp=2, dp=2), QWEN32_H200) == "dense_no_dp"


def test_pp_beyond_layers() -> None:
    problem = make_problem("Llama-3.1-8B", "H100", gpus=64)
    assert reason_name(agg(pp=64), problem) == "pp_le_layers"


def test_deepseek_r1_bf16_on_one_gpu_does_not_fit() -> None:
    reason = infeasible_reason(agg(), make_problem("DeepSeek-R1", "H200", gpus=1))
    assert reason is not None and reason.startswith("memory:")


def test_dep4_plus_dep8_deepseek_r1_on_gb200() -> None:
    fp4 = make_problem("DeepSeek-R1", "GB200", precision="fp4", gpus=16, gpus_per_node=4)
    fp8 = make_problem("DeepSeek-R1", "GB200", precision="fp8", gpus=16, gpus_per_node=4)
    assert infeasible_reason(dep((1, 4), (1, 8)), fp4) is None
    qwen = make_problem("Qwen3-235B-A22B", "GB200", precision="fp8", gpus=16, gpus_per_node=4)
    assert infeasible_reason(dep((2, 2), (1, 8)), qwen) is None
    # In fp8 the 671B weights alone are ~170 GiB per GPU over 4 GPUs: DEP4 cannot hold them
    # in 0.9 x 186 GB, but DEP8 prefill can.
    assert reason_name(dep((1, 4), (1, 8)), fp8) == "memory"
    assert infeasible_reason(dep((1, 8), (1, 8)), fp8) is None


def test_disagg_budget_counts_both_pools() -> None:
    problem = make_problem("DeepSeek-R1", "GB200", precision="fp4", gpus=8, gpus_per_node=4)
    assert (
        infeasible_reason(dep((1, 4), (1, 8)), problem) == "gpu_budget: 1xDEP4+1xDEP8 uses 12 GPUs > budget 8"
    )


def test_shared_knobs_reach_memory_fit() -> None:
    big_batch = EngineKnobs(max_num_seqs=512)
    deployment = Deployment(mode="agg", agg=WorkerGroup(Parallelism(tp=1), 1, big_batch))
    assert reason_name(deployment, QWEN32_H200) == "memory"


def test_count_feasible_adds_up(preset: str) -> None:
    problem = PRESET_PROBLEMS[preset]
    counts = count_feasible(load_space(preset), problem)
    assert counts.feasible > 0
    assert counts.feasible + sum(counts.rejected.values()) == counts.total
    assert set(counts.rejected) <= set(CONSTRAINTS)


@pytest.mark.parametrize("name", CONSTRAINTS)
def test_constraint_names_are_identifiers(name: str) -> None:
    assert name.isidentifier()


def test_placement_rejects_what_vllm_cannot_lay_out() -> None:
    """TP8xDP4 on GB200 trays of 4 GPUs: DP ranks would straddle nodes."""
    from serving import Deployment, Parallelism, WorkerGroup, Workload
    from serving.catalog import load_gpu, load_model
    from serving.problem import Problem

    problem = Problem(
        load_model("DeepSeek-R1"), load_gpu("GB200"), "fp4", Workload(1024, 1024, (1, 64)), 64, 4
    )
    straddling = Deployment("agg", agg=WorkerGroup(Parallelism(tp=8, dp=4, ep=32)))
    reason = infeasible_reason(straddling, problem)
    assert reason is not None and reason.startswith("placement:")
    whole_ranks = Deployment("agg", agg=WorkerGroup(Parallelism(tp=4, dp=4, ep=16)))
    assert infeasible_reason(whole_ranks, problem) is None


def test_every_feasible_candidate_can_be_launched() -> None:
    """Feasible for the search space means plan_launch accepts it: no pick fails to export."""
    from serving.launch import plan_launch

    for preset, problem in PRESET_PROBLEMS.items():
        for dep in load_space(preset).candidates(problem):
            if infeasible_reason(dep, problem) is None:
                plan = plan_launch(dep, problem)
                assert plan.gpus() == dep.gpus(), (preset, dep.label())
