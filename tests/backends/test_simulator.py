"""Behaviour of the simulator backend that a wrong model would break."""

from __future__ import annotations

import itertools

import pytest

from backends.simulator import SimulatorBackend
from serving import (
    ConfigError,
    Deployment,
    EngineKnobs,
    LoadPoint,
    Parallelism,
    Problem,
    WorkerGroup,
    Workload,
    load_gpu,
    load_model,
)

LADDER = (1, 2, 4, 8, 16, 32, 64, 128)


def problem(
    model: str,
    gpu: str = "h200",
    precision: str = "bf16",
    *,
    isl: int = 1024,
    osl: int = 1024,
    ladder: tuple[int, ...] = LADDER,
) -> Problem:
    workload = Workload(isl=isl, osl=osl, concurrency=ladder)
    return Problem(
        arch=load_model(model),
        gpu=load_gpu(gpu),
        precision=precision,
        workload=workload,
        gpus=8,
        gpus_per_node=8,
    )


def agg(tp: int = 1, dp: int = 1, ep: int = 1, count: int = 1, **knobs: object) -> Deployment:
    group = WorkerGroup(parallel=Parallelism(tp=tp, dp=dp, ep=ep), count=count, knobs=EngineKnobs(**knobs))  # type: ignore[arg-type]
    return Deployment(mode="agg", agg=group)


@pytest.fixture(scope="module")
def sim() -> SimulatorBackend:
    return SimulatorBackend()


def test_deterministic(sim: SimulatorBackend) -> None:
    prob, dep = problem("Qwen3-32B"), agg(tp=2)
    assert sim.measure(dep, prob) == sim.measure(dep, prob)
    assert SimulatorBackend().measure(dep, prob) == sim.measure(dep, prob)


def test_interactivity_falls_and_throughput_rises_until_saturation(sim: SimulatorBackend) -> None:
    points = sim.measure(agg(tp=2), problem("Qwen3-32B"))
    users = [p.tok_s_user for p in points]
    gpus = [p.tok_s_gpu for p in points]
    assert all(a > b for a, b in itertools.pairwise(users))
    assert all(a < b for a, b in itertools.pairwise(gpus))
    assert gpus[-1] > 20 * gpus[0]  # batching amortises the weight reads


def test_throughput_saturates_and_ttft_grows_once_batch_is_full(sim: SimulatorBackend) -> None:
    ladder = (16, 32, 64, 128, 256)
    points = sim.measure(agg(tp=2, max_num_seqs=16), problem("Qwen3-32B", ladder=ladder))
    gpus = [p.tok_s_gpu for p in points]
    ttft = [p.ttft_ms_p50 for p in points]
    assert max(gpus) / min(gpus) < 1.05  # batch capped at 16: no more throughput
    assert all(a < b for a, b in itertools.pairwise(ttft))
    assert ttft[-1] > 8 * ttft[0]  # 16x the users, same service rate: they queue
    tpot = [p.tpot_ms_p50 for p in points]
    assert max(tpot) / min(tpot) < 1.05


def test_fp8_beats_bf16_for_70b(sim: SimulatorBackend) -> None:
    dep = agg(tp=4)
    bf16 = sim.measure(dep, problem("Llama-3.1-70B", precision="bf16", ladder=(1, 16, 64)))
    fp8 = sim.measure(dep, problem("Llama-3.1-70B", precision="fp8", ladder=(1, 16, 64)))
    for a, b in zip(bf16, fp8, strict=True):
        assert b.tok_s_gpu > 1.3 * a.tok_s_gpu
        assert b.ttft_ms_p50 < a.ttft_ms_p50


