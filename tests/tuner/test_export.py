"""Exports: every format adds up to the deployment's GPUs, validates against the published
schemas, keeps the HF token out, and matches its golden file.

Golden files live in tests/tuner/golden/<format>/; regenerate them after an intended change
with ``UPDATE_GOLDEN=1 pytest tests/tuner/test_export.py`` and review the diff.
Schemas come from shared/schemas (found by walking up from this file, or $TUNER_SHARED_DIR).
"""

from __future__ import annotations

import copy
import json
import os
import re
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from serving import ConfigError
from tests.serving.test_launch import TOPOLOGIES
from tuner.export import ExportContext, exporter_names, get_exporter, render_exports, write_exports

FORMATS = ("vllm", "kubernetes", "dynamo", "llm-d")
K8S_VERSIONS = ("1.29.0", "1.37.0")
GOLDEN = Path(__file__).parent / "golden"
GOLDEN_TOPOLOGY = "1xDEP4+1xDEP8"
TOKEN = "hf_SENTINEL_do_not_leak_0123456789"


@cache
def schema_dir() -> Path | None:
    env = os.environ.get("TUNER_SHARED_DIR")
    if env and (Path(env) / "schemas").is_dir():
        return Path(env) / "schemas"
    for parent in Path(__file__).resolve().parents:
        if (parent / "shared" / "schemas").is_dir():
            return parent / "shared" / "schemas"
    return None


def load_schema(name: str) -> Any:
    folder = schema_dir()
    if folder is None:
        pytest.skip("shared/schemas not found above tests/ and TUNER_SHARED_DIR unset")
    return json.loads((folder / name).read_text())


def closed(schema: Any) -> Any:
    """The API server prunes fields a structural CRD schema does not declare: close every
    object that lists properties, so a misspelled field fails here instead of vanishing."""
    if isinstance(schema, dict):
        out = {k: closed(v) for k, v in schema.items()}
        if (
            "properties" in out
            and "additionalProperties" not in out
            and not out.get("x-kubernetes-preserve-unknown-fields")
        ):
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [closed(v) for v in schema]
    return schema


@cache
def crd_validator(name: str) -> jsonschema.Draft7Validator:
    return jsonschema.Draft7Validator(closed(load_schema(name)))


def rendered(label: str, fmt: str) -> dict[str, str]:
    deployment, prob = TOPOLOGIES[label]
    return render_exports(deployment, prob, formats=(fmt,))[fmt]


def docs_of(files: dict[str, str]) -> list[dict[str, Any]]:
    return [
        d for path, text in files.items() if path.endswith(".yaml") for d in yaml.safe_load_all(text) if d
    ]


def validate_pod(template: dict[str, Any]) -> None:
    """An embedded pod template, validated strictly as a core Pod."""
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": template.get("metadata", {"name": "x"}),
        "spec": template["spec"],
    }
    pod["metadata"] = {"name": "x", **pod["metadata"]}
    for version in K8S_VERSIONS:
        kubernetes_validate.validate(pod, version, strict=True)


def gpus(container: dict[str, Any]) -> int:
    return int(container.get("resources", {}).get("limits", {}).get("nvidia.com/gpu", 0))


def pod_gpus(spec: dict[str, Any]) -> int:
    return sum(gpus(c) for c in spec["containers"])


# -- GPU accounting, every topology x format --------------------------------------------


def k8s_gpus(docs: list[dict[str, Any]]) -> int:
    total = 0
    for doc in docs:
        if doc["kind"] == "Deployment":
            total += doc["spec"]["replicas"] * pod_gpus(doc["spec"]["template"]["spec"])
        elif doc["kind"] == "LeaderWorkerSet":
            lwt = doc["spec"]["leaderWorkerTemplate"]
            group = pod_gpus(lwt["leaderTemplate"]["spec"]) + (lwt["size"] - 1) * pod_gpus(
                lwt["workerTemplate"]["spec"]
            )
            total += doc["spec"]["replicas"] * group
    return total


def dynamo_gpus(docs: list[dict[str, Any]]) -> int:
    total = 0
    for comp in docs[0]["spec"]["components"]:
        nodes = comp.get("multinode", {}).get("nodeCount", 1)
        total += comp.get("replicas", 1) * nodes * pod_gpus(comp["podTemplate"]["spec"])
    return total


def llmd_chart_gpus(values: dict[str, Any]) -> int:
    """GPUs the chart renders (templates/_helpers.tpl): per pod the container's explicit
    nvidia.com/gpu limit, else tensor * dataLocal; pods per replica = parallelism.workers
    when multinode (LeaderWorkerSet size), else 1."""
    total = 0
    for pool in ("prefill", "decode"):
        spec = values[pool]
        if not spec.get("create", True):
            continue
        par = spec["parallelism"]
        auto = int(par.get("tensor", 1)) * int(par.get("dataLocal", 1))
        per_pod = sum(gpus(c) or auto for c in spec["containers"])
        if per_pod != auto:
            # Only a Ray TP group over nodes may differ (the chart's tensor*dataLocal counts
            # the whole group per pod); anything else means our parallelism block is wrong.
            assert values["multinode"] and par["tensor"] == per_pod * par["workers"], (pool, par, per_pod)
        pods = int(par.get("workers", 1)) if values["multinode"] else 1
        total += spec["replicas"] * pods * per_pod
    return total


