"""The live load generator's open loop and workload lengths, without vLLM: arrival schedules,
prompts of drawn lengths with a shared prefix, the ladder's steps, and an open-loop point over
real HTTP against an in-process fake server that records when each request arrived."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from backends.live.arrivals import gamma_schedule, trace_schedule
from backends.live.ladder import ladder_steps
from backends.live.loadgen import LOWEST_TOKEN_ID, PromptSource, run_point, summarize
from backends.vllm.options import VllmOptions
from serving import LoadPoint, Workload
from serving.dataset import Request
from serving.lengths import LengthDist
from tuner.console import load_cell


def _gaps(times: tuple[float, ...]) -> np.ndarray:
    return np.diff(np.asarray((0.0, *times)))


def _cv2(gaps: np.ndarray) -> float:
    return float(gaps.var() / gaps.mean() ** 2)


# -- arrival schedules ------------------------------------------------------------------
def test_poisson_gaps_have_mean_one_over_rate_and_exponential_shape() -> None:
    rate = 8.0
    times = gamma_schedule(20_000, rate_rps=rate, rng=np.random.default_rng(0))
    gaps = _gaps(times)
    assert times[-1] == pytest.approx(20_000 / rate), "rescaled so the last send is at N / R"
    assert gaps.mean() == pytest.approx(1 / rate, rel=1e-9)
    assert np.median(gaps) == pytest.approx(math.log(2) / rate, rel=0.03), "exponential median"
    assert _cv2(gaps) == pytest.approx(1.0, rel=0.05)
    assert np.all(gaps >= 0) and np.all(np.diff(times) >= 0)


def test_unrescaled_draws_average_one_over_rate() -> None:
    """Short schedules (each rescaled to its own N / R) still start at the right pace: the
    mean first gap over many seeds is 1 / R."""
    rate = 4.0
    first = [gamma_schedule(5, rate_rps=rate, rng=np.random.default_rng(s))[0] for s in range(4000)]
    assert float(np.mean(first)) == pytest.approx(1 / rate, rel=0.05)


@pytest.mark.parametrize("burstiness", [0.25, 4.0])
def test_burstiness_is_the_gamma_shape(burstiness: float) -> None:
    gaps = _gaps(gamma_schedule(20_000, rate_rps=2.0, burstiness=burstiness, rng=np.random.default_rng(1)))
    assert gaps.mean() == pytest.approx(0.5, rel=1e-9), "the rate does not depend on burstiness"
    assert _cv2(gaps) == pytest.approx(1 / burstiness, rel=0.08)


def test_infinite_burstiness_is_constant_gaps() -> None:
    gaps = _gaps(gamma_schedule(10, rate_rps=5.0, burstiness=math.inf, rng=np.random.default_rng(0)))
    assert gaps == pytest.approx([0.2] * 10)


def test_schedules_are_seeded() -> None:
    def draw(seed: int) -> tuple[float, ...]:
        return gamma_schedule(50, rate_rps=3.0, burstiness=0.5, rng=np.random.default_rng(seed))

    assert draw(7) == draw(7)
    assert draw(7) != draw(8)


def test_bad_schedule_arguments_are_refused() -> None:
    rng = np.random.default_rng(0)
    for kwargs in ({"rate_rps": 0.0}, {"rate_rps": math.inf}, {"rate_rps": 1.0, "burstiness": 0.0}):
        with pytest.raises(ValueError):
            gamma_schedule(3, rng=rng, **kwargs)
    with pytest.raises(ValueError, match="non-decreasing"):
        trace_schedule([0.0, 2.0, 1.0])


def test_trace_timestamps_are_honoured_from_the_first_arrival() -> None:
    stamps = [5.0, 5.0, 5.5, 7.0, 9.0]
    assert trace_schedule(stamps) == pytest.approx((0.0, 0.0, 0.5, 2.0, 4.0))


def test_trace_scaled_to_a_rate_keeps_the_shape_of_its_gaps() -> None:
    stamps = [0.0, 1.0, 1.5, 4.0]  # own rate: 3 requests over 4 s = 0.75 req/s
    scaled = trace_schedule(stamps, rate_rps=3.0)
    assert scaled == pytest.approx((0.0, 0.25, 0.375, 1.0))
    assert (len(scaled) - 1) / scaled[-1] == pytest.approx(3.0)
    assert trace_schedule(stamps, rate_rps=0.75) == pytest.approx(tuple(stamps))


# -- prompts --------------------------------------------------------------------------------
def test_prompts_follow_a_length_distribution() -> None:
    inputs = LengthDist("lognormal", 200.0, 120.0, 20, 900)
    outputs = LengthDist("uniform", 15.0, 0.0, 10, 20)
    source = PromptSource(isl=200, osl=15, vocab_size=5000, seed=2, inputs=inputs, outputs=outputs)
    pairs = source.take(2000)
    ins = np.array([len(ids) for ids, _ in pairs])
    outs = np.array([m for _, m in pairs])
    assert ins.min() >= 20 and ins.max() <= 900 and outs.min() >= 10 and outs.max() <= 20
    assert ins.mean() == pytest.approx(inputs.mean_tokens, rel=0.05)
    assert np.median(ins) < ins.mean(), "lognormal: long right tail"
    assert set(outs) == set(range(10, 21))


def test_shared_prefix_is_identical_across_prompts_and_the_rest_is_not() -> None:
    source = PromptSource(
        isl=100,
        osl=4,
        vocab_size=30_000,
        seed=0,
        inputs=LengthDist("uniform", 100, 0, 60, 140),
        shared_prefix=0.5,
    )
    pairs = source.take(40)
    first = pairs[0][0]
    for ids, _ in pairs:
        shared = round(0.5 * len(ids))
        assert ids[: min(shared, 30)] == first[: min(shared, 30)]
        assert all(LOWEST_TOKEN_ID <= i < 30_000 for i in ids)
    a, b = pairs[1][0], pairs[2][0]
    n = min(round(0.5 * len(a)), round(0.5 * len(b)))
    assert a[:n] == b[:n] and a[n + 5 :][:20] != b[n + 5 :][:20]
    no_prefix = PromptSource(isl=100, osl=4, vocab_size=30_000, seed=0).take(2)
    assert no_prefix[0][0][:10] != no_prefix[1][0][:10]


def test_dataset_rows_keep_their_input_and_output_together() -> None:
    rows = (Request(30, 3), Request(80, 9), Request(50, 5))
    pairs = PromptSource(isl=53, osl=6, vocab_size=1000, rows=rows).take(60)
    assert {(len(ids), m) for ids, m in pairs} == {(30, 3), (80, 9), (50, 5)}


# -- the ladder --------------------------------------------------------------------------
def test_open_loop_ladder_has_a_step_per_rate_with_gamma_send_times() -> None:
    wl = Workload(
        isl=40, osl=8, concurrency=(1,), arrivals="poisson", request_rates=(2.0, 8.0), burstiness=2.0
    )
    options = VllmOptions(requests_per_point=12, seed=5)
    steps = list(ladder_steps(wl, PromptSource.for_workload(wl, vocab_size=500), options))
    assert [s.rate_rps for s in steps] == [2.0, 8.0] and [s.concurrency for s in steps] == [None, None]
    for step in steps:
        assert step.send_at_s is not None and len(step.send_at_s) == len(step.prompts) == 12
        assert step.send_at_s[-1] == pytest.approx(12 / step.rate_rps)
    again = list(ladder_steps(wl, PromptSource.for_workload(wl, vocab_size=500), options))
    assert [s.send_at_s for s in again] == [s.send_at_s for s in steps] and again[0].prompts == steps[
        0
    ].prompts


def test_trace_ladder_sends_the_rows_in_order_at_their_times() -> None:
    rows = tuple(Request(10 + i, 2 + i, 0.5 * i) for i in range(6))  # 2 req/s
    wl = Workload(isl=12, osl=4, concurrency=(1,), requests=rows, arrivals="trace")
    (step,) = ladder_steps(
        wl, PromptSource.for_workload(wl, vocab_size=500), VllmOptions(requests_per_point=4)
    )
    assert step.rate_rps == pytest.approx(2.0)
    assert step.send_at_s == pytest.approx((0.0, 0.5, 1.0, 1.5)), "the file's times, first 4 rows"
    assert [(len(ids), m) for ids, m in step.prompts] == [(10, 2), (11, 3), (12, 4), (13, 5)]
    faster = Workload(isl=12, osl=4, concurrency=(1,), requests=rows, arrivals="trace", request_rates=(8.0,))
    (step,) = ladder_steps(faster, PromptSource.for_workload(faster, vocab_size=500), VllmOptions())
    assert step.send_at_s == pytest.approx(tuple(0.125 * i for i in range(6)))


def test_closed_loop_ladder_is_unchanged() -> None:
    wl = Workload(isl=20, osl=4, concurrency=(1, 4))
    steps = list(
        ladder_steps(wl, PromptSource.for_workload(wl, vocab_size=500), VllmOptions(requests_per_point=3))
    )
    assert [(s.concurrency, len(s.prompts), s.send_at_s) for s in steps] == [(1, 3, None), (4, 8, None)]


def test_run_point_needs_exactly_one_load() -> None:
    with pytest.raises(ValueError, match="either concurrency"):
        run_point(["http://x"], "m", [], concurrency=1, send_at_s=())
    with pytest.raises(ValueError, match="either concurrency"):
        run_point(["http://x"], "m", [])
    with pytest.raises(ValueError, match="2 send times for 1 prompts"):
        run_point(["http://x"], "m", [([11], 1)], send_at_s=(0.0, 1.0))


# -- over HTTP -----------------------------------------------------------------------------
TOKEN_DELAY_S = 0.02


def test_open_loop_sends_on_schedule_whatever_is_in_flight() -> None:
    aiohttp = pytest.importorskip("aiohttp")
    pytest.importorskip("httpx")
    from tests.backends.test_vllm_router import serving

    web = aiohttp.web
    received: list[float] = []

    async def completions(request: Any) -> Any:
        received.append(time.perf_counter())
        body = await request.json()
        out = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await out.prepare(request)
        for i in range(body["max_tokens"]):
            await asyncio.sleep(TOKEN_DELAY_S)
            await out.write(f"data: {json.dumps({'choices': [{'text': '', 'token_ids': [i]}]})}\n\n".encode())
        usage = {"prompt_tokens": len(body["prompt"]), "completion_tokens": body["max_tokens"]}
        await out.write(f"data: {json.dumps({'choices': [], 'usage': usage})}\n\ndata: [DONE]\n\n".encode())
        await out.write_eof()
        return out

    app = web.Application()
    app.router.add_post("/v1/completions", completions)
    at = (0.05, 0.1, 0.15, 0.2, 0.6, 0.65)
    osl = 20  # 0.4 s a request: a mean of over 2 in flight, without counting client overhead
    prompts = PromptSource(isl=16, osl=osl, vocab_size=500).take(len(at))
    with serving() as start:
        url = start(app)
        run = run_point([url], "m", prompts, send_at_s=at, rate_rps=10.0, token_timeout_s=10)
    assert not run.errors and len(received) == 6
    # The client's start (event loop, connection pool) is not on the schedule: gaps are.
    offsets = np.array(received) - received[0]
    assert offsets == pytest.approx(np.array(at) - at[0], abs=0.04), "sent at the schedule, not after replies"
    point = summarize(run, gpus=1)
    assert point.request_rate_rps == 10.0 and point.open_loop and point.load_key == 10.0
    busy = sum(r.e2e_s for r in run.records)
    assert point.concurrency == max(1, round(busy / run.duration_s)) and point.concurrency >= 2
    assert run.duration_s >= at[-1] + osl * TOKEN_DELAY_S, "from the schedule's start to the last finish"


def test_console_shows_the_rate_of_open_loop_points() -> None:
    closed = LoadPoint.from_percentiles(
        concurrency=4,
        gpus=1,
        ttft_ms=(1, 2, 3),
        tpot_ms=(1, 2, 3),
        itl_ms=(1, 2, 3),
        e2e_ms=(1, 2, 3),
        tokens_s=1.0,
        output_tokens_s=1.0,
        requests_s=1.0,
        num_requests=4,
    )
    assert load_cell(closed) == "4"
    assert load_cell(dataclasses.replace(closed, request_rate_rps=8.0)) == "8.0 req/s"


# -- bad live workloads: one line, exit 2, nothing started ---------------------------------
LIVE_SPEC = """\
model: meta-llama/Llama-3.1-8B
precision: bf16
hardware: {{gpu: H100, gpus: 2, gpus_per_node: 2}}
workload:
  concurrency: [1, 4]
{workload}
sla: {{min_tok_s_user: 10}}
search_space: {{preset: small}}
backend: {{name: vllm, options: {{devices: cpu, requests_per_point: 4}}}}
study: {{trials: 2, guided: false}}
"""


@pytest.mark.parametrize(
    ("workload", "fragment"),
    [
        ("  isl: 64\n  osl: 8\n  request_rates: [0]", "workload.request_rates: got 0"),
        ("  isl: 64\n  osl: 8\n  request_rates: [2]\n  burstiness: 0", "workload.burstiness: got 0"),
        ("  isl: 64\n  osl: 8\n  arrivals: trace", "needs a workload.file with an arrival_s column"),
        ("  isl: 64\n  osl: 8\n  request_rates: [2]\n  shared_prefix: 1.0", "workload.shared_prefix"),
        ("  file: {long}\n  arrivals: trace", "workload.file: got 200010; the longest request"),
        (
            "  isl: 64\n  lengths: {{output: {{distribution: uniform, min: 1, max: 300000}}}}",
            "workload.lengths",
        ),
    ],
    ids=[
        "rate-0",
        "burstiness-0",
        "trace-without-times",
        "prefix-1",
        "row-past-context",
        "dist-past-context",
    ],
)
def test_bad_live_workload_is_one_line_and_exit_2(
    workload: str, fragment: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tuner.cli import main

    long = tmp_path / "long.csv"
    long.write_text("input_tokens,output_tokens,arrival_s\n100,10,0\n200000,10,0.5\n")
    spec = tmp_path / "spec.yaml"
    spec.write_text(LIVE_SPEC.format(workload=workload.format(long=long)))
    capsys.readouterr()
    assert main(["tune", str(spec), "--out", str(tmp_path / "run"), "-q"]) == 2
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    assert fragment in err, err
    assert not (tmp_path / "run" / "study.db").exists(), "nothing ran"
