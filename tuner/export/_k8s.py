"""Pieces the Kubernetes-shaped renderers share: YAML dumping, pod fragments, the
multi-node (LeaderWorkerSet) shell command. Private to ``tuner.export``."""

from __future__ import annotations

import dataclasses
import shlex
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from serving.launch import LaunchPlan, WorkerLaunch, flag, replace_flag_value, vllm_flags

from .base import ExportContext

#: Port every vLLM container listens on inside its pod (pods have their own network).
CONTAINER_PORT = 8000
#: vLLM's health endpoint: 200 once the engine is up (vLLM sweep/server.py polls it too).
HEALTH_PATH = "/health"
#: /dev/shm size for NCCL and vLLM's shared-memory broadcast between ranks.
SHM_SIZE = "16Gi"
#: Startup allowance: 60 x 20 s = 20 minutes for weight download and load of a large model.
STARTUP_PERIOD_S, STARTUP_FAILURES = 20, 60
#: LWS-injected environment (kubernetes-sigs/lws docs: LWS_LEADER_ADDRESS, LWS_WORKER_INDEX).
LWS_LEADER = "$LWS_LEADER_ADDRESS"
LWS_INDEX = "$LWS_WORKER_INDEX"


class _Dumper(yaml.SafeDumper):
    """Safe dumper that indents lists under their key (kubectl's own style)."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)

    def ignore_aliases(self, data: Any) -> bool:
        return True  # no &id001 anchors: every manifest reads on its own


def dump_yaml(docs: Iterable[Mapping[str, Any]], header: str) -> str:
    """Multi-document YAML with ``header`` on top; key order as built (deterministic)."""
    parts = [
        yaml.dump(dict(doc), Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=4096)
        for doc in docs
    ]
    return header + "---\n" + "---\n".join(parts)


def hf_token_env(ctx: ExportContext) -> dict[str, Any]:
    """HF_TOKEN from the Secret; the token itself never enters a manifest."""
    return {
        "name": "HF_TOKEN",
        "valueFrom": {"secretKeyRef": {"name": ctx.hf_secret_name, "key": ctx.hf_secret_key}},
    }


def container_env(ctx: ExportContext, worker: WorkerLaunch) -> list[dict[str, Any]]:
    """The plan's env for a pod: the device plugin picks GPUs (no CUDA_VISIBLE_DEVICES) and
    the NIXL side channel advertises the pod IP, not a node name."""
    names = vllm_flags()["env"]
    env: list[dict[str, Any]] = [hf_token_env(ctx)]
    for key, value in worker.env:
        if key == names["visible_devices"]:
            continue
        if key == names["nixl_host"]:
            env.append({"name": key, "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}})
        else:
            env.append({"name": key, "value": value})
    return sorted(env, key=lambda e: str(e["name"]))


def gpu_resources(gpus: int) -> dict[str, Any]:
    count = str(gpus)
    return {"limits": {"nvidia.com/gpu": count}, "requests": {"nvidia.com/gpu": count}}


#: Where pods keep the model: the Hugging Face cache (HF_HOME) for a hub id, or a mounted
#: folder for a model the run loaded from a local path.
MODEL_CACHE_PATH = "/models/hf-cache"
LOCAL_MODELS_PATH = "/models/local"


def is_local_model(plan: LaunchPlan, ctx: ExportContext) -> bool:
    """True when the plan loads a local folder rather than a Hugging Face hub id: the
    architecture's own hub id, or ``org/name`` that is not a path on this machine, is a hub id."""
    model = plan.model
    if model == ctx.problem.arch.hf_id:
        return False
    if model.startswith(("/", ".", "~")) or Path(model).exists():
        return True
    return model.count("/") != 1


def pod_model(plan: LaunchPlan, ctx: ExportContext) -> str:
    """The model argument inside a pod: the hub id, or the local folder under the mount."""
    if is_local_model(plan, ctx):
        return f"{LOCAL_MODELS_PATH}/{PurePosixPath(plan.model).name}"
    return plan.model


def model_volume(plan: LaunchPlan, ctx: ExportContext) -> dict[str, Any]:
    """A local model comes from a PersistentVolumeClaim the user fills (``<app>-models``);
    a hub model is downloaded into a cache volume (emptyDir: per pod; swap in a claim to
    share the download between restarts)."""
    if is_local_model(plan, ctx):
        return {
            "name": "models",
            "persistentVolumeClaim": {"claimName": f"{ctx.app}-models", "readOnly": True},
        }
    return {"name": "models", "emptyDir": {}}


