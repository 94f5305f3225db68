"""NVIDIA Dynamo: one ``DynamoGraphDeployment`` (nvidia.com/v1beta1).

API version: the Dynamo docs ("Deploy with DGD", docs.nvidia.com/dynamo v1.5-v1.7 and dev)
author DGDs in ``nvidia.com/v1beta1`` -- ``spec.components`` is a list, each component has a
standard ``podTemplate``; v1alpha1 (``spec.services`` + ``extraPodSpec``) is still served and
converted but deprecated. Component shape follows ai-dynamo/dynamo
``examples/backends/vllm/deploy/disagg.yaml`` and ``disagg-multinode.yaml``: workers run
``python3 -m dynamo.vllm`` with vLLM engine args, ``--disaggregation-mode prefill|decode``,
``type: prefill|decode``; a node-spanning worker sets ``multinode.nodeCount`` and its GPU
limit is per node (the operator adds the multi-node launch flags itself).
"""

from __future__ import annotations

from typing import Any

from serving.launch import LaunchPlan, WorkerLaunch, flag

from . import _k8s
from .base import ExportContext

__all__ = ["DynamoExporter"]

API_VERSION = "nvidia.com/v1beta1"
#: Component names and types per role (Dynamo's vLLM examples).
COMPONENTS = {
    "agg": ("VllmWorker", "worker"),
    "prefill": ("VllmPrefillWorker", "prefill"),
    "decode": ("VllmDecodeWorker", "decode"),
}


class DynamoExporter:
    """``dynamographdeployment.yaml``: Frontend plus one worker component per role."""

    name = "dynamo"

    def render(self, plan: LaunchPlan, context: ExportContext) -> dict[str, str]:
        components = [self._frontend(context)]
        for role in plan.roles():
            leaders = plan.leaders(role)
            components.append(self._worker(plan, context, role, leaders[0], len(leaders)))
        doc = {
            "apiVersion": API_VERSION,
            "kind": "DynamoGraphDeployment",
            "metadata": {"name": context.app, "namespace": context.namespace},
            "spec": {"backendFramework": "vllm", "components": components},
        }
        return {"dynamographdeployment.yaml": _k8s.dump_yaml([doc], context.header(plan))}

    def _frontend(self, context: ExportContext) -> dict[str, Any]:
        container = {
            "name": "main",
            "image": context.dynamo_image,
            "command": ["python3", "-m", "dynamo.frontend"],
            "args": ["--http-port", str(_k8s.CONTAINER_PORT)],
        }
        return {
            "name": "Frontend",
            "type": "frontend",
            "replicas": 1,
            "podTemplate": {"spec": {"containers": [container]}},
        }

    def _worker(
        self, plan: LaunchPlan, context: ExportContext, role: str, leader: WorkerLaunch, count: int
    ) -> dict[str, Any]:
        name, kind = COMPONENTS[role]
        args = ["--model", plan.model, flag("serve", "served_model_name"), plan.served_model_name]
        args += [*leader.parallel_args, *leader.engine_args]
        if role != "agg":
            args += ["--disaggregation-mode", role]
        env = [_k8s.hf_token_env(context)]
        container = {
            "name": "main",
            "image": context.dynamo_image,
            "command": ["python3", "-m", "dynamo.vllm"],
            "args": args,
            "env": env,
            "resources": _k8s.gpu_resources(leader.gpus),
        }
        spec: dict[str, Any] = {"containers": [container]}
        if context.node_selector():
            spec["nodeSelector"] = context.node_selector()
        component: dict[str, Any] = {"name": name, "type": kind, "replicas": count}
        if leader.nodes > 1:
            component["multinode"] = {"nodeCount": leader.nodes}
        component["sharedMemorySize"] = _k8s.SHM_SIZE
        component["podTemplate"] = {"spec": spec}
        return component
