"""The launch plan's types and the vLLM flag table.

A :class:`LaunchPlan` is frozen data: every worker process (:class:`WorkerLaunch`) with its
node, GPUs, port, argv and environment, and the disagg :class:`RouterLaunch`. Flag names come
from ``serving/data/vllm_flags.yaml`` through :func:`flag`; :mod:`serving.launch` builds plans.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any, Literal

import yaml

__all__ = [
    "LaunchPlan",
    "RouterLaunch",
    "WorkerLaunch",
    "balancer_argv",
    "flag",
    "replace_flag_value",
    "router_argv",
    "vllm_flags",
    "with_engine_extras",
]


@cache
def vllm_flags() -> dict[str, Any]:
    """The flag table (``serving/data/vllm_flags.yaml``), parsed once."""
    text = resources.files("serving").joinpath("data", "vllm_flags.yaml").read_text()
    table: dict[str, Any] = yaml.safe_load(text)
    return table


def flag(section: str, name: str) -> str:
    """One flag name from the table, e.g. ``flag("parallel", "tp")``."""
    value = vllm_flags()[section][name]
    if not isinstance(value, str):
        raise TypeError(f"vllm_flags.yaml: {section}.{name} is not a single flag")
    return value


@dataclass(frozen=True)
class WorkerLaunch:
    """One process of one worker on one node.

    ``rank`` is the node rank inside a worker that spans ``nodes`` nodes (0 = leader, the only
    one serving HTTP; ``port`` is ``None`` on the others). ``gpu_ids`` are device indices on
    ``node`` (CPU cores under ``devices="cpu"``). ``prelude`` holds commands to run to
    completion before ``argv`` (the Ray head on a Ray leader). ``parallel_args`` and
    ``engine_args`` are the node-independent parts of ``argv`` for renderers whose platform
    adds the model, port and multi-node flags itself (Dynamo, llm-d).
    """

    role: str
    worker: int
    node: int
    rank: int
    nodes: int
    host: str
    gpu_ids: tuple[int, ...]
    port: int | None
    argv: tuple[str, ...]
    env: tuple[tuple[str, str], ...]
    parallel_args: tuple[str, ...]
    engine_args: tuple[str, ...]
    multinode: Literal["none", "dp", "ray"] = "none"
    prelude: tuple[tuple[str, ...], ...] = ()

    @property
    def gpus(self) -> int:
        return len(self.gpu_ids)

    @property
    def is_leader(self) -> bool:
        return self.rank == 0

    @property
    def url(self) -> str:
        """HTTP base URL of a leader."""
        if self.port is None:
            raise ValueError(f"{self.role} worker {self.worker} rank {self.rank} serves no HTTP")
        return f"http://{self.host}:{self.port}"

    def env_dict(self) -> dict[str, str]:
        return dict(self.env)


def with_engine_extras(
    plan: LaunchPlan,
    *,
    extra_args: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    command: Sequence[str] | None = None,
) -> LaunchPlan:
    """``plan`` with a backend's own settings on every worker process: ``extra_args`` after
    its argv, ``env`` over its environment (these win), and ``command`` in place of the
    table's ``vllm serve``. Pure; the exports of a run then start what was measured."""
    n = len(vllm_flags()["command"])
    workers = []
    for w in plan.workers:
        argv = (*(command or w.argv[:n]), *w.argv[n:], *extra_args)
        merged = {**w.env_dict(), **dict(env or {})}
        workers.append(dataclasses.replace(w, argv=argv, env=tuple(sorted(merged.items()))))
    return dataclasses.replace(plan, workers=tuple(workers))


@dataclass(frozen=True)
class RouterLaunch:
    """``tuner router`` in front of the workers: for disagg it sends each request to a prefill
    leader then a decode leader; for several agg replicas (``worker_urls``) it balances
    round-robin, so clients have one endpoint."""

    host: str
    port: int
    prefill_urls: tuple[str, ...]
    decode_urls: tuple[str, ...]
    argv: tuple[str, ...]
    worker_urls: tuple[str, ...] = ()

    @property
    def balances(self) -> bool:
        """True for the agg replicas' balancer, False for the disagg router."""
        return bool(self.worker_urls)


@dataclass(frozen=True)
class LaunchPlan:
    """Everything needed to start a deployment. ``notes`` says what the plan needs beyond the
    commands themselves (a Ray cluster, reachable node names)."""

    label: str
    mode: str
    model: str
    served_model_name: str
    devices: str
    gpus_per_node: int
    nodes: tuple[str, ...]
    workers: tuple[WorkerLaunch, ...]
    router: RouterLaunch | None
    notes: tuple[str, ...] = ()

    def gpus(self) -> int:
        """GPUs the plan occupies: equals ``Deployment.gpus()``."""
        return sum(w.gpus for w in self.workers)

    def on_node(self, node: int) -> tuple[WorkerLaunch, ...]:
        return tuple(w for w in self.workers if w.node == node)

    def roles(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(w.role for w in self.workers))

    def leaders(self, role: str) -> tuple[WorkerLaunch, ...]:
        return tuple(w for w in self.workers if w.role == role and w.is_leader)

    def ranks(self, role: str, worker: int) -> tuple[WorkerLaunch, ...]:
        """All node processes of one worker, leader first."""
        return tuple(w for w in self.workers if w.role == role and w.worker == worker)

    @property
    def url(self) -> str:
        """The front door: the router (disagg) or balancer (agg replicas), else the worker."""
        if self.router is not None:
            return f"http://{self.router.host}:{self.router.port}"
        return self.workers[0].url


def replace_flag_value(argv: Sequence[str], name: str, value: str) -> tuple[str, ...]:
    """``argv`` with the value after flag ``name`` replaced (a renderer's per-platform
    adjustment, e.g. the container port); raises if the flag is absent."""
    items = list(argv)
    try:
        at = items.index(name)
    except ValueError:
        raise ValueError(f"{name} not in argv") from None
    items[at + 1] = value
    return tuple(items)


def balancer_argv(*, host: str, port: int, workers: Sequence[str]) -> tuple[str, ...]:
    """``tuner router --host H --port P --workers URL...``: round-robin over agg replicas."""
    table = vllm_flags()["router"]
    return (*table["command"], table["host"], host, table["port"], str(port), table["workers"], *workers)


def router_argv(*, host: str, port: int, prefill: Sequence[str], decode: Sequence[str]) -> tuple[str, ...]:
    """``tuner router --host H --port P --prefill URL... --decode URL...``. The bind address
    is always explicit: the router's own default is loopback."""
    table = vllm_flags()["router"]
    return (
        *table["command"],
        table["host"],
        host,
        table["port"],
        str(port),
        table["prefill"],
        *prefill,
        table["decode"],
        *decode,
    )
