"""Kubernetes manifests that run N tuning workers as a Job against a PostgreSQL Service.

Not a pick exporter: this deploys the *search* itself. Each Job pod runs
``tuner worker --storage URL --study NAME`` on its own GPUs; the storage URL (it holds a
password) comes from a Secret, never inline. With ``postgres=True`` a single-replica
PostgreSQL StatefulSet and its Service are rendered too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ._k8s import dump_yaml

__all__ = ["WorkerJob", "render_worker_job"]

#: PostgreSQL image for the bundled database (official image, major version pinned).
POSTGRES_IMAGE = "postgres:16"


@dataclass(frozen=True)
class WorkerJob:
    """What the manifests need. ``storage_secret`` holds the storage URL under key ``url``;
    ``postgres_secret`` holds the database password under key ``password``."""

    study: str
    workers: int = 4
    gpus_per_worker: int = 8
    image: str = "llm-serving-tuner:0.1.0"
    namespace: str = "default"
    storage_secret: str = "tuner-storage"
    postgres: bool = True
    postgres_secret: str = "tuner-postgres"
    postgres_storage: str = "10Gi"
    gpu_product: str | None = None

    @property
    def name(self) -> str:
        return "tuner-workers-" + "".join(c if c.isalnum() else "-" for c in self.study.lower()).strip("-")


def _meta(job: WorkerJob, name: str, component: str) -> dict[str, Any]:
    labels = {"app.kubernetes.io/name": "llm-serving-tuner", "app.kubernetes.io/component": component}
    return {"name": name, "namespace": job.namespace, "labels": labels}


def _postgres(job: WorkerJob) -> list[dict[str, Any]]:
    labels = {"app.kubernetes.io/name": "llm-serving-tuner", "app.kubernetes.io/component": "postgres"}
    password = {"secretKeyRef": {"name": job.postgres_secret, "key": "password"}}
    container = {
        "name": "postgres",
        "image": POSTGRES_IMAGE,
        "ports": [{"name": "postgres", "containerPort": 5432}],
        "env": [
            {"name": "POSTGRES_USER", "value": "tuner"},
            {"name": "POSTGRES_DB", "value": "tuning"},
            {"name": "POSTGRES_PASSWORD", "valueFrom": password},
            {"name": "PGDATA", "value": "/var/lib/postgresql/data/pgdata"},
        ],
        "readinessProbe": {
            "exec": {"command": ["pg_isready", "-U", "tuner", "-d", "tuning"]},
            "periodSeconds": 5,
        },
        "volumeMounts": [{"name": "data", "mountPath": "/var/lib/postgresql/data"}],
    }
    statefulset = {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": _meta(job, "tuner-postgres", "postgres"),
        "spec": {
            "serviceName": "tuner-postgres",
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": {"containers": [container]}},
            "volumeClaimTemplates": [
                {
                    "metadata": {"name": "data"},
                    "spec": {
                        "accessModes": ["ReadWriteOnce"],
                        "resources": {"requests": {"storage": job.postgres_storage}},
                    },
                }
            ],
        },
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(job, "tuner-postgres", "postgres"),
        "spec": {"selector": labels, "ports": [{"name": "postgres", "port": 5432, "targetPort": 5432}]},
    }
    return [statefulset, service]


def _job(job: WorkerJob) -> dict[str, Any]:
    storage = {"secretKeyRef": {"name": job.storage_secret, "key": "url"}}
    worker = {
        "name": "worker",
        "image": job.image,
        # $(TUNER_STORAGE) is expanded by the kubelet from the env below.
        "command": [
            "tuner",
            "worker",
            "--storage",
            "$(TUNER_STORAGE)",
            "--study",
            job.study,
            "--gpus",
            str(job.gpus_per_worker),
        ],
        "env": [{"name": "TUNER_STORAGE", "valueFrom": storage}],
        "resources": {"limits": {"nvidia.com/gpu": str(job.gpus_per_worker)}},
        "volumeMounts": [{"name": "dshm", "mountPath": "/dev/shm"}],
    }
    pod: dict[str, Any] = {
        "restartPolicy": "OnFailure",
        "containers": [worker],
        "volumes": [{"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "16Gi"}}],
    }
    if job.postgres:
        # Workers retry a briefly unreachable database, but not one still initialising.
        pod["initContainers"] = [
            {
                "name": "wait-for-postgres",
                "image": POSTGRES_IMAGE,
                "command": ["sh", "-c", "until pg_isready -h tuner-postgres -p 5432; do sleep 2; done"],
            }
        ]
    if job.gpu_product:
        pod["nodeSelector"] = {"nvidia.com/gpu.product": job.gpu_product}
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": _meta(job, job.name, "worker"),
        "spec": {
            "parallelism": job.workers,
            "completions": job.workers,
            # A pod lost with its node restarts; its running trial is failed by heartbeat
            # and retried once by another worker.
            "backoffLimit": 2 * job.workers,
            "template": {
                "metadata": {
                    "labels": {
                        "app.kubernetes.io/name": "llm-serving-tuner",
                        "app.kubernetes.io/component": "worker",
                    }
                },
                "spec": pod,
            },
        },
    }


def render_worker_job(job: WorkerJob) -> str:
    """Multi-document YAML: (PostgreSQL StatefulSet + Service) + the worker Job."""
    docs = [*(_postgres(job) if job.postgres else []), _job(job)]
    header = (
        f"# {job.workers} tuning workers x {job.gpus_per_worker} GPUs on study '{job.study}'.\n"
        f"# Needs Secret '{job.storage_secret}' (key url)"
        + (f" and Secret '{job.postgres_secret}' (key password)" if job.postgres else "")
        + ".\n"
    )
    return dump_yaml(docs, header)
