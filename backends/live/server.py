"""One server process (a vLLM worker or the disagg router) as a context manager.

The server runs in its own process group but in the *same session* as the load client: a
separate session (``setsid``) puts it in another autogroup, and on a 2-core machine Linux's
autogroup scheduling then starves the client so streamed timings become garbage (see
docs/vllm-cpu.md). The group lets us stop the API server *and* the engine and worker
processes it spawned: SIGTERM to the group, wait, SIGKILL what is left. A
:class:`~backends.live.lifeline.Lifeline` ends the group if the tuner itself dies first
(``kill -9`` included).

Start-up polls ``/health`` against a deadline and fails early, with the log's tail, when the
process dies first. Output goes to one log file per server in the caller's directory.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType

from .deps import require
from .lifeline import Lifeline

__all__ = [
    "ServerFailed",
    "ServerProcess",
    "failure_reason",
    "free_port_block",
    "free_ports",
    "group_alive",
    "log_tail",
]

log = logging.getLogger(__name__)

#: Seconds between ``/health`` polls: start-up takes 6-45 s on CPU, so 0.5 s costs nothing.
POLL_S = 0.5
#: Seconds a stopping group gets after SIGTERM before SIGKILL (vLLM's engine and workers
#: leave 1-2 s after the API server; 15 s covers a busy GPU worker freeing memory).
STOP_GRACE_S = 15.0
#: Log lines kept for a failure message.
TAIL_LINES = 40


class ServerFailed(Exception):
    """A server died, or did not become healthy by its deadline; ``reason`` is one line."""

    def __init__(self, name: str, reason: str, tail: str = "") -> None:
        self.name = name
        self.reason = reason
        self.tail = tail
        super().__init__(f"{name}: {reason}")


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """``count`` distinct ports free right now, found by binding port 0 (the kernel picks).

    All sockets stay bound until every port is chosen, so the ports differ from each other;
    they are released on return for the servers to bind a moment later. The kernel hands out
    ephemeral ports in a rotating order, so a clash in that moment would need another program
    to bind the very same port, which is why nobody retries.
    """
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind((host, 0))
            ports.append(int(sock.getsockname()[1]))
        return ports


def free_port_block(size: int, host: str = "127.0.0.1", *, avoid: Sequence[int] = ()) -> int:
    """First port of ``size`` consecutive free ports (vLLM derives some ports as base + rank,
    e.g. NIXL's side channel: ``VLLM_NIXL_SIDE_CHANNEL_PORT + dp_index``)."""
    for _ in range(64):
        base = free_ports(1, host)[0]
        block = range(base, base + size)
        if base + size > 65535 or any(p in avoid for p in block):
            continue
        if all(_bindable(p, host) for p in block):
            return base
    raise OSError(f"no block of {size} consecutive free ports on {host}")


def _bindable(port: int, host: str) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def log_tail(path: Path, lines: int = TAIL_LINES) -> str:
    """The last ``lines`` lines of a log file ('' when it does not exist)."""
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - 64 * 1024))
            text = fh.read().decode("utf-8", errors="replace")
    except FileNotFoundError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


#: Causes recognised in a log, most specific first: (pattern, reason prefix).
_CAUSES = (
    (re.compile(r"out of memory|OutOfMemoryError|Cannot allocate memory|MemoryError", re.I), "out of memory"),
    (re.compile(r"Address already in use", re.I), "port in use"),
)
_ERROR_LINE = re.compile(r"\b([A-Z]\w*(?:Error|Exception)): (.+)")
_ARGS_ERROR = re.compile(r"error: (argument .+|unrecognized arguments: .+)")


def failure_reason(tail: str) -> str:
    """A short cause taken from a log tail: the last ``SomeError: message`` line (the root
    cause is logged last by vLLM's engine), a recognised cause, or the last line."""
    lines = [line.strip() for line in tail.splitlines() if line.strip()]
    for line in reversed(lines):
        if m := _ARGS_ERROR.search(line):
            return f"invalid flag: {m.group(1)}"[:300]
    for pattern, prefix in _CAUSES:
        hit = next((line for line in reversed(lines) if pattern.search(line)), None)
        if hit is not None:
            m = _ERROR_LINE.search(hit)
            return f"{prefix}: {m.group(0) if m else hit}"[:300]
    for at in range(len(lines) - 1, -1, -1):
        if m := _ERROR_LINE.search(lines[at]):
            detail = _validation_detail(lines[at + 1 :]) if m.group(1) == "ValidationError" else ""
            return (f"{m.group(0)}: {detail}" if detail else m.group(0))[:300]
    return lines[-1][:300] if lines else "no output"


def _validation_detail(after: Sequence[str]) -> str:
    """pydantic puts the message on the line after ``ValidationError: 1 validation error for X``:
    ``Value error, max_num_batched_tokens (128) must be ... [type=value_error, ...]``."""
    for line in after[:3]:
        if line.startswith("Value error, "):
            return line.removeprefix("Value error, ").split(" [type=")[0]
        if line and not line.startswith("For further information"):
            return line.split(" [type=")[0]
    return ""