@pytest.mark.parametrize("label", list(TOPOLOGIES))
def test_every_format_adds_up_to_deployment_gpus(label: str) -> None:
    deployment, prob = TOPOLOGIES[label]
    expected = deployment.gpus()
    out = render_exports(deployment, prob, formats=FORMATS)
    scripts = "".join(v for k, v in out["vllm"].items() if k.startswith("node-"))
    visible = re.findall(r"CUDA_VISIBLE_DEVICES=([0-9,]+)", scripts)
    assert sum(len(ids.split(",")) for ids in visible) == expected
    assert k8s_gpus(docs_of(out["kubernetes"])) == expected
    assert dynamo_gpus(docs_of(out["dynamo"])) == expected
    assert llmd_chart_gpus(docs_of(out["llm-d"])[0]) == expected
    header = f"# {label}: {expected} GPUs"
    for fmt in FORMATS:
        for path, text in out[fmt].items():
            if not path.endswith(".md"):
                assert any(line.startswith(header) for line in text.splitlines()[:2]), (fmt, path)


# -- schemas ---------------------------------------------------------------------------


@pytest.mark.parametrize("label", list(TOPOLOGIES))
def test_kubernetes_manifests_validate(label: str) -> None:
    docs = docs_of(rendered(label, "kubernetes"))
    kinds = [d["kind"] for d in docs]
    assert kinds.count("Service") == (3 if "+" in label else 1)
    for doc in docs:
        if doc["apiVersion"] == "leaderworkerset.x-k8s.io/v1":
            crd_validator("leaderworkerset_leaderworkerset.x-k8s.io_v1.json").validate(doc)
            lwt = doc["spec"]["leaderWorkerTemplate"]
            validate_pod(lwt["leaderTemplate"])
            validate_pod(lwt["workerTemplate"])
            assert lwt["size"] >= 2
        else:
            for version in K8S_VERSIONS:
                kubernetes_validate.validate(doc, version, strict=True)
    multinode = {"DEP16", "TEP16"}
    assert ("LeaderWorkerSet" in kinds) == (label in multinode)


@pytest.mark.parametrize("label", list(TOPOLOGIES))
def test_dynamo_graph_deployment_validates(label: str) -> None:
    (doc,) = docs_of(rendered(label, "dynamo"))
    assert doc["apiVersion"] == "nvidia.com/v1beta1"
    crd_validator("dynamographdeployment_nvidia.com_v1beta1.json").validate(doc)
    types = [c["type"] for c in doc["spec"]["components"]]
    assert types == (["frontend", "prefill", "decode"] if "+" in label else ["frontend", "worker"])
    for comp in doc["spec"]["components"]:
        validate_pod(comp["podTemplate"])


def deep_merge(base: Any, override: Any) -> Any:
    """Helm's values merge: maps merge recursively, anything else (lists too) replaces."""
    if isinstance(base, dict) and isinstance(override, dict):
        out = dict(base)
        for key, value in override.items():
            out[key] = deep_merge(base.get(key), value) if key in base else value
        return out
    return copy.deepcopy(override)


#: Keys the chart's templates read (llm-d-modelservice templates/_helpers.tpl and the
#: decode/prefill Deployment and LWS templates); the values schema accepts anything.
CHART_POOL_KEYS = set(
    yaml.safe_load(
        "[create, autoscaling, replicas, nodeSelector, parallelism, "
        "resourceClaims, containers, volumes, initContainers, acceleratorTypes, "
        "monitoring, extraConfig, schedulerName, podSecurityContext, "
        "imagePullSecrets, priorityClassName, strategy, hostIPC, hostPID, "
        "enableServiceLinks, terminationGracePeriodSeconds, subGroupPolicy, "
        "annotations, labels, accelerator]"
    )
)
CHART_CONTAINER_KEYS = {
    "name", "image", "extraConfig", "securityContext", "imagePullPolicy", "modelCommand", "command", "args",
    "env", "ports", "livenessProbe", "readinessProbe", "startupProbe", "resources", "mountModelVolume",
    "volumeMounts", "workingDir", "stdin", "tty",
}  # fmt: skip


@pytest.mark.parametrize("label", list(TOPOLOGIES))
def test_llmd_values_validate_and_use_only_chart_keys(label: str) -> None:
    (values,) = docs_of(rendered(label, "llm-d"))
    schema = load_schema("llm-d-modelservice_v0.4.12.values.schema.json")  # skips without schemas
    folder = schema_dir()
    assert folder is not None
    defaults = yaml.safe_load((folder / "llm-d-modelservice_v0.4.12.values.yaml").read_text())
    merged = deep_merge(defaults, values)
    jsonschema.Draft7Validator(schema).validate(merged)
    unread = []
    for pool in ("prefill", "decode"):
        unread += [f"{pool}.{k}" for k in values.get(pool, {}) if k not in CHART_POOL_KEYS]
        for container in values.get(pool, {}).get("containers", []):
            unread += [f"{pool}.containers.{k}" for k in container if k not in CHART_CONTAINER_KEYS]
    assert not unread, f"keys the chart does not read: {unread}"
    pools = [p for p in ("prefill", "decode") if merged[p].get("create", True)]
    assert pools == (["prefill", "decode"] if "+" in label else ["decode"])
    assert merged["multinode"] == (label in {"DEP16", "TEP16"})


