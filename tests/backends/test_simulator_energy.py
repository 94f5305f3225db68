"""The simulator's energy estimate (backends/simulator/power.py)."""

from __future__ import annotations

import dataclasses

import pytest

from backends.simulator import SimulatorBackend
from backends.simulator.power import FULL_POWER_SOL_FRAC, IDLE_POWER_FRAC, PowerModel, gpu_power_w
from serving import Deployment, EngineKnobs, Parallelism, Problem, WorkerGroup, Workload, load_gpu, load_model


def _problem(gpu: str = "H200", ladder: tuple[int, ...] = (1, 8, 64)) -> Problem:
    return Problem(
        arch=load_model("Qwen/Qwen3-32B"),
        gpu=load_gpu(gpu),
        precision="bf16",
        workload=Workload(isl=2000, osl=500, concurrency=ladder),
        gpus=8,
        gpus_per_node=8,
    )


def _agg(tp: int = 2, count: int = 1) -> Deployment:
    return Deployment(
        mode="agg", agg=WorkerGroup(Parallelism(tp=tp), count=count, knobs=EngineKnobs(max_num_seqs=64))
    )


def _disagg() -> Deployment:
    return Deployment(
        mode="disagg", prefill=WorkerGroup(Parallelism(tp=2)), decode=WorkerGroup(Parallelism(tp=4))
    )


@pytest.mark.parametrize("dep", [_agg(), _disagg()], ids=["agg", "disagg"])
def test_every_simulated_point_has_positive_estimated_energy(dep: Deployment) -> None:
    points = SimulatorBackend().measure(dep, _problem())
    for p in points:
        assert p.energy_source == "estimated" and p.energy_missing_reason == ""
        assert p.energy_j > 0 and p.tok_per_j > 0
        # Mean power over the window lies between the idle floor and the board power.
        watts = p.energy_j / (p.num_requests / p.requests_s)
        board = 700.0 * dep.gpus()
        assert IDLE_POWER_FRAC * board <= watts <= board
    # A busier deployment yields more tokens per joule (the idle floor is shared by more tokens).
    assert [p.tok_per_j for p in points] == sorted(p.tok_per_j for p in points)


def test_energy_grows_with_gpu_count_at_equal_tokens() -> None:
    problem = _problem()
    at_8 = dataclasses.replace(problem, workload=problem.workload.with_load_keys((8,)))
    (point,) = SimulatorBackend().measure(_agg(tp=2), at_8)

    def served_by(dep: Deployment) -> float:
        """Joules of the same point (same tokens over the same window) on ``dep``."""
        gpus = dep.gpus()
        same = dataclasses.replace(point, gpus=gpus, output_tok_s_gpu=point.output_tok_s_gpu * 2 / gpus)
        out = PowerModel(dep, problem).attach(same)
        assert out.tok_per_j == pytest.approx(
            point.output_tok_s_gpu * 2 * point.num_requests / point.requests_s / out.energy_j
        )
        return out.energy_j

    # Sharding the same work over more GPUs (TP) adds their idle floor.
    assert served_by(_agg(tp=2)) < served_by(_agg(tp=4)) < served_by(_agg(tp=8))
    # Replicas each stream their own copy of the weights: more joules than one TP4 worker.
    assert served_by(_agg(tp=2, count=2)) > served_by(_agg(tp=4))


def test_power_scales_with_board_power_and_saturates() -> None:
    h100, b200 = load_gpu("H100"), load_gpu("B200")
    assert gpu_power_w(h100, 0.0) == pytest.approx(IDLE_POWER_FRAC * 700)
    assert gpu_power_w(h100, FULL_POWER_SOL_FRAC) == pytest.approx(700) == gpu_power_w(h100, 1.5)
    assert gpu_power_w(b200, 0.3) == pytest.approx(gpu_power_w(h100, 0.3) * 1000 / 700)


def test_gpu_without_board_power_leaves_energy_missing_with_the_reason() -> None:
    problem = _problem()
    unknown = dataclasses.replace(problem, gpu=dataclasses.replace(problem.gpu, name="X1", board_power_w=0.0))
    points = SimulatorBackend().measure(_agg(), unknown)
    assert all(p.energy_source == "missing" for p in points)
    assert points[0].energy_missing_reason == "no board power known for GPU X1"
