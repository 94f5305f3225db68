"""The vllm backend's parts that need no server: statistics, prompts, metrics parsing,
options, launch-plan localisation and NVML absence."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

from backends import create
from backends.live.loadgen import LOWEST_TOKEN_ID, PointRun, PromptSource, RequestRecord, summarize
from backends.live.metrics import parse_metrics
from backends.live.nvml import NvmlUnavailable, inventory
from backends.vllm import VllmBackend
from backends.vllm.backend import prompt_vocab
from backends.vllm.launcher import ROUTER_COMMAND, VLLM_COMMAND, localize
from backends.vllm.metrics import VLLM_METRICS
from serving import ConfigError, Deployment, Parallelism, Problem, WorkerGroup, Workload, load_gpu, load_model
from serving.launch import plan_launch


def _record(ttft: float, tpot: float, out: int = 5, prompt: int = 10) -> RequestRecord:
    gaps = (tpot,) * (out - 1)
    return RequestRecord(prompt, out, ttft, ttft + tpot * (out - 1), gaps)


def test_summarize_follows_the_chart_definitions() -> None:
    records = tuple(_record(ttft=0.010 * (i + 1), tpot=0.002 * (i + 1)) for i in range(5))
    point = summarize(PointRun(concurrency=2, records=records, duration_s=2.0), gpus=2)
    assert point.num_requests == 5 and point.concurrency == 2 and point.gpus == 2
    assert point.ttft_ms_p50 == pytest.approx(30.0)
    assert point.ttft_ms_p90 == pytest.approx(np.percentile([10, 20, 30, 40, 50], 90))
    assert point.tpot_ms_p50 == pytest.approx(6.0)
    assert point.itl_ms_p50 == pytest.approx(6.0)
    assert point.e2e_ms_p50 == pytest.approx(30.0 + 4 * 6.0)
    assert point.tok_s_user == pytest.approx(1000.0 / 6.0)
    assert point.tok_s_gpu == pytest.approx((5 * 10 + 5 * 5) / 2.0 / 2)
    assert point.output_tok_s_gpu == pytest.approx(5 * 5 / 2.0 / 2)
    assert point.requests_s == pytest.approx(2.5)
    for name in ("ttft_ms", "tpot_ms", "itl_ms", "e2e_ms"):
        assert point.metric(name, 50) <= point.metric(name, 90) <= point.metric(name, 99)


def test_tpot_excludes_the_first_token_and_single_token_requests_have_none() -> None:
    assert RequestRecord(10, 5, 0.1, 0.5).tpot_s == pytest.approx(0.1)
    assert math.isnan(RequestRecord(10, 1, 0.1, 0.1).tpot_s)


def test_failed_requests_are_left_out_and_none_ok_raises() -> None:
    bad = RequestRecord(0, 0, math.nan, math.nan, error="hang")
    point = summarize(PointRun(1, (_record(0.01, 0.001), bad), 1.0), gpus=1)
    assert point.num_requests == 1
    with pytest.raises(ValueError, match="no successful request"):
        summarize(PointRun(1, (bad,), 1.0), gpus=1)


def test_prompts_have_exact_lengths_are_seeded_and_in_vocab() -> None:
    a = PromptSource(isl=37, osl=9, vocab_size=100, seed=3).take(20)
    b = PromptSource(isl=37, osl=9, vocab_size=100, seed=3).take(20)
    assert a == b
    assert PromptSource(isl=37, osl=9, vocab_size=100, seed=4).take(20) != a
    for ids, max_tokens in a:
        assert len(ids) == 37 and max_tokens == 9
        assert all(LOWEST_TOKEN_ID <= i < 100 for i in ids)


def test_prompt_lengths_spread_with_range_ratio() -> None:
    pairs = PromptSource(isl=100, osl=20, vocab_size=1000, range_ratio=0.5).take(200)
    lengths = {len(ids) for ids, _ in pairs}
    assert min(lengths) >= 50 and max(lengths) <= 150 and len(lengths) > 10


METRICS_TEXT = """\
# TYPE vllm:num_preemptions counter
vllm:num_preemptions_total{engine="0",model_name="m"} 2.0
vllm:num_preemptions_total{engine="1",model_name="m"} 1.0
# TYPE vllm:prompt_tokens_by_source counter
vllm:prompt_tokens_by_source_total{engine="0",model_name="m",source="external_kv_transfer"} 96.0
vllm:prompt_tokens_by_source_total{engine="0",model_name="m",source="local_compute"} 4.0
# TYPE vllm:kv_cache_usage_perc gauge
vllm:kv_cache_usage_perc{engine="0",model_name="m"} 0.25
vllm:kv_cache_usage_perc{engine="1",model_name="m"} 0.5
# TYPE vllm:request_success counter
vllm:request_success_total{engine="0",finished_reason="length",model_name="m"} 3.0
vllm:request_success_total{engine="1",finished_reason="length",model_name="m"} 5.0
# TYPE vllm:time_to_first_token_seconds histogram
vllm:time_to_first_token_seconds_sum{engine="0",model_name="m"} 0.5
vllm:time_to_first_token_seconds_count{engine="0",model_name="m"} 10.0
"""


def test_metrics_are_summed_over_engines_and_differenced() -> None:
    now = parse_metrics(METRICS_TEXT, VLLM_METRICS)
    assert now.preemptions == 3.0 and now.kv_cache_usage == 0.5
    assert now.external_kv_tokens == 96.0
    assert now.requests_by_engine == {"0": 3.0, "1": 5.0}
    assert now.mean_ttft_ms == pytest.approx(50.0)
    before = parse_metrics(METRICS_TEXT.replace(" 96.0", " 32.0").replace(" 2.0\n", " 1.0\n"), VLLM_METRICS)
    delta = now.minus(before)
    assert delta.external_kv_tokens == 64.0 and delta.preemptions == 1.0 and delta.kv_cache_usage == 0.5


def test_unknown_and_bad_options_name_the_key() -> None:
    with pytest.raises(ConfigError, match=r"backend\.options\.bogus"):
        VllmBackend(bogus=1)
    with pytest.raises(ConfigError, match=r"backend\.options\.devices"):
        VllmBackend(devices="tpu")
    with pytest.raises(ConfigError, match=r"backend\.options\.requests_per_point"):
        VllmBackend(requests_per_point=-1)
    backend = create("vllm", {"devices": "cpu", "enforce_eager": True, "extra_args": ["--seed", "1"]})
    assert backend.name == "vllm"
    assert backend.describe()["options"]["extra_args"] == ["--seed", "1"]


def _problem(gpus_per_node: int = 2) -> Problem:
    return Problem(
        arch=load_model("Llama-3.1-8B"),
        gpu=load_gpu("h100"),
        precision="bf16",
        workload=Workload(isl=64, osl=16, concurrency=(1,)),
        gpus=2,
        gpus_per_node=gpus_per_node,
    )


DISAGG = Deployment(
    mode="disagg", prefill=WorkerGroup(Parallelism(tp=1)), decode=WorkerGroup(Parallelism(tp=1))
)


def test_localize_gives_free_ports_local_commands_and_nixl_ports() -> None:
    plan = localize(plan_launch(DISAGG, _problem(), devices="cpu"), extra_args=("--enforce-eager",))
    ports = [w.port for w in plan.workers]
    assert plan.router is not None and len({*ports, plan.router.port}) == 3
    nixl = {w.env_dict()["VLLM_NIXL_SIDE_CHANNEL_PORT"] for w in plan.workers}
    assert len(nixl) == 2
    for w in plan.workers:
        assert w.argv[: len(VLLM_COMMAND) + 1] == (*VLLM_COMMAND, "serve")
        assert w.argv[w.argv.index("--port") + 1] == str(w.port)
        assert w.argv[-1] == "--enforce-eager"
    assert plan.router.argv[: len(ROUTER_COMMAND)] == ROUTER_COMMAND
    assert plan.router.prefill_urls == (plan.workers[0].url,)
    assert plan.router.decode_urls == (plan.workers[1].url,)
    assert plan.workers[0].env_dict()["VLLM_CPU_OMP_THREADS_BIND"] == "0"
    assert plan.workers[1].env_dict()["VLLM_CPU_OMP_THREADS_BIND"] == "1"


def test_check_rejects_what_this_machine_cannot_run() -> None:
    backend = VllmBackend(devices="cpu")
    big = Deployment(mode="agg", agg=WorkerGroup(Parallelism(tp=1), count=64))
    assert "cores" in (backend.check(big, _problem(gpus_per_node=64)) or "")
    two_nodes = Deployment(mode="agg", agg=WorkerGroup(Parallelism(tp=2), count=2))
    assert "single-node" in (backend.check(two_nodes, _problem(gpus_per_node=2)) or "")
    bad_ep = Deployment(mode="agg", agg=WorkerGroup(Parallelism(tp=2, ep=2)))
    assert backend.check(bad_ep, _problem()) is None  # ep == tp*dp: expressible
    wrong = Deployment(mode="agg", agg=WorkerGroup(Parallelism(tp=4, dp=1, ep=2)))
    assert "ep" in (backend.check(wrong, _problem(gpus_per_node=4)) or "")


def test_without_nvml_module_or_driver(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import fails
    with pytest.raises(NvmlUnavailable, match=r"nvidia-ml-py is not installed.*\[live\]"):
        inventory()
    reason = VllmBackend(devices="cuda").check(DISAGG, _problem())
    assert reason is not None and "devices: cpu" in reason


def test_tuner_gpus_without_nvml_prints_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from tuner.cli import main

    monkeypatch.setitem(sys.modules, "pynvml", None)
    assert main(["gpus"]) == 0
    out = capsys.readouterr().out.strip()
    assert out.startswith("no GPUs:") and "devices: cpu" in out and len(out.splitlines()) == 1


def test_prompt_vocab_comes_from_the_tokenizer_or_stays_below_padding(tmp_path: Path) -> None:
    tokenizer = {"model": {"vocab": {"a": 0, "b": 1, "c": 2}}, "added_tokens": [{"id": 7, "content": "<s>"}]}
    (tmp_path / "tokenizer.json").write_text(json.dumps(tokenizer))
    assert prompt_vocab(tmp_path, 100) == 8
    assert prompt_vocab(tmp_path / "absent", 151936) < 151669  # Qwen3: padded embedding rows


def test_localize_maps_assigned_devices_in_launch_order() -> None:
    plan = plan_launch(DISAGG, _problem(gpus_per_node=8), devices="cuda")
    placed = localize(plan, devices=(5, 2))
    assert [w.gpu_ids for w in placed.workers] == [(5,), (2,)]
    assert [w.env_dict()["CUDA_VISIBLE_DEVICES"] for w in placed.workers] == ["5", "2"]
    cores = localize(plan_launch(DISAGG, _problem(), devices="cpu"), devices=(1, 0))
    assert [w.env_dict()["VLLM_CPU_OMP_THREADS_BIND"] for w in cores.workers] == ["1", "0"]
    with pytest.raises(ValueError, match="needs 2 devices"):
        localize(plan, devices=(1,))


class _FakeNvml:
    """Just enough of pynvml for two GPUs joined by one NVLink (no driver on CI machines)."""

    NVML_NVLINK_MAX_LINKS = 2

    class NVMLError(Exception):
        pass

    def __init__(self) -> None:
        self.open = 0

    def nvmlInit(self) -> None:
        self.open += 1

    def nvmlShutdown(self) -> None:
        self.open -= 1

    def nvmlDeviceGetCount(self) -> int:
        return 2

    def nvmlDeviceGetHandleByIndex(self, i: int) -> int:
        return i

    def nvmlDeviceGetPciInfo(self, h: int) -> object:
        return type("Pci", (), {"busId": f"0000:0{h}:00.0".encode()})()

    def nvmlDeviceGetMemoryInfo(self, h: int) -> object:
        return type("Mem", (), {"total": 141 * 2**30, "free": (140 - h) * 2**30})()

    def nvmlDeviceGetName(self, h: int) -> str:
        return "NVIDIA H200"

    def nvmlDeviceGetUUID(self, h: int) -> str:
        return f"GPU-{h}"

    def nvmlDeviceGetPowerUsage(self, h: int) -> int:
        return 75_000

    def nvmlDeviceGetEnforcedPowerLimit(self, h: int) -> int:
        raise self.NVMLError("not supported")

    def nvmlDeviceGetNvLinkState(self, h: int, link: int) -> int:
        return 1 if link == 0 else 0

    def nvmlDeviceGetNvLinkRemotePciInfo(self, h: int, link: int) -> object:
        return self.nvmlDeviceGetPciInfo(1 - h)

    def nvmlDeviceGetTotalEnergyConsumption(self, h: int) -> int:
        return 1000 * (h + 1)


def test_inventory_reads_memory_power_and_nvlink_peers(monkeypatch: pytest.MonkeyPatch) -> None:
    from backends.live.nvml import energy_mj

    fake = _FakeNvml()
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    gpus = inventory()
    assert [g.nvlink_peers for g in gpus] == [(1,), (0,)]
    assert gpus[1].memory_free_bytes == 139 * 2**30 and gpus[0].power_w == 75.0
    assert gpus[0].power_limit_w == 0.0, "unsupported queries read as 0"
    assert energy_mj([0, 1]) == 3000.0
    assert fake.open == 0, "every nvmlInit is shut down"


def test_trial_logs_follow_the_study(tmp_path: Path) -> None:
    """Logs land in the run directory as trial-<study trial number>; a retry gets -2."""
    from backends.base import MeasureContext
    from backends.vllm.backend import VllmBackend

    backend = VllmBackend(devices="cpu")
    context = MeasureContext(trial=7, log_dir=str(tmp_path / "logs"))
    assert backend._trial_dir(context) == tmp_path / "logs" / "trial-7"
    assert backend._trial_dir(context) == tmp_path / "logs" / "trial-7-2"