def group_alive(pgid: int) -> bool:
    """Whether any non-zombie process is left in process group ``pgid``."""
    psutil = require("psutil")
    for proc in psutil.process_iter(["status"]):
        try:
            if os.getpgid(proc.pid) == pgid and proc.info["status"] != psutil.STATUS_ZOMBIE:
                return True
        except (ProcessLookupError, PermissionError, psutil.Error):
            continue
    return False


class ServerProcess:
    """A server process group: ``with ServerProcess(...) as srv:`` starts it and waits for
    ``/health``; leaving the block (normally, on an error or on Ctrl-C) stops the group.

    ``start``/``wait_ready``/``terminate``/``wait_stopped`` are public so a launcher can start
    several servers at once and stop them all in parallel.
    """

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        url: str,
        log_path: Path,
        env: Mapping[str, str] | None = None,
        startup_timeout_s: float = 300.0,
    ) -> None:
        self.name = name
        self.argv = tuple(argv)
        self.url = url.rstrip("/")
        self.log_path = log_path
        self.env = dict(env or {})
        self.startup_timeout_s = startup_timeout_s
        self._proc: subprocess.Popen[bytes] | None = None
        self._lifeline: Lifeline | None = None
        self.pgid: int | None = None
        self.started_at = 0.0
        self.ready_s = float("nan")

    # -- context manager --------------------------------------------------------------
    def __enter__(self) -> ServerProcess:
        self.start()
        try:
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- lifecycle --------------------------------------------------------------------
    def start(self) -> None:
        """Spawn the process in a new process group of this session, output to the log."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **self.env}
        self._lifeline = Lifeline()
        with self.log_path.open("ab") as logf:
            logf.write(f"$ {' '.join(self.argv)}\n".encode())
            logf.flush()
            try:
                self._proc = subprocess.Popen(  # own group, same session: never setsid
                    self.argv,
                    stdin=subprocess.DEVNULL,
                    stdout=logf,
                    stderr=subprocess.STDOUT,
                    env=env,
                    process_group=0,
                )
            except BaseException:
                self._lifeline.release()
                self._lifeline = None
                raise
        self.pgid = self._proc.pid
        self._lifeline.attach(self.pgid)
        self.started_at = time.monotonic()
        log.info("%s: started pid %d, log %s", self.name, self._proc.pid, self.log_path)

    def poll_ready(self) -> bool:
        """One check: True once ``/health`` answers 200; raises ServerFailed if it died or the
        start-up deadline passed."""
        httpx = require("httpx")
        self.check_alive()
        try:
            if httpx.get(f"{self.url}/health", timeout=2.0).status_code == 200:
                self.ready_s = time.monotonic() - self.started_at
                log.info("%s: healthy after %.1f s", self.name, self.ready_s)
                return True
        except httpx.TransportError:
            pass
        if time.monotonic() - self.started_at > self.startup_timeout_s:
            tail = log_tail(self.log_path)
            raise ServerFailed(
                self.name, f"start timeout: not healthy after {self.startup_timeout_s:.0f} s", tail
            )
        return False

    def wait_ready(self) -> None:
        """Poll ``/health`` until 200, the process dies, or the start-up deadline passes."""
        while not self.poll_ready():
            time.sleep(POLL_S)

    def check_alive(self) -> None:
        """Raise ServerFailed with the log's cause if the process has exited."""
        if self._proc is None:
            raise ServerFailed(self.name, "not started")
        code = self._proc.poll()
        if code is not None:
            tail = log_tail(self.log_path)
            raise ServerFailed(self.name, f"exited with code {code}: {failure_reason(tail)}", tail)

    def terminate(self) -> None:
        """Send SIGTERM to the whole group (no wait)."""
        if self.pgid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pgid, signal.SIGTERM)

    def wait_stopped(self, grace_s: float = STOP_GRACE_S) -> None:
        """Wait for the group to leave; SIGKILL it after ``grace_s``. Reaps the leader."""
        if self.pgid is None or self._proc is None:
            return
        deadline = time.monotonic() + grace_s
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._proc.wait(timeout=grace_s)
        while group_alive(self.pgid) and time.monotonic() < deadline:
            time.sleep(0.2)
        if group_alive(self.pgid):
            log.warning("%s: group %d still alive after %.0f s; SIGKILL", self.name, self.pgid, grace_s)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pgid, signal.SIGKILL)
            self._proc.wait()
            while group_alive(self.pgid):
                time.sleep(0.1)
        log.info("%s: stopped", self.name)
        self.pgid = None
        if self._lifeline is not None:
            self._lifeline.release()
            self._lifeline = None

    def stop(self) -> None:
        """Stop the whole group: SIGTERM, wait, SIGKILL."""
        self.terminate()
        self.wait_stopped()
