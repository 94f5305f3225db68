"""The Optuna encoding: suggest/params round trip, unique enumeration, real studies."""

from __future__ import annotations

import optuna
import pytest
from optuna.trial import FixedTrial

from search_spaces import infeasible_reason, load_space, parse_space
from serving import ConfigError, Deployment, EngineKnobs, Parallelism, WorkerGroup

from .conftest import PRESET_PROBLEMS, make_problem


def test_params_round_trip_over_every_candidate(preset: str) -> None:
    space, problem = load_space(preset), PRESET_PROBLEMS[preset]
    for deployment in space.candidates(problem):
        assert space.suggest(FixedTrial(space.params(deployment)), problem) == deployment


def test_candidates_are_unique(preset: str) -> None:
    space, problem = load_space(preset), PRESET_PROBLEMS[preset]
    keys = [d.key() for d in space.candidates(problem)]
    assert len(keys) == len(set(keys)) > 0


def test_small_space_is_exactly_enumerated() -> None:
    # On 1 GPU: agg TP2 does not fit, so a drawn TP2 snaps to TP1, and "max" = 1 = count 1:
    # 3 seqs x 2 tokens = 6. Disagg needs 2 GPUs, so the mode is not offered at all.
    space, problem = load_space("small"), PRESET_PROBLEMS["small"]
    assert len(list(space.candidates(problem))) == 6
    two_gpus = make_problem("Llama-3.1-8B", "H100", gpus=2)
    # 2 GPUs: agg TP1 x {1, 2 workers} + TP2 x 1, each 6 knob pairs; disagg 1P+1D x 2 seqs.
    assert len(list(space.candidates(two_gpus))) == 3 * 6 + 2


def test_moe_space_holds_the_inferencex_labels_that_fit() -> None:
    space, problem = load_space("moe-multi-node"), PRESET_PROBLEMS["moe-multi-node"]
    labels = {d.label() for d in space.candidates(problem)}
    assert {"1xDEP8+1xDEP32", "2xDEP8+1xDEP16", "1xTEP8+1xTEP8", "DEP32", "TEP8", "TP8"} <= labels
    # DeepSeek-R1's fp8 weights need more than 4 GB200s per worker: the smaller InferenceX
    # prefill workers (1xDEP4+1xDEP8, 2xDEP2+1xDEP8) are static-infeasible, so not encoded.
    dep4 = Deployment(
        mode="disagg",
        prefill=WorkerGroup(Parallelism(dp=4, ep=4)),
        decode=WorkerGroup(Parallelism(dp=8, ep=8)),
    )
    assert (infeasible_reason(dep4, problem) or "").startswith("memory")
    assert "1xDEP4+1xDEP8" not in labels


def test_dense_space_holds_agg_replicas_and_disagg_pools() -> None:
    space, problem = load_space("dense-single-node"), PRESET_PROBLEMS["dense-single-node"]
    labels = {d.label() for d in space.candidates(problem)}
    assert {"TP8", "2xTP4", "4xTP2", "8xTP1", "TP1", "1xTP4+1xTP4", "2xTP2+1xTP4"} <= labels


def test_count_max_fills_the_budget() -> None:
    space = parse_space(
        {"modes": ["disagg"], "prefill": {"tp": [2], "count": [1]}, "decode": {"tp": [2], "count": ["max"]}}
    )
    problem = make_problem("Qwen3-32B", "H200", gpus=8)
    (deployment,) = space.candidates(problem)
    assert deployment.label() == "1xTP2+3xTP2"
    assert deployment.gpus() == problem.gpus


def test_params_skip_constants_and_use_symbols() -> None:
    space = load_space("moe-multi-node")
    deployment = Deployment(
        mode="disagg",
        prefill=WorkerGroup(
            Parallelism(dp=8, ep=8), 1, EngineKnobs(max_num_seqs=64, max_num_batched_tokens=16384)
        ),
        decode=WorkerGroup(Parallelism(dp=8, ep=8), 7),  # 7 = "max" on 64 GPUs after a DEP8
    )
    params = space.params(deployment)
    assert params["mode"] == "disagg"
    assert params["decode.count"] == "max"
    # Ordered dimensions hold the deployed values, drawn with suggest_int(log=True).
    assert params["prefill.tp"] == 1 and params["prefill.dp"] == 8
    assert params["decode.max_num_seqs"] == 256  # the default
    assert "prefill.ep" not in params  # a single choice is a constant, not a parameter
    assert space.suggest(FixedTrial(params), PRESET_PROBLEMS["moe-multi-node"]) == deployment