def test_block_scaled_fp8_is_priced_only_for_block_checkpoints() -> None:
    # The block-FP8 scale slows compute-bound steps of a block-scaled checkpoint (Qwen3-FP8)
    # and leaves a per-tensor one (Llama FP8) exactly as before.
    import dataclasses

    from backends.simulator import load_constants

    base = load_constants()
    slow = dataclasses.replace(base, fp8_block_compute_scale=0.5)
    fast = dataclasses.replace(base, fp8_block_compute_scale=1.0)

    def tok_s(model: str, consts: object) -> float:
        backend = SimulatorBackend()
        backend.constants = consts  # type: ignore[assignment]
        prob = problem(model, precision="fp8", isl=8192, osl=64, ladder=(64,))
        return backend.measure(agg(tp=4), prob)[0].tok_s_gpu

    assert load_model("Qwen3-32B").fp8_weight_block == 128
    assert load_model("Llama-3.1-70B").fp8_weight_block == 0
    assert tok_s("Qwen3-32B", slow) < 0.9 * tok_s("Qwen3-32B", fast)
    assert tok_s("Llama-3.1-70B", slow) == tok_s("Llama-3.1-70B", fast)


def test_tp_only_moe_has_no_expert_skew() -> None:
    # With ep = 1 every GPU holds a shard of every expert: it computes all routed tokens, so
    # the busiest-EP-rank skew must not price TP-only MoE (it does price EP8).
    import dataclasses

    from backends.simulator import load_constants

    base = dataclasses.replace(load_constants(), moe_imbalance=1.0)
    skewed = dataclasses.replace(base, moe_imbalance=3.0)
    prob = problem("Qwen3-235B-A22B", precision="fp8", isl=4096, osl=64, ladder=(256,))

    def tok_s(dep: Deployment, consts: object) -> float:
        backend = SimulatorBackend()
        backend.constants = consts  # type: ignore[assignment]
        return backend.measure(dep, prob)[0].tok_s_gpu

    assert tok_s(agg(tp=8), skewed) == tok_s(agg(tp=8), base)
    assert tok_s(agg(tp=8, ep=8), skewed) < 0.95 * tok_s(agg(tp=8, ep=8), base)


def test_higher_tp_raises_interactivity_at_concurrency_1(sim: SimulatorBackend) -> None:
    prob = problem("Qwen3-32B", ladder=(1,))
    user = [sim.measure(agg(tp=tp), prob)[0].tok_s_user for tp in (1, 2, 4, 8)]
    assert all(a < b for a, b in itertools.pairwise(user))
    assert user[-1] < 8 * user[0]  # sub-linear: all-reduces and fixed kernel costs


def test_disagg_counts_prefill_and_decode_gpus(sim: SimulatorBackend) -> None:
    prob = problem("DeepSeek-R1", gpu="h200", precision="fp8", ladder=(64, 256))
    pre = WorkerGroup(parallel=Parallelism(tp=1, dp=8, ep=8), count=1)
    dec = WorkerGroup(parallel=Parallelism(tp=1, dp=8, ep=8), count=2)
    dep = Deployment(mode="disagg", prefill=pre, decode=dec)
    assert sim.check(dep, prob) is None
    for p in sim.measure(dep, prob):
        assert p.gpus == 24
        isl, osl = prob.workload.isl, prob.workload.osl
        assert p.tok_s_gpu == pytest.approx(p.requests_s * (isl + osl) / 24)
        assert p.output_tok_s_gpu == pytest.approx(p.requests_s * osl / 24)
        assert p.ttft_ms_p50 > 0 and p.tpot_ms_p50 > 0


def test_disagg_slower_pool_sets_throughput(sim: SimulatorBackend) -> None:
    prob = problem("Llama-3.1-70B", precision="fp8", isl=8192, osl=256, ladder=(64,))

    def dep(prefill_workers: int) -> Deployment:
        return Deployment(
            mode="disagg",
            prefill=WorkerGroup(
                parallel=Parallelism(tp=4), count=prefill_workers, knobs=EngineKnobs(max_num_seqs=64)
            ),
            decode=WorkerGroup(parallel=Parallelism(tp=4), count=1, knobs=EngineKnobs(max_num_seqs=64)),
        )

    one, three = sim.measure(dep(1), prob)[0], sim.measure(dep(3), prob)[0]
    assert three.requests_s > 1.5 * one.requests_s  # prefill-bound: more prefill helps
    assert three.ttft_ms_p50 < one.ttft_ms_p50


def test_check_rejects_weights_that_do_not_fit(sim: SimulatorBackend) -> None:
    reason = sim.check(agg(tp=1), problem("DeepSeek-R1", gpu="h100", precision="bf16", ladder=(1,)))
    assert reason is not None and reason.startswith("memory")


