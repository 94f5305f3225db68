"""llm-d: Helm values for the ``llm-d-modelservice`` chart (checked against v0.4.12).

The chart renders one pool per role (``prefill``, ``decode``): a Deployment, or a
LeaderWorkerSet when ``multinode: true``. Its helpers (``templates/_helpers.tpl``) give each
pod ``tensor * dataLocal`` GPUs unless the container sets the limit, and with
``modelCommand: vllmServe`` add ``vllm serve MODEL --port --tensor-parallel-size
--data-parallel-size --data-parallel-size-local --served-model-name`` before our ``args``.
Decode listens on ``routing.proxy.targetPort`` behind the routing sidecar when the proxy is on
(disagg), else on ``routing.servicePort``. Aggregated picks become a decode-only pool.
"""

from __future__ import annotations

from typing import Any

from serving.launch import LaunchPlan, WorkerLaunch, flag

from . import _k8s
from .base import ExportContext

__all__ = ["CHART_VERSION", "LlmdExporter"]

CHART_VERSION = "0.4.12"
SERVICE_PORT = 8000
PROXY_PORT = 8200  # chart default routing.proxy.targetPort


class LlmdExporter:
    """``values.yaml`` for ``helm install <name> llm-d-modelservice -f values.yaml``."""

    name = "llm-d"

    def render(self, plan: LaunchPlan, context: ExportContext) -> dict[str, str]:
        disagg = plan.mode == "disagg"
        pools = {"prefill": "prefill", "decode": "decode"} if disagg else {"decode": "agg"}
        values: dict[str, Any] = {
            "multinode": any(w.nodes > 1 for w in plan.workers),
            "modelArtifacts": {"name": plan.served_model_name, "uri": f"hf://{plan.model}"},
            "accelerator": {"type": "nvidia"},
            "routing": {"servicePort": SERVICE_PORT, "proxy": {"enabled": disagg, "connector": "nixlv2"}},
        }
        for pool, role in pools.items():
            values[pool] = self._pool(plan, context, pool, role)
        if not disagg:
            values["prefill"] = {"create": False, "replicas": 0}
        header = context.header(plan) + f"# Helm values for llm-d-modelservice {CHART_VERSION}.\n"
        return {"values.yaml": _k8s.dump_yaml([values], header).replace("---\n", "", 1)}

    def _pool(self, plan: LaunchPlan, context: ExportContext, pool: str, role: str) -> dict[str, Any]:
        leaders = plan.leaders(role)
        leader = leaders[0]
        tp, dp, _pp = _sizes(leader)
        local = max(1, dp // leader.nodes)  # DP ranks per pod (1 on a Ray TP group)
        port = PROXY_PORT if (pool == "decode" and plan.mode == "disagg") else SERVICE_PORT
        container: dict[str, Any] = {"name": "vllm", "image": context.image}
        if leader.nodes == 1:
            drop = {flag("parallel", n) for n in ("tp", "dp")}
            container["modelCommand"] = "vllmServe"
            container["args"] = _without(leader.parallel_args, drop) + list(leader.engine_args)
        else:
            container["modelCommand"] = "custom"
            container["command"] = ["/bin/sh", "-c", _k8s.lws_script(plan, role, port)]
        container["env"] = _k8s.container_env(context, leader)
        container["ports"] = [{"containerPort": port, "name": "http"}]
        # Explicit limit: the chart's tensor * dataLocal misses pipeline stages.
        container["resources"] = _k8s.gpu_resources(leader.gpus)
        container["mountModelVolume"] = True
        container["volumeMounts"] = [{"name": "metrics-volume", "mountPath": "/.config"}, _k8s.shm_mount()]
        # extraConfig is merged into the container as-is (the chart's preferred spot for probes).
        container["extraConfig"] = _k8s.probes()
        return {
            "create": True,
            "replicas": len(leaders),
            "nodeSelector": context.node_selector(),
            "parallelism": {"tensor": tp, "data": dp, "dataLocal": local, "workers": leader.nodes},
            "containers": [container],
            "volumes": [{"name": "metrics-volume", "emptyDir": {}}, _k8s.shm_volume()],
        }


def _sizes(worker: WorkerLaunch) -> tuple[int, int, int]:
    """(tp, dp, pp) read back from the plan's parallel args."""
    args = worker.parallel_args
    out = []
    for name in ("tp", "dp", "pp"):
        f = flag("parallel", name)
        out.append(int(args[args.index(f) + 1]) if f in args else 1)
    return out[0], out[1], out[2]


def _without(args: tuple[str, ...], flags: set[str]) -> list[str]:
    """``args`` minus the given valued flags (the chart adds them itself)."""
    out: list[str] = []
    skip = False
    for token in args:
        if skip:
            skip = False
        elif token in flags:
            skip = True
        else:
            out.append(token)
    return out
