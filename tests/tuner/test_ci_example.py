"""``examples/ci/github-actions.yml``: the workflow parses, every ``tuner`` command it runs
exists in our CLI with those flags, the report it publishes is the one ``tuner check``
writes, and its commands pass as written on the simulator."""

from __future__ import annotations

import json
import shlex
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
import yaml

from tuner.cli import build_parser, main

ROOT = Path(__file__).resolve().parents[2]
WORKFLOW = ROOT / "examples" / "ci" / "github-actions.yml"


def workflow() -> dict[Any, Any]:
    data: dict[Any, Any] = yaml.safe_load(WORKFLOW.read_text())
    return data


def steps() -> list[dict[str, Any]]:
    return [step for job in workflow()["jobs"].values() for step in job["steps"]]


def commands() -> list[list[str]]:
    """Every shell command of every ``run:`` block, as argv (line continuations joined)."""
    out = []
    for step in steps():
        script = str(step.get("run", "")).replace("\\\n", " ")
        for line in script.splitlines():
            argv = shlex.split(line, comments=True)
            if argv:
                out.append(argv)
    return out


def tuner_commands() -> list[list[str]]:
    return [argv[1:] for argv in commands() if argv[0] == "tuner"]


def test_workflow_is_a_github_actions_workflow() -> None:
    data = workflow()
    triggers = data.get("on", data.get(True))  # YAML 1.1 reads a bare `on` key as True
    assert triggers and "pull_request" in triggers
    for name, job in data["jobs"].items():
        assert job["runs-on"] and job["steps"], name
    for step in steps():
        assert ("uses" in step) != ("run" in step), step
        if "uses" in step:
            action, _, version = step["uses"].partition("@")
            assert action.count("/") == 1 and version.startswith("v"), step["uses"]


def test_workflow_runs_both_gates_with_known_flags() -> None:
    parser = build_parser()
    found = {}
    for argv in tuner_commands():
        args = parser.parse_args(argv)  # an unknown subcommand or flag exits (fails the test)
        found[args.command] = args
    assert set(found) == {"tune", "check"}
    tune, check = found["tune"], found["check"]
    assert (ROOT / tune.spec).is_file()
    assert tune.trials and tune.require_tok_s_gpu and tune.out
    assert check.pick == f"{tune.out}/pick.yaml"
    assert check.backend == "simulator" and check.junit and check.json
    publish = [s for s in steps() if "junit-report" in s.get("uses", "")]
    assert [s["with"]["report_paths"] for s in publish] == [check.junit]
    assert all(s.get("if") for s in publish)  # a failed gate still publishes its report


def test_workflow_commands_pass_as_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run the workflow's tuner commands in a scratch checkout: the required tok/s/GPU is
    below what the simulator gives, and the report lands where the publish step reads it."""
    (tmp_path / "examples").symlink_to(ROOT / "examples")
    monkeypatch.chdir(tmp_path)
    argvs = tuner_commands()
    for argv in argvs:
        assert main(argv) == 0, argv
    check = build_parser().parse_args(argvs[-1])
    root = ET.parse(tmp_path / check.junit).getroot()
    assert len(root.findall("testsuite")) == 1
    assert root.get("failures") == "0" and int(root.get("tests", "0")) >= 2
    assert json.loads((tmp_path / check.json).read_text())["verdict"] == "pass"
