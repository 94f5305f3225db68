"""The command line end to end: every example, show/pick/export, exit codes, errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tuner.cli import main

from .conftest import EXAMPLES, small_spec

SIMULATOR_EXAMPLES = [
    p
    for p in sorted(EXAMPLES.glob("*.yaml"))
    if yaml.safe_load(p.read_text()).get("backend", {}).get("name", "simulator") == "simulator"
]


@pytest.mark.parametrize("example", SIMULATOR_EXAMPLES, ids=lambda p: p.stem)
def test_every_example_end_to_end(example: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    code = main(["tune", str(example), "--trials", "30", "--out", str(out), "-q"])
    assert code == 0, capsys.readouterr().err
    for name in ("study.db", "points.csv", "front.csv", "pareto.png", "pick.yaml"):
        assert (out / name).is_file(), name
    pick = yaml.safe_load((out / "pick.yaml").read_text())
    spec = yaml.safe_load(example.read_text())
    assert pick["operating_point"]["tok_s_user"] >= spec["sla"]["min_tok_s_user"]
    assert pick["deployment"]["gpus"] <= spec["hardware"]["gpus"]
    assert {"tuner", "optuna", "python"} <= set(pick["versions"])
    assert (out / "deploy" / "vllm" / "node-0.sh").is_file()
    text = capsys.readouterr().out
    assert "Pareto front" in text and "SLA pick" in text


def test_show_json_and_repick(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = small_spec(tmp_path)
    assert main(["tune", str(spec), "-q"]) == 0
    capsys.readouterr()
    run = str(tmp_path / "run")
    assert main(["show", run, "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["pick"]["tok_s_user"] >= 40
    assert doc["front"] and all(
        doc["front"][i]["tok_s_user"] <= doc["front"][i + 1]["tok_s_user"]
        for i in range(len(doc["front"]) - 1)
    )
    # A stricter SLA re-picks from stored points without measuring again.
    assert main(["pick", run, "--min-tok-s-user", "80", "--json"]) == 0
    strict = json.loads(capsys.readouterr().out)
    assert strict["tok_s_user"] >= 80
    assert strict["tok_s_gpu"] <= doc["pick"]["tok_s_gpu"]
    assert yaml.safe_load((tmp_path / "run" / "pick.yaml").read_text())["sla"]["min_tok_s_user"] == 80


def test_impossible_sla_exits_1_with_closest(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = small_spec(tmp_path, sla={"min_tok_s_user": 100000})
    assert main(["tune", str(spec), "-q"]) == 1
    captured = capsys.readouterr()
    assert "no point meets min_tok_s_user" in captured.err
    assert "closest points" in captured.out
    assert not (tmp_path / "run" / "pick.yaml").exists()


def test_export_formats(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["tune", str(small_spec(tmp_path)), "-q"]) == 0
    out = tmp_path / "exports"
    assert (
        main(["export", str(tmp_path / "run"), "--format", "dynamo", "--format", "llm-d", "--out", str(out)])
        == 0
    )
    assert (out / "dynamo").is_dir() and (out / "llm-d").is_dir()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["tune", "missing.yaml"], "spec: got 'missing.yaml'; must be an existing YAML file"),
        (["show", "/nonexistent-run"], "RUN: got '/nonexistent-run'"),
    ],
)
def test_bad_input_exit_2_one_line(args: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err


def test_console_script_no_traceback(tmp_path: Path) -> None:
    spec = small_spec(tmp_path, precision="int3")
    proc = subprocess.run(
        [sys.executable, "-m", "tuner.cli", "tune", str(spec)], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == "error: precision: got 'int3'; allowed: bf16, fp16, fp8, fp4"
    assert "Traceback" not in proc.stderr


def test_help_lists_commands(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    text = capsys.readouterr().out
    for command in ("tune", "show", "pick", "export"):
        assert command in text
