"""Plain Kubernetes manifests: a Deployment (single-node workers) or a LeaderWorkerSet
(workers spanning nodes, leaderworkerset.x-k8s.io/v1) plus a Service per role, and the
router Deployment + Service for disagg."""

from __future__ import annotations

from typing import Any

from serving.launch import LaunchPlan, WorkerLaunch, router_argv

from . import _k8s
from .base import ExportContext

__all__ = ["KubernetesExporter"]

#: LWS pod labels (set by the LWS controller; kubernetes-sigs/lws api/leaderworkerset/v1).
LWS_NAME_LABEL = "leaderworkerset.sigs.k8s.io/name"
LWS_INDEX_LABEL = "leaderworkerset.sigs.k8s.io/worker-index"


class KubernetesExporter:
    """``manifests.yaml``: one multi-document file, objects in apply order.

    GPU limits are what each pod really uses: a single-node worker's pod holds all its GPUs
    (a DEP8 worker is one pod with 8 GPUs, vLLM spreads the DP ranks itself); a node-spanning
    worker has one pod per node with that node's GPUs.
    """

    name = "kubernetes"

    def render(self, plan: LaunchPlan, context: ExportContext) -> dict[str, str]:
        docs: list[dict[str, Any]] = []
        for role in plan.roles():
            leader = plan.leaders(role)[0]
            count = len(plan.leaders(role))
            if leader.nodes == 1:
                docs.append(self._deployment(context, role, leader, count))
                selector = _k8s.labels(context, role)
            else:
                docs.append(self._lws(plan, context, role, leader, count))
                selector = {LWS_NAME_LABEL: _name(context, role), LWS_INDEX_LABEL: "0"}
            docs.append(_service(context, role, selector))
        if plan.router is not None:
            docs += self._router(plan, context)
        return {"manifests.yaml": _k8s.dump_yaml(docs, context.header(plan))}

    def _pod_spec(self, context: ExportContext, container: dict[str, Any]) -> dict[str, Any]:
        spec: dict[str, Any] = {"containers": [container], "volumes": [_k8s.shm_volume()]}
        if context.node_selector():
            spec["nodeSelector"] = context.node_selector()
        return spec

    def _container(
        self, context: ExportContext, worker: WorkerLaunch, command: dict[str, list[str]], *, serving: bool
    ) -> dict[str, Any]:
        container: dict[str, Any] = {
            "name": "vllm",
            "image": context.image,
            **command,
            "env": _k8s.container_env(context, worker),
            "resources": _k8s.gpu_resources(worker.gpus),
            "volumeMounts": [_k8s.shm_mount()],
        }
        if serving:
            container["ports"] = [{"name": "http", "containerPort": _k8s.CONTAINER_PORT}]
            container.update(_k8s.probes())
        return container

    def _deployment(
        self, context: ExportContext, role: str, leader: WorkerLaunch, count: int
    ) -> dict[str, Any]:
        argv = _k8s.pod_argv(leader)
        command = {"command": list(argv[:2]), "args": list(argv[2:])}
        container = self._container(context, leader, command, serving=True)
        labels = _k8s.labels(context, role)
        return {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": _name(context, role), "namespace": context.namespace, "labels": labels},
            "spec": {
                "replicas": count,
                "selector": {"matchLabels": labels},
                "template": {"metadata": {"labels": labels}, "spec": self._pod_spec(context, container)},
            },
        }

    def _lws(
        self, plan: LaunchPlan, context: ExportContext, role: str, leader: WorkerLaunch, count: int
    ) -> dict[str, Any]:
        script = _k8s.lws_script(plan, role)
        command = {"command": ["/bin/sh", "-c", script]}
        follower = plan.ranks(role, 0)[1]
        lead_c = self._container(context, leader, command, serving=True)
        work_c = self._container(context, follower, command, serving=False)
        labels = _k8s.labels(context, role)
        return {
            "apiVersion": "leaderworkerset.x-k8s.io/v1",
            "kind": "LeaderWorkerSet",
            "metadata": {"name": _name(context, role), "namespace": context.namespace, "labels": labels},
            "spec": {
                "replicas": count,
                "leaderWorkerTemplate": {
                    "size": leader.nodes,
                    # A lost rank breaks the collective group: restart the whole worker.
                    "restartPolicy": "RecreateGroupOnPodRestart",
                    "leaderTemplate": {
                        "metadata": {"labels": labels},
                        "spec": self._pod_spec(context, lead_c),
                    },
                    "workerTemplate": {
                        "metadata": {"labels": labels},
                        "spec": self._pod_spec(context, work_c),
                    },
                },
            },
        }

    def _router(self, plan: LaunchPlan, context: ExportContext) -> list[dict[str, Any]]:
        assert plan.router is not None
        port = _k8s.CONTAINER_PORT

        def url(role: str) -> str:
            return f"http://{_name(context, role)}.{context.namespace}.svc:{port}"

        argv = router_argv(port=port, prefill=[url("prefill")], decode=[url("decode")])
        labels = _k8s.labels(context, "router")
        container = {
            "name": "router",
            "image": context.router_image,
            "command": list(argv[:2]),
            "args": list(argv[2:]),
            "ports": [{"name": "http", "containerPort": port}],
            "readinessProbe": {"tcpSocket": {"port": "http"}, "periodSeconds": 5},
        }
        deployment = {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": _name(context, "router"), "namespace": context.namespace, "labels": labels},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": labels},
                "template": {"metadata": {"labels": labels}, "spec": {"containers": [container]}},
            },
        }
        return [deployment, _service(context, "router", labels)]


def _name(context: ExportContext, role: str) -> str:
    return f"{context.app}-{role}"


def _service(context: ExportContext, role: str, selector: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": _name(context, role),
            "namespace": context.namespace,
            "labels": _k8s.labels(context, role),
        },
        "spec": {
            "selector": selector,
            "ports": [{"name": "http", "port": _k8s.CONTAINER_PORT, "targetPort": "http"}],
        },
    }
