"""``tuner tune SPEC --trials N --require-tok-s-gpu X``: the study's CI gate.

Exit 0 when the best SLA pick reaches X tok/s/GPU, 1 below it (one line saying both
numbers), 2 for a value that is not a number.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tuner.cli import main

SPEC = {
    "model": "meta-llama/Llama-3.1-8B",
    "hardware": {"gpu": "H100", "gpus": 1},
    "workload": {"isl": 1000, "osl": 200, "concurrency": [8, 32, 64]},
    "sla": {"min_tok_s_user": 60, "max_ttft_ms": 500},
    "search_space": {"preset": "small"},
    "study": {"trials": 50, "seed": 0},
}
TRIALS = "4"


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, float]:
    """A tiny real study: (spec file, run directory, tok/s/GPU of its pick)."""
    root = tmp_path_factory.mktemp("gate")
    spec = root / "spec.yaml"
    spec.write_text(yaml.safe_dump(SPEC))
    run = root / "run"
    assert main(["tune", str(spec), "--trials", TRIALS, "--out", str(run), "-q"]) == 0
    best = float(yaml.safe_load((run / "pick.yaml").read_text())["operating_point"]["tok_s_gpu"])
    return spec, run, best


def gate(spec: Path, run: Path, required: float | str) -> int:
    """Re-run the same command with the gate: the study resumes, with no trial left to run."""
    return main(
        ["tune", str(spec), "--trials", TRIALS, "--out", str(run), "-q", "--require-tok-s-gpu", str(required)]
    )


def test_gate_passes_below_the_pick(
    study: tuple[Path, Path, float], capsys: pytest.CaptureFixture[str]
) -> None:
    spec, run, best = study
    assert gate(spec, run, best * 0.9) == 0
    assert gate(spec, run, round(best, 4) - 0.001) == 0
    assert "check failed" not in capsys.readouterr().err


def test_gate_fails_above_the_pick(
    study: tuple[Path, Path, float], capsys: pytest.CaptureFixture[str]
) -> None:
    spec, run, best = study
    assert gate(spec, run, best * 1.1) == 1
    err = capsys.readouterr().err
    assert "check failed: best pick" in err and f"{best:,.1f}" in err and f"{best * 1.1:,.1f}" in err
    assert "Traceback" not in err
    assert (run / "pick.yaml").is_file()  # the run directory is still written for inspection


def test_gate_fails_when_nothing_meets_the_sla(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump({**SPEC, "sla": {"min_tok_s_user": 100000}}))
    code = main(
        ["tune", str(spec), "--trials", "2", "--out", str(tmp_path / "run"), "-q", "--require-tok-s-gpu", "1"]
    )
    assert code == 1  # no pick at all: the gate fails without reaching the comparison
    err = capsys.readouterr().err
    assert err.strip() and "check failed" not in err and "Traceback" not in err
    assert not (tmp_path / "run" / "pick.yaml").exists()


@pytest.mark.parametrize("value", ["abc", "-5", "nan", "inf"])
def test_gate_rejects_a_bad_value(
    study: tuple[Path, Path, float], value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    spec, run, _ = study
    assert main(["tune", str(spec), "--out", str(run), f"--require-tok-s-gpu={value}"]) == 2
    err = capsys.readouterr().err.strip()
    assert "--require-tok-s-gpu" in err and "\n" not in err
