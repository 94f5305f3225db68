"""Server lifecycle and port selection, with small real processes standing in for vLLM.

The stand-in is a Python HTTP server that answers ``/health`` and starts a child process (as
vLLM's API server starts its engine), so stopping the whole process group is checked too.
"""

from __future__ import annotations

import os
import socket
import sys
import textwrap
from pathlib import Path

import pytest

from backends.live.server import (
    ServerFailed,
    ServerProcess,
    failure_reason,
    free_port_block,
    free_ports,
    group_alive,
)

STAND_IN = textwrap.dedent(
    """
    import http.server, subprocess, sys, time
    port, delay = int(sys.argv[1]), float(sys.argv[2])
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    print("child", child.pid, flush=True)
    if delay < 0:
        print("ValueError: max_num_batched_tokens (16) is smaller than max_model_len (256)", flush=True)
        sys.exit(3)
    time.sleep(delay)

    class Health(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200 if self.path == "/health" else 404)
            self.end_headers()

        def log_message(self, *args):
            pass

    http.server.HTTPServer(("127.0.0.1", port), Health).serve_forever()
    """
)


def _server(tmp_path: Path, delay: float, *, timeout_s: float = 20.0) -> ServerProcess:
    script = tmp_path / "stand_in.py"
    script.write_text(STAND_IN)
    port = free_ports(1)[0]
    return ServerProcess(
        "stand-in",
        [sys.executable, str(script), str(port), str(delay)],
        url=f"http://127.0.0.1:{port}",
        log_path=tmp_path / "logs" / "stand-in.log",
        startup_timeout_s=timeout_s,
    )


def _running(pid: int) -> bool:
    psutil = pytest.importorskip("psutil")
    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False


def _child_pid(log: Path) -> int:
    return next(int(line.split()[1]) for line in log.read_text().splitlines() if line.startswith("child"))


def test_context_manager_waits_for_health_and_stops_the_whole_group(tmp_path: Path) -> None:
    server = _server(tmp_path, delay=0.5)
    with server:
        pgid = server.pgid
        assert pgid is not None and group_alive(pgid)
        assert server.ready_s >= 0.5
        child = _child_pid(server.log_path)
        assert os.getpgid(child) == pgid, "the child is in the server's group"
        assert os.getsid(pgid) == os.getsid(0), "same session as the client (never setsid)"
    assert not group_alive(pgid)
    assert not _running(child)


def test_process_that_dies_fails_early_with_the_log_reason(tmp_path: Path) -> None:
    server = _server(tmp_path, delay=-1)
    with pytest.raises(ServerFailed) as info, server:
        pass
    assert "exited with code 3" in info.value.reason
    assert "max_num_batched_tokens (16) is smaller" in info.value.reason
    assert server.pgid is None, "stopped"


def test_start_timeout_stops_the_group(tmp_path: Path) -> None:
    server = _server(tmp_path, delay=60, timeout_s=1.0)
    with pytest.raises(ServerFailed, match="start timeout"), server:
        pass
    assert server.pgid is None


def test_stop_on_error_inside_the_block(tmp_path: Path) -> None:
    server = _server(tmp_path, delay=0)
    with pytest.raises(KeyboardInterrupt), server:
        pgid = server.pgid
        raise KeyboardInterrupt  # Ctrl-C while measuring
    assert pgid is not None and not group_alive(pgid)


def test_free_ports_are_distinct_and_bindable() -> None:
    ports = free_ports(8)
    assert len(set(ports)) == 8
    for port in ports:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))


def test_free_port_block_is_consecutive_and_avoids() -> None:
    avoid = free_ports(4)
    base = free_port_block(3, avoid=avoid)
    assert not set(range(base, base + 3)) & set(avoid)
    for port in range(base, base + 3):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))


@pytest.mark.parametrize(
    ("tail", "expected"),
    [
        (
            "INFO start\nValueError: max_num_batched_tokens (64) is smaller than max_model_len (256).",
            "ValueError: max_num_batched_tokens (64) is smaller than max_model_len (256).",
        ),
        (
            "x\ntorch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB\n"
            "RuntimeError: Engine died",
            "out of memory: OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB",
        ),
        (
            "usage: vllm serve\nvllm serve: error: unrecognized arguments: --bogus",
            "invalid flag: unrecognized arguments: --bogus",
        ),
        (
            "pydantic_core._pydantic_core.ValidationError: 1 validation error for SchedulerConfig\n"
            "  Value error, max_num_batched_tokens (128) must be >= max_num_seqs (256). [type=value_error]\n"
            "    For further information visit https://errors.pydantic.dev/2.13/v/value_error",
            "ValidationError: 1 validation error for SchedulerConfig: "
            "max_num_batched_tokens (128) must be >= max_num_seqs (256).",
        ),
        ("", "no output"),
        ("just a line", "just a line"),
    ],
)
def test_failure_reason(tail: str, expected: str) -> None:
    assert failure_reason(tail) == expected


OWNER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from backends.live.server import ServerProcess
    srv = ServerProcess("stand-in", sys.argv[2:], url="http://127.0.0.1:1", log_path=Path(sys.argv[1]))
    srv.start()
    print(srv.pgid, flush=True)
    time.sleep(600)
    """
)


def test_a_server_group_dies_with_its_owner_killed_by_sigkill(tmp_path: Path) -> None:
    """The owner (the tuner) is SIGKILLed: its lifeline ends the server's whole group."""
    import signal
    import subprocess
    import time

    script = tmp_path / "stand_in.py"
    script.write_text(STAND_IN)
    log = tmp_path / "stand-in.log"
    port = free_ports(1)[0]
    owner = subprocess.Popen(
        [sys.executable, "-c", OWNER, str(log), sys.executable, str(script), str(port), "0"],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert owner.stdout is not None
    with owner.stdout:
        pgid = int(owner.stdout.readline())
    deadline = time.monotonic() + 20
    while "child" not in (log.read_text() if log.exists() else "") and time.monotonic() < deadline:
        time.sleep(0.05)
    child = _child_pid(log)
    assert _running(pgid) and _running(child)
    owner.send_signal(signal.SIGKILL)
    owner.wait()
    deadline = time.monotonic() + 10
    while group_alive(pgid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not group_alive(pgid), "the server group outlived its owner"
    assert not _running(child)


def test_a_stopped_server_releases_its_lifeline(tmp_path: Path) -> None:
    """A normal stop leaves no watchdog behind."""
    srv = _server(tmp_path, 0.0)
    with srv:
        watchdog = srv._lifeline.watchdog_pid if srv._lifeline else -1
        assert _running(watchdog)
    assert not _running(watchdog)
