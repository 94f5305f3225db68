"""The Kubernetes worker Job: valid manifests, GPU limits, no inline secrets, the example."""

from __future__ import annotations

import shlex
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from tuner.cli import build_parser, main
from tuner.export.worker_job import WorkerJob, render_worker_job

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "k8s"


def docs(text: str) -> list[dict]:
    return [d for d in yaml.safe_load_all(text) if d]


@pytest.mark.parametrize("postgres", [True, False])
@pytest.mark.parametrize("version", ["1.29", "1.37"])
def test_manifests_validate_strictly(postgres: bool, version: str) -> None:
    rendered = docs(render_worker_job(WorkerJob(study="r1", workers=3, gpus_per_worker=4, postgres=postgres)))
    kinds = [d["kind"] for d in rendered]
    assert kinds == (["StatefulSet", "Service", "Job"] if postgres else ["Job"])
    for doc in rendered:
        kubernetes_validate.validate(doc, version, strict=True)


def test_job_runs_workers_with_their_gpus() -> None:
    (job,) = [
        d
        for d in docs(render_worker_job(WorkerJob(study="My Study", workers=3, gpus_per_worker=4)))
        if d["kind"] == "Job"
    ]
    spec = job["spec"]
    assert spec["parallelism"] == spec["completions"] == 3
    (container,) = spec["template"]["spec"]["containers"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "4"
    # The command is a real `tuner worker` invocation.
    args = build_parser().parse_args(container["command"][1:])
    assert args.command == "worker" and args.study == "My Study" and args.gpus == 4
    assert job["metadata"]["name"] == "tuner-workers-my-study"


def test_storage_url_only_from_secret() -> None:
    text = render_worker_job(WorkerJob(study="r1"))
    assert "postgresql://" not in text and "password:" not in text.replace("key: password", "")
    (job,) = [d for d in docs(text) if d["kind"] == "Job"]
    env = job["spec"]["template"]["spec"]["containers"][0]["env"]
    assert env == [
        {"name": "TUNER_STORAGE", "valueFrom": {"secretKeyRef": {"name": "tuner-storage", "key": "url"}}}
    ]


def test_example_is_what_the_documented_command_renders(tmp_path: Path) -> None:
    readme = (EXAMPLE / "README.md").read_text()
    line = readme.split("```\n", 2)[1].split("```")[0].replace("\\\n", " ")
    argv = shlex.split(line)[1:]
    out = tmp_path / "workers.yaml"
    argv[argv.index("--out") + 1] = str(out)
    assert main(argv) == 0
    assert out.read_text() == (EXAMPLE / "workers.yaml").read_text()


def test_bad_worker_count_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["k8s-workers", "--study", "x", "--workers", "0"]) == 2
    assert "--workers: got '0'; must be an integer >= 1" in capsys.readouterr().err
