"""Exports of a run: re-picks replace deploy/ whole, a live run's export starts the command
that was measured, agg replicas get one endpoint, local models get a declared volume."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import yaml

from backends.vllm import VllmBackend
from backends.vllm.launcher import localize
from serving import ConfigError, Deployment
from serving.launch import plan_launch, vllm_flags
from tuner.cli import main
from tuner.export import ExportContext, render_exports, write_exports
from tuner.rundir import ExportOptions, export_context
from tuner.spec import build_problem, parse_spec

from .conftest import small_spec


def _tuned(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    assert main(["tune", str(small_spec(tmp_path)), "-q"]) == 0
    capsys.readouterr()
    return tmp_path / "run"


def test_repick_replaces_deploy_whole_and_keeps_the_backend_block(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = _tuned(tmp_path, capsys)
    tuned = yaml.safe_load((run / "pick.yaml").read_text())
    assert tuned["backend"]["name"] == "simulator" and "version" in tuned["backend"]
    # Files an earlier, larger pick would have left: a node script and a format not re-exported.
    (run / "deploy" / "vllm" / "node-9.sh").write_text("stale\n")
    (run / "deploy" / "dynamo").mkdir()
    (run / "deploy" / "dynamo" / "graph.yaml").write_text("stale\n")
    assert main(["pick", str(run), "--min-tok-s-user", "80", "--json"]) == 0
    label = json.loads(capsys.readouterr().out)["label"]
    files = sorted(
        p.relative_to(run / "deploy").as_posix() for p in (run / "deploy").rglob("*") if p.is_file()
    )
    assert "vllm/node-9.sh" not in files and not any(f.startswith("dynamo/") for f in files)
    for rel in files:
        if not rel.endswith(".md"):
            head = (run / "deploy" / rel).read_text().splitlines()[:2]
            assert any(line.startswith(f"# {label}:") for line in head), rel
    repicked = yaml.safe_load((run / "pick.yaml").read_text())
    assert repicked["backend"] == tuned["backend"], "the re-pick keeps the backend block"
    assert not list(run.glob(".deploy-*")), "no staging folder left behind"


def test_an_impossible_repick_leaves_no_deploy_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = _tuned(tmp_path, capsys)
    assert main(["pick", str(run), "--min-tok-s-user", "100000"]) == 1
    assert not (run / "pick.yaml").exists() and not (run / "deploy").exists()


def test_a_failed_export_leaves_the_previous_one(tmp_path: Path) -> None:
    spec = parse_spec(yaml.safe_load(small_spec(tmp_path).read_text()))
    problem = build_problem(spec)
    dep = Deployment.from_dict({"mode": "agg", "agg": {"tp": 2}})
    write_exports(dep, problem, tmp_path / "deploy")
    before = (tmp_path / "deploy" / "vllm" / "node-0.sh").read_text()
    with pytest.raises(ConfigError):
        write_exports(dep, problem, tmp_path / "deploy", formats=("vllm", "no-such-format"))
    assert (tmp_path / "deploy" / "vllm" / "node-0.sh").read_text() == before


def _cpu_spec(tmp_path: Path) -> dict[str, object]:
    data = yaml.safe_load(small_spec(tmp_path).read_text())
    data["backend"] = {
        "name": "vllm",
        "options": {"devices": "cpu", "enforce_eager": True, "env": {"VLLM_CPU_KVCACHE_SPACE": "2"}},
    }
    return data


def test_a_cpu_runs_export_starts_the_measured_command(tmp_path: Path) -> None:
    spec = parse_spec(_cpu_spec(tmp_path))
    problem = build_problem(spec)
    dep = Deployment.from_dict({"mode": "agg", "agg": {"tp": 1, "count": 2}})
    context = export_context(spec, dep, problem)
    exported = render_exports(dep, problem, ("vllm",), context)["vllm"]["node-0.sh"]
    assert "CUDA_VISIBLE_DEVICES" not in exported and "VLLM_TARGET_DEVICE=cpu" in exported
    assert "VLLM_CPU_KVCACHE_SPACE=2" in exported and "--enforce-eager" in exported
    assert "python3 -m backends.vllm.serve serve" in " ".join(exported.replace("\\\n", " ").split())

    # What the live backend starts for the same candidate, token for token after the command
    # (the interpreter, free ports and the loopback bind address are the trial's own).
    backend = VllmBackend(**dict(spec.backend.options))
    measured = localize(backend._plan(dep, problem), extra_args=backend.options.serve_args())
    plan = backend.export_plan(dep, problem)
    cmd = len(vllm_flags()["cpu_command"])
    local = (vllm_flags()["serve"]["port"], vllm_flags()["serve"]["host"])

    def strip(argv: tuple[str, ...]) -> list[str]:
        return [t for i, t in enumerate(argv) if t not in local and argv[i - 1] not in local]

    for ours, theirs in zip(plan.workers, measured.workers, strict=True):
        assert strip(ours.argv[cmd:]) == strip(theirs.argv[3 + 1 :]), "same model, flags and values"
        env = {**theirs.env_dict(), **backend.options.env}
        assert ours.env_dict() == {k: v for k, v in env.items() if k != "VLLM_CPU_OMP_THREADS_BIND"} | {
            "VLLM_CPU_OMP_THREADS_BIND": ours.env_dict()["VLLM_CPU_OMP_THREADS_BIND"]
        }


def test_agg_replicas_get_one_endpoint() -> None:
    spec_dict = yaml.safe_load(small_spec(Path("/tmp/unused-spec")).read_text())
    problem = build_problem(parse_spec(spec_dict))
    dep = Deployment.from_dict({"mode": "agg", "agg": {"tp": 1, "count": 2}})
    plan = plan_launch(dep, problem)
    assert plan.router is not None and plan.router.balances and len(plan.router.worker_urls) == 2
    assert plan.url.endswith(":8000") and {w.port for w in plan.workers} == {8001, 8002}
    out = render_exports(dep, problem, ("vllm", "kubernetes"))
    router = out["vllm"]["router.sh"]
    assert "--workers" in router and "--prefill" not in router
    assert "balances requests over the 2 replicas" in out["vllm"]["README.md"]
    docs = [d for d in yaml.safe_load_all(out["kubernetes"]["manifests.yaml"]) if d]
    kinds = [(d["kind"], d["metadata"]["name"]) for d in docs]
    assert kinds == [("Deployment", "llm-agg"), ("Service", "llm-agg")], "one Service over the replicas"
    assert docs[0]["spec"]["replicas"] == 2
    assert "spreads requests over the 2 replicas" in out["kubernetes"]["README.md"]
    # The live trial measures the replicas as the load generator round-robins: no balancer.
    assert localize(plan).router is None
    one = plan_launch(Deployment.from_dict({"mode": "agg", "agg": {"tp": 2}}), problem)
    assert one.router is None and one.workers[0].port == 8000


def test_a_local_model_is_mounted_from_a_declared_claim(tmp_path: Path) -> None:
    spec_dict = yaml.safe_load(small_spec(tmp_path).read_text())
    problem = build_problem(parse_spec(spec_dict))
    dep = Deployment.from_dict({"mode": "agg", "agg": {"tp": 1}})
    (tmp_path / "models" / "tiny").mkdir(parents=True)
    local = str(tmp_path / "models" / "tiny")
    ctx = ExportContext(deployment=dep, problem=problem, model=local)
    files = render_exports(dep, problem, ("kubernetes",), ctx)["kubernetes"]
    pod = next(d for d in yaml.safe_load_all(files["manifests.yaml"]) if d and d["kind"] == "Deployment")
    spec = pod["spec"]["template"]["spec"]
    assert {"name": "models", "persistentVolumeClaim": {"claimName": "llm-models", "readOnly": True}} in spec[
        "volumes"
    ]
    container = spec["containers"][0]
    assert container["args"][0] == "/models/local/tiny" and local not in container["args"]
    assert {"name": "models", "mountPath": "/models/local", "readOnly": True} in container["volumeMounts"]
    assert "llm-models" in files["README.md"]
    hub = render_exports(dep, problem, ("kubernetes",))["kubernetes"]["manifests.yaml"]
    assert "meta-llama/Llama-3.1-8B" in hub and "HF_HOME" in hub


def test_export_options_reach_the_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = _tuned(tmp_path, capsys)
    out = tmp_path / "exports"
    code = main(
        ["export", str(run), "--out", str(out), "--image", "reg/vllm:1", "--router-image", "reg/tuner:1"]
    )
    assert code == 0
    assert "image: reg/vllm:1" in (out / "kubernetes" / "manifests.yaml").read_text()
    opts = ExportOptions(node_hosts=("gpu-a", "gpu-b"))
    spec = parse_spec(yaml.safe_load(small_spec(tmp_path / "s").read_text()))
    problem = dataclasses.replace(build_problem(spec), gpus_per_node=1)
    dep = Deployment.from_dict({"mode": "agg", "agg": {"tp": 1, "count": 2}})
    ctx = export_context(spec, dep, problem, opts)
    text = render_exports(dep, problem, ("vllm",), ctx)["vllm"]
    assert "http://gpu-b:" in text["router.sh"] and "plan_launch" not in text["README.md"]
