"""The backend contract (backends/base.py), run against every backend factory.

A new backend joins by adding its factory to ``FACTORIES``; the live vLLM backend will
be added here under the ``live`` marker.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable

import pytest

from backends import Backend
from backends.simulator import SimulatorBackend
from serving import Deployment, LoadPoint, Parallelism, Problem, WorkerGroup, Workload, load_gpu, load_model

FACTORIES: list[Callable[[], Backend]] = [SimulatorBackend]
METRICS = ("ttft_ms", "tpot_ms", "itl_ms", "e2e_ms")
PLAIN = ("tok_s_user", "tok_s_gpu", "output_tok_s_gpu", "requests_s")


@pytest.fixture(params=FACTORIES, ids=lambda f: getattr(f, "__name__", str(f)))
def backend(request: pytest.FixtureRequest) -> Backend:
    made: Backend = request.param()
    return made


def _problem(ladder: tuple[int, ...] = (1, 4, 16)) -> Problem:
    workload = Workload(isl=512, osl=128, concurrency=ladder)
    return Problem(
        arch=load_model("Qwen3-8B"),
        gpu=load_gpu("h100"),
        precision="bf16",
        workload=workload,
        gpus=4,
        gpus_per_node=8,
    )


DEPLOYMENTS = {
    "agg": Deployment(mode="agg", agg=WorkerGroup(parallel=Parallelism(tp=2), count=1)),
    "agg-2x": Deployment(mode="agg", agg=WorkerGroup(parallel=Parallelism(tp=1), count=2)),
    "disagg": Deployment(
        mode="disagg",
        prefill=WorkerGroup(parallel=Parallelism(tp=1), count=1),
        decode=WorkerGroup(parallel=Parallelism(tp=2), count=1),
    ),
}


def test_is_a_backend(backend: Backend) -> None:
    assert isinstance(backend, Backend)
    assert isinstance(backend.name, str) and backend.name
    info = backend.describe()
    assert info["name"] == backend.name and "version" in info


@pytest.mark.parametrize("which", sorted(DEPLOYMENTS))
def test_check_is_side_effect_free(backend: Backend, which: str) -> None:
    dep, prob = DEPLOYMENTS[which], _problem()
    before = (copy.deepcopy(dep), copy.deepcopy(prob), backend.describe())
    results = {backend.check(dep, prob) for _ in range(3)}
    assert len(results) == 1
    result = results.pop()
    assert result is None or (isinstance(result, str) and result)
    assert (dep, prob, backend.describe()) == before


def test_check_returns_reason_for_misfit(backend: Backend) -> None:
    prob = Problem(
        arch=load_model("Llama-3.1-70B"),
        gpu=load_gpu("h100"),
        precision="bf16",
        workload=Workload(isl=512, osl=128, concurrency=(1,)),
        gpus=1,
        gpus_per_node=8,
    )
    dep = Deployment(mode="agg", agg=WorkerGroup(parallel=Parallelism(tp=1)))
    reason = backend.check(dep, prob)
    assert isinstance(reason, str) and reason


@pytest.mark.parametrize("which", sorted(DEPLOYMENTS))
def test_measure_one_point_per_level_in_order(backend: Backend, which: str) -> None:
    dep, prob = DEPLOYMENTS[which], _problem((1, 4, 16))
    seen: list[LoadPoint] = []
    points = backend.measure(dep, prob, on_point=seen.append)
    assert [p.concurrency for p in points] == [1, 4, 16]
    assert seen == points
    for p in points:
        assert p.gpus == dep.gpus()
        for name in PLAIN:
            value = p.metric(name)
            assert math.isfinite(value) and value > 0, name
        for name in METRICS:
            p50, p90, p99 = (p.metric(name, q) for q in (50, 90, 99))
            assert all(math.isfinite(v) and v > 0 for v in (p50, p90, p99)), name
            assert p50 <= p90 <= p99, name
        assert p.tok_s_user == pytest.approx(1000.0 / p.tpot_ms_p50)
        assert p.output_tok_s_gpu < p.tok_s_gpu


def test_measure_without_callback(backend: Backend) -> None:
    points = backend.measure(DEPLOYMENTS["agg"], _problem((2,)))
    assert len(points) == 1
