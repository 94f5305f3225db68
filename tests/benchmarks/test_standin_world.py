"""The stand-in "live" worlds of ``benchmarks/standin_world.py``: the default world stays
fixed (docs and benchmarks quote it), the harsh world is deterministic per seed, differs
between seeds, stays a legal set of constants and moves topologies relative to each other."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest

from backends.simulator.constants import Constants, load_constants
from benchmarks.standin_world import (
    HARSH_RANGE,
    HARSH_SIGMAS,
    HIDDEN_MULTIPLIERS,
    StandInWorld,
    harsh_multipliers,
)
from search_spaces import infeasible_reason, load_space
from tests.search_spaces.conftest import make_problem
from tuner.sla import SLA
from tuner.study import objective_values


def test_default_world_is_unchanged() -> None:
    """The default world's hidden constants are the documented ones, for every seed."""
    assert HIDDEN_MULTIPLIERS == {
        "hbm_efficiency": 0.82,
        "hbm_efficiency_blackwell": 0.85,
        "gemm_compute_efficiency": 0.8,
        "gemm_compute_efficiency_blackwell": 0.78,
        "step_overhead_us_vllm": 1.6,
        "request_overhead_us_vllm": 0.6,
        "moe_imbalance": 1.25,
        "comm_efficiency": 0.85,
        "kv_transfer_fixed_us": 2.0,
        "kernel_speed_vllm": 0.95,
    }
    prior = load_constants()
    expected = replace(prior, **{k: getattr(prior, k) * m for k, m in HIDDEN_MULTIPLIERS.items()})
    for seed in (0, 7):
        world = StandInWorld(seed=seed)
        assert world.world == "default"
        assert world.constants == expected
        assert world.multipliers == HIDDEN_MULTIPLIERS


def test_harsh_world_is_deterministic_per_seed_and_differs_between_seeds() -> None:
    first, again = StandInWorld(seed=4, world="harsh"), StandInWorld(seed=4, world="harsh")
    assert first.constants == again.constants
    assert first.multipliers == harsh_multipliers(4, load_constants())
    others = [StandInWorld(seed=s, world="harsh").constants for s in range(4)]
    assert len({c for c in [*others, first.constants]}) == 5
    assert first.constants != StandInWorld(seed=4).constants  # not the default world


def test_harsh_constants_are_legal_and_plausible() -> None:
    prior = load_constants()
    lo, hi = HARSH_RANGE
    for seed in range(50):
        multipliers = harsh_multipliers(seed, prior)
        assert set(multipliers) == set(HARSH_SIGMAS)
        assert all(lo <= m <= hi for m in multipliers.values()), seed
        world = StandInWorld(seed=seed, world="harsh")
        Constants.from_dict(world.constants.to_dict())  # fractions <= 1, imbalance >= 1
    outside = set(HARSH_SIGMAS) - set(HIDDEN_MULTIPLIERS)
    assert {"nvlink_latency_us", "attn_prefill_efficiency", "seq_overhead_us_vllm"} <= outside


def test_unknown_world_is_rejected() -> None:
    with pytest.raises(ValueError, match="default, harsh"):
        StandInWorld(world="brutal")


def test_harsh_world_moves_the_best_topology_between_seeds() -> None:
    """Unlike the default world (one set of constants), the harsh world's optimum is not
    always the same topology: the perturbation reorders families, not just scales them."""
    problem = make_problem("Qwen3-32B", "H200", isl=4000, osl=1000)
    sla = SLA(min_tok_s_user=30, max_ttft_ms=2000)
    probe = StandInWorld()
    feasible = [
        d
        for d in load_space("dense-single-node").candidates(problem)
        if infeasible_reason(d, problem) is None and probe.check(d, problem) is None
    ]
    best_labels = set()
    for seed in range(4):
        world = StandInWorld(seed=seed, world="harsh")
        best, label = -math.inf, ""
        for d in feasible:
            values, violation = objective_values(world.true_points(d, problem), sla, "sla")
            if violation == 0 and values[0] > best:
                best, label = values[0], d.label()
        best_labels.add(label)
    assert len(best_labels) >= 2, best_labels