def test_moe_dep_beats_tep_on_throughput_tep_on_latency(sim: SimulatorBackend) -> None:
    # DeepSeek-R1 on 8 H200: DEP8 replicates attention and reads each expert once per step
    # for all ranks' tokens (high throughput at large batch); TEP8 shards attention so one
    # user's step reads 1/8 of the attention weights (better latency at low concurrency).
    prob = problem("DeepSeek-R1", precision="fp8", ladder=(1, 512))
    dep8 = sim.measure(agg(tp=1, dp=8, ep=8), prob)
    tep8 = sim.measure(agg(tp=8, dp=1, ep=8), prob)
    assert tep8[0].tok_s_user > dep8[0].tok_s_user
    assert dep8[1].tok_s_gpu > tep8[1].tok_s_gpu


def test_pipeline_parallel_is_priced(sim: SimulatorBackend) -> None:
    prob = problem("Llama-3.1-70B", precision="fp8", ladder=(1, 64))
    pp2 = sim.measure(Deployment(mode="agg", agg=WorkerGroup(parallel=Parallelism(tp=2, pp=2))), prob)
    tp4 = sim.measure(agg(tp=4), prob)
    assert pp2[0].tok_s_user < tp4[0].tok_s_user  # stages run in sequence for one user


def test_unknown_option_raises() -> None:
    with pytest.raises(ConfigError, match=r"backend\.options\.speed"):
        SimulatorBackend(speed=2)


def test_alternative_constants_file(tmp_path: pytest.TempPathFactory, sim: SimulatorBackend) -> None:
    text = "\n".join(
        f"{k}: {v * 2 if k == 'step_overhead_us_vllm' else v}" for k, v in sim.constants.to_dict().items()
    )
    path = tmp_path / "c.yaml"  # type: ignore[operator]
    path.write_text(text)
    slow = SimulatorBackend(constants=str(path))
    assert slow.describe()["constants"]["step_overhead_us_vllm"] == 2 * sim.constants.step_overhead_us_vllm
    prob, dep = problem("Qwen3-8B", ladder=(1,)), agg()
    assert slow.measure(dep, prob)[0].tpot_ms_p50 > sim.measure(dep, prob)[0].tpot_ms_p50
    bad = tmp_path / "bad.yaml"  # type: ignore[operator]
    bad.write_text(text + "\nbogus: 1\n")
    with pytest.raises(ConfigError, match="bogus"):
        SimulatorBackend(constants=str(bad))


def test_describe(sim: SimulatorBackend) -> None:
    info = sim.describe()
    assert info["name"] == "simulator" and info["version"] == "4"
    assert info["engine"] == "vllm" and info["spec_decode"] == "none"
    assert 0.5 < info["constants"]["hbm_efficiency"] <= 0.95


def test_measure_without_estimates_keeps_the_predictions(sim: SimulatorBackend) -> None:
    # The screening prices every candidate with estimates=False: every predicted field is
    # the same; only the interval bounds and the energy estimate keep their defaults.
    import math
    from dataclasses import fields

    from serving.loadpoint import INTERVAL_FIELDS

    estimated = INTERVAL_FIELDS | {"energy_j", "tok_per_j", "energy_source", "energy_missing_reason"}
    prob = problem("Qwen3-32B")
    for dep in (agg(tp=2), agg(tp=1, count=4)):
        full, bare = sim.measure(dep, prob), sim.measure(dep, prob, estimates=False)
        assert len(full) == len(bare) == len(prob.workload.concurrency)
        assert all(p.energy_source == "estimated" and math.isfinite(p.ttft_ms_low) for p in full)
        for full_point, bare_point in zip(full, bare, strict=True):
            for f in fields(LoadPoint):
                value = getattr(bare_point, f.name)
                if f.name not in estimated:
                    assert repr(value) == repr(getattr(full_point, f.name)), f.name  # NaN too
                elif isinstance(f.default, float) and math.isnan(f.default):
                    assert math.isnan(value), f.name
                else:
                    assert value == f.default, f.name