def test_draws_over_the_budget_snap_into_it() -> None:
    """8xDEP8 prefill + 2xDEP32 decode is 128 GPUs: decode takes its 32 first (at its least
    count, 1), prefill clips to the largest listed count that fits the rest (4), and decode
    clips to what prefill leaves (1)."""
    space, problem = load_space("moe-multi-node"), PRESET_PROBLEMS["moe-multi-node"]
    params = {
        "mode": "disagg",
        "kv_cache_dtype": "fp8",
        "prefill.tp": 1,
        "prefill.dp": 8,
        "prefill.count": 8,
        "decode.tp": 1,
        "decode.dp": 32,
        "decode.count": 2,
        "decode.max_num_seqs": 256,
    }
    deployment = space.suggest(FixedTrial(params), problem)
    assert deployment.label() == "4xDEP8+1xDEP32"
    assert deployment.gpus() <= problem.gpus


def test_params_rejects_a_deployment_outside_the_space() -> None:
    space = load_space("small")
    outside = Deployment(mode="agg", agg=WorkerGroup(Parallelism(tp=4)))
    with pytest.raises(ConfigError) as info:
        space.params(outside)
    assert info.value.field == "search_space.agg.tp"


def test_same_name_always_has_the_same_choices(preset: str) -> None:
    """Optuna needs one distribution per parameter name across trials."""
    space, problem = load_space(preset), PRESET_PROBLEMS[preset]
    seen: dict[str, tuple[object, ...]] = {}

    class Recorder:
        def __init__(self, params: dict[str, object]) -> None:
            self.params = params

        def suggest_categorical(self, name: str, choices: list[object]) -> object:
            assert seen.setdefault(name, ("categorical", *choices)) == ("categorical", *choices), name
            return self.params[name]

        def suggest_int(self, name: str, low: int, high: int, log: bool = False) -> object:
            assert seen.setdefault(name, ("int", low, high, log)) == ("int", low, high, log), name
            return self.params[name]

    for deployment in list(space.candidates(problem))[::7]:
        space.suggest(Recorder(space.params(deployment)), problem)  # type: ignore[arg-type]
    assert "mode" in seen or len(space.modes) == 1 or preset == "small"


@pytest.mark.parametrize("sampler_cls", [optuna.samplers.RandomSampler, optuna.samplers.TPESampler])
def test_real_study_suggests_points_of_the_space(
    preset: str, sampler_cls: type[optuna.samplers.BaseSampler]
) -> None:
    space, problem = load_space(preset), PRESET_PROBLEMS[preset]
    keys = {d.key() for d in space.candidates(problem)}
    study = optuna.create_study(direction="maximize", sampler=sampler_cls(seed=7))  # type: ignore[call-arg]
    drawn: list[Deployment] = []

    def objective(trial: optuna.Trial) -> float:
        deployment = space.suggest(trial, problem)
        drawn.append(deployment)
        return 0.0 if infeasible_reason(deployment, problem) else float(deployment.gpus())

    study.optimize(objective, n_trials=30)
    assert len(drawn) == 30
    assert all(d.key() in keys for d in drawn)


def test_enqueued_params_reproduce_the_deployment() -> None:
    space, problem = load_space("dense-single-node"), PRESET_PROBLEMS["dense-single-node"]
    target = next(d for d in space.candidates(problem) if d.label() == "1xTP2+3xTP2")
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=1))
    study.enqueue_trial(space.params(target))
    trial = study.ask()
    assert space.suggest(trial, problem) == target


def test_marked_walk_meets_what_the_whole_tree_meets_in_order(preset: str) -> None:
    # The enumeration skips subtrees below a state it walked before (encoding._walk); the
    # whole tree, walked without marks, must give the same deployments in the same order.
    from search_spaces import encoding
    from search_spaces.budget import plan

    space, problem = load_space(preset), PRESET_PROBLEMS[preset]
    layout = plan(space, problem)
    whole: list[Deployment] = []
    leaves = 0
    for dep in encoding._walk(lambda pick, mark: encoding._build(space, problem, layout, pick)):
        leaves += 1
        if dep not in whole:
            whole.append(dep)
    assert list(space.candidates(problem)) == whole
    if preset == "moe-multi-node":  # the marks are what make the 64-GPU space cheap
        assert leaves > 5 * len(whole)