# -- secrets, flags, files --------------------------------------------------------------


@pytest.mark.parametrize("label", list(TOPOLOGIES))
def test_hf_token_never_inline(label: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    deployment, prob = TOPOLOGIES[label]
    out = render_exports(deployment, prob, formats=FORMATS)
    for files in out.values():
        for text in files.values():
            assert TOKEN not in text
            assert not re.search(r"HF_TOKEN=\S", text)

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("name") == "HF_TOKEN" and ("value" in node or "valueFrom" in node):
                assert "value" not in node
                assert node["valueFrom"]["secretKeyRef"] == {"name": "hf-token", "key": "HF_TOKEN"}
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    for fmt in ("kubernetes", "dynamo", "llm-d"):
        walk(docs_of(out[fmt]))


def test_manifest_args_carry_the_plan_flags() -> None:
    docs = docs_of(rendered("DEP8", "kubernetes"))
    (deployment,) = [d for d in docs if d["kind"] == "Deployment"]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    args = container["args"]
    assert container["command"] == ["vllm", "serve"]
    assert args[args.index("--data-parallel-size") + 1] == "8" and "--enable-expert-parallel" in args
    assert gpus(container) == 8  # attention DP: one pod holds the whole DEP8 worker
    assert container["startupProbe"]["httpGet"]["path"] == "/health"
    assert deployment["spec"]["template"]["spec"]["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-H200"}
    (dgd,) = docs_of(rendered("TP8", "dynamo"))
    worker_args = dgd["spec"]["components"][1]["podTemplate"]["spec"]["containers"][0]["args"]
    assert worker_args[worker_args.index("--tensor-parallel-size") + 1] == "8"


def test_lws_script_substitutes_leader_address_and_rank() -> None:
    docs = docs_of(rendered("DEP16", "kubernetes"))
    (lws,) = [d for d in docs if d["kind"] == "LeaderWorkerSet"]
    script = lws["spec"]["leaderWorkerTemplate"]["workerTemplate"]["spec"]["containers"][0]["command"][2]
    assert '--data-parallel-address "$LWS_LEADER_ADDRESS"' in script
    assert '--data-parallel-start-rank "$(($LWS_WORKER_INDEX * 8))"' in script
    assert "node-0" not in script
    ray = docs_of(rendered("TEP16", "kubernetes"))
    (tep,) = [d for d in ray if d["kind"] == "LeaderWorkerSet"]
    assert tep["spec"]["leaderWorkerTemplate"]["size"] == 4
    script = tep["spec"]["leaderWorkerTemplate"]["leaderTemplate"]["spec"]["containers"][0]["command"][2]
    assert "ray start --head" in script and '--address "$LWS_LEADER_ADDRESS:6379"' in script


def test_write_exports_writes_each_format_folder(tmp_path: Path) -> None:
    deployment, prob = TOPOLOGIES[GOLDEN_TOPOLOGY]
    paths = write_exports(deployment, prob, tmp_path, formats=FORMATS)
    rel = sorted(p.relative_to(tmp_path).as_posix() for p in paths)
    assert "vllm/node-0.sh" in rel and "vllm/router.sh" in rel and "kubernetes/manifests.yaml" in rel
    assert all(p.is_file() for p in paths)
    assert os.access(tmp_path / "vllm" / "node-1.sh", os.X_OK)


def test_registry_and_context_errors() -> None:
    assert set(FORMATS) <= set(exporter_names())
    assert get_exporter("dynamo").name == "dynamo"
    with pytest.raises(ConfigError, match="format"):
        get_exporter("helm2")
    deployment, prob = TOPOLOGIES["TP8"]
    with pytest.raises(ConfigError, match="app"):
        ExportContext(deployment=deployment, problem=prob, app="Not_A_Label")
    other, _ = TOPOLOGIES["DEP8"]
    with pytest.raises(ConfigError, match="context"):
        render_exports(other, prob, context=ExportContext(deployment=deployment, problem=prob))


@pytest.mark.parametrize("fmt", FORMATS)
def test_golden(fmt: str) -> None:
    files = rendered(GOLDEN_TOPOLOGY, fmt)
    folder = GOLDEN / fmt
    if os.environ.get("UPDATE_GOLDEN") == "1":
        folder.mkdir(parents=True, exist_ok=True)
        for path, text in files.items():
            (folder / path).write_text(text)
    expected = {p.name: p.read_text() for p in sorted(folder.glob("*"))} if folder.is_dir() else {}
    assert expected, f"no golden files in {folder}; run with UPDATE_GOLDEN=1"
    assert files == expected, "export changed; review and regenerate with UPDATE_GOLDEN=1"