def model_mount(plan: LaunchPlan, ctx: ExportContext) -> dict[str, Any]:
    if is_local_model(plan, ctx):
        return {"name": "models", "mountPath": LOCAL_MODELS_PATH, "readOnly": True}
    return {"name": "models", "mountPath": MODEL_CACHE_PATH}


def model_env(plan: LaunchPlan, ctx: ExportContext) -> list[dict[str, Any]]:
    """HF_HOME on the cache volume for a hub model; nothing for a local one."""
    return [] if is_local_model(plan, ctx) else [{"name": "HF_HOME", "value": MODEL_CACHE_PATH}]


def pod_plan(plan: LaunchPlan, ctx: ExportContext) -> LaunchPlan:
    """``plan`` with every worker's model argument as the pod sees it (``plan.model`` kept)."""
    target = pod_model(plan, ctx)
    workers = tuple(
        dataclasses.replace(w, argv=tuple(target if t == plan.model else t for t in w.argv))
        for w in plan.workers
    )
    return dataclasses.replace(plan, workers=workers)


def shm_volume() -> dict[str, Any]:
    return {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": SHM_SIZE}}


def shm_mount() -> dict[str, Any]:
    return {"name": "dshm", "mountPath": "/dev/shm"}


def probes(port_name: str = "http") -> dict[str, Any]:
    """Startup, readiness and liveness probes on vLLM's /health."""
    get = {"path": HEALTH_PATH, "port": port_name}
    return {
        "startupProbe": {
            "httpGet": get,
            "periodSeconds": STARTUP_PERIOD_S,
            "failureThreshold": STARTUP_FAILURES,
        },
        "readinessProbe": {"httpGet": get, "periodSeconds": 10, "failureThreshold": 3},
        "livenessProbe": {"httpGet": get, "periodSeconds": 30, "failureThreshold": 5},
    }


def pod_argv(worker: WorkerLaunch, port: int = CONTAINER_PORT) -> tuple[str, ...]:
    """A leader's argv with the in-pod port."""
    return replace_flag_value(worker.argv, flag("serve", "port"), str(port)) if worker.port else worker.argv


def lws_script(plan: LaunchPlan, role: str, port: int = CONTAINER_PORT) -> str:
    """One ``sh -c`` script for every pod of a node-spanning worker in a LeaderWorkerSet.

    LWS gives each pod LWS_WORKER_INDEX (0 = leader) and LWS_LEADER_ADDRESS; the script picks
    the leader's or a follower's command from the plan and substitutes those for the planned
    node names (and, in data-parallel mode, computes the follower's first DP rank).
    """
    ranks = plan.ranks(role, 0)
    leader, follower = ranks[0], ranks[1]
    mn, ray = vllm_flags()["multinode_dp"], vllm_flags()["ray"]
    raw: dict[str, str] = {mn["dp_address"]: f'"{LWS_LEADER}"'}
    if leader.multinode == "dp":
        local = int(follower.argv[follower.argv.index(mn["dp_start_rank"]) + 1])
        follow_raw = {**raw, mn["dp_start_rank"]: f'"$(({LWS_INDEX} * {local}))"'}
    else:
        ray_port = str(vllm_flags()["ports"]["ray"])
        follow_raw = {ray["address"]: f'"{LWS_LEADER}:{ray_port}"'}
    lines = ["set -e", 'if [ "${LWS_WORKER_INDEX:-0}" = "0" ]; then']
    lines += [f"  {_sh(cmd, {})}" for cmd in leader.prelude]
    lines += [
        f"  exec {_sh(pod_argv(leader, port), raw)}",
        "else",
        f"  exec {_sh(follower.argv, follow_raw)}",
        "fi",
    ]
    return "\n".join(lines) + "\n"


def _sh(argv: Sequence[str], raw: Mapping[str, str]) -> str:
    """Shell-quote ``argv``, but write the value after each flag in ``raw`` unquoted."""
    out: list[str] = []
    skip = False
    for i, token in enumerate(argv):
        if skip:
            skip = False
            continue
        out.append(shlex.quote(token))
        if token in raw and i + 1 < len(argv):
            out.append(raw[token])
            skip = True
    return " ".join(out)


def labels(ctx: ExportContext, role: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": ctx.app, "app.kubernetes.io/component": role}
