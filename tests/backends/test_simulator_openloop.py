"""Open-loop arrivals in the simulator: TTFT under load, interference, the capacity wall."""

from __future__ import annotations

import itertools
import math

import pytest

from backends.simulator import SimulatorBackend
from serving import Deployment, EngineKnobs, Parallelism, Problem, WorkerGroup, Workload, load_gpu, load_model
from tuner.spec import _workload

RATES = [1, 2, 4, 8, 12, 16, 18, 20, 24, 30, 40, 60]


def _problem(workload: Workload) -> Problem:
    return Problem(
        arch=load_model("meta-llama/Llama-3.1-8B"),
        gpu=load_gpu("H100"),
        precision="bf16",
        workload=workload,
        gpus=8,
        gpus_per_node=8,
    )


def _group(tp: int = 1, **knobs: object) -> WorkerGroup:
    return WorkerGroup(parallel=Parallelism(tp=tp), count=1, knobs=EngineKnobs(**knobs))  # type: ignore[arg-type]


AGG = Deployment(mode="agg", agg=_group())
DISAGG = Deployment(mode="disagg", prefill=_group(), decode=_group())


@pytest.mark.parametrize("dep", [AGG, DISAGG], ids=["agg", "disagg"])
def test_ttft_grows_with_the_rate_and_diverges_past_capacity(dep: Deployment) -> None:
    wl = _workload({"isl": 1000, "osl": 200, "request_rates": RATES})
    points = SimulatorBackend().measure(dep, _problem(wl))
    assert [p.request_rate_rps for p in points] == RATES
    stable = [p for p in points if not p.past_capacity]
    beyond = [p for p in points if p.past_capacity]
    assert len(stable) >= 3 and beyond, "the ladder should straddle the capacity"
    for a, b in itertools.pairwise(points):
        assert b.ttft_ms_p50 >= a.ttft_ms_p50 and b.ttft_ms_p99 >= a.ttft_ms_p99
        assert b.tpot_ms_p50 >= a.tpot_ms_p50  # more prompts mixed into the decode steps
        assert b.utilization > a.utilization
    # Below capacity the engine serves what arrives; past it, only its capacity.
    assert all(p.requests_s == pytest.approx(p.request_rate_rps) for p in stable)
    capacity = beyond[0].requests_s
    assert all(p.requests_s == pytest.approx(capacity) for p in beyond)
    assert capacity < beyond[0].request_rate_rps
    # The wall: past capacity TTFT is the backlog of the whole run, tens of times the idle TTFT.
    assert beyond[0].ttft_ms_p99 > 10 * points[0].ttft_ms_p99
    assert beyond[-1].ttft_ms_p99 > beyond[0].ttft_ms_p99
    # Little's law: requests in flight = rate x time in the system.
    p = stable[-1]
    assert p.concurrency == round(p.requests_s * p.e2e_ms_p50 / 1000.0)


def test_agg_capacity_matches_the_saturated_closed_loop() -> None:
    """Two models of one engine: the open-loop capacity and the closed-loop throughput at a
    full batch must agree (within the closed loop's burst effects)."""
    sim = SimulatorBackend()
    closed = sim.measure(AGG, _problem(Workload(isl=1000, osl=200, concurrency=(1024,))))[0]
    open_ = sim.measure(AGG, _problem(_workload({"isl": 1000, "osl": 200, "request_rates": [1000]})))[0]
    assert open_.past_capacity
    assert open_.requests_s == pytest.approx(closed.requests_s, rel=0.1)


def test_burstier_arrivals_and_spread_lengths_wait_longer() -> None:
    sim = SimulatorBackend()

    def p99(**extra: object) -> float:
        wl = _workload({"isl": 1000, "osl": 200, "request_rates": [19], **extra})
        return sim.measure(AGG, _problem(wl))[0].ttft_ms_p99

    base = p99()
    assert p99(burstiness=0.25) > base  # gamma gaps of shape 1/4: ca2 = 4
    spread = _workload(
        {
            "lengths": {"input": {"distribution": "lognormal", "mean": 1000, "std": 1000, "max": 16000}},
            "osl": 200,
            "request_rates": [19],
        }
    )
    assert sim.measure(AGG, _problem(spread))[0].ttft_ms_p99 > base


def test_shared_prefix_makes_prefill_cheaper() -> None:
    sim = SimulatorBackend()
    wl = _workload({"isl": 4000, "osl": 100, "request_rates": [2, 8]})
    plain = sim.measure(AGG, _problem(wl))
    shared = sim.measure(AGG, _problem(_workload({**wl.to_dict(), "shared_prefix": 0.75})))
    for a, b in zip(plain, shared, strict=True):
        assert b.ttft_ms_p50 < a.ttft_ms_p50
        assert b.utilization < a.utilization


def test_trace_arrivals_and_closed_loop_points_are_labelled() -> None:
    sim = SimulatorBackend()
    trace = _workload({"file": "examples/workloads/trace.jsonl", "arrivals": "trace"})
    (point,) = sim.measure(AGG, _problem(trace))
    assert point.request_rate_rps == pytest.approx(trace.trace_rate_rps)
    closed = sim.measure(AGG, _problem(Workload(isl=1000, osl=200, concurrency=(4,))))[0]
    assert math.isnan(closed.request_rate_rps) and not closed.past_capacity
    assert closed.load_key == 4.0
