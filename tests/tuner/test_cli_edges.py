"""Small command-line edges a first user meets: each ends in one line, never a traceback."""

from __future__ import annotations

import dataclasses
import io
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console

from serving import Deployment
from tuner.cli import main
from tuner.console import front_table
from tuner.front import pareto_front
from tuner.rundir import load_run

from .conftest import small_spec

ROOT = Path(__file__).resolve().parents[2]


def _run_without(module: str, *argv: str) -> subprocess.CompletedProcess[str]:
    """The CLI in a fresh interpreter where ``module`` cannot be imported (as without the extra)."""
    code = (
        f"import sys; sys.modules[{module!r}] = None; "
        f"from tuner.cli import main; sys.exit(main({list(argv)!r}))"
    )
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)


def test_router_without_the_live_extra_is_one_line() -> None:
    done = _run_without(
        "aiohttp", "router", "--port", "18999", "--prefill", "http://a", "--decode", "http://b"
    )
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert "aiohttp" in done.stderr and "pip install -e '.[live]'" in done.stderr


def test_router_needs_both_roles_or_workers(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["router", "--port", "18999", "--prefill", "http://a"]) == 2
    assert "--prefill/--decode" in capsys.readouterr().err
    assert main(["router", "--port", "18999", "--workers", "http://a", "--decode", "http://b"]) == 2
    assert "either --workers or" in capsys.readouterr().err


def test_profile_hint_names_the_editable_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    from tuner.errors import TunerError
    from tuner.profiling.measure import require_torch

    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(TunerError, match=r"pip install -e '\.\[profile\]'"):
        require_torch()


def test_status_without_a_run_says_what_is_needed(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["status"]) == 2
    err = capsys.readouterr().err
    assert "RUN is required" in err and "None" not in err


def test_a_closed_pipe_ends_quietly(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["tune", str(small_spec(tmp_path)), "-q"]) == 0
    capsys.readouterr()
    proc = subprocess.Popen(
        [sys.executable, "-m", "tuner.cli", "status", str(tmp_path / "run"), "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=ROOT,
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # the reader is gone before the first write, as `| head -0`
    with proc.stderr:
        stderr = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141
    assert "Traceback" not in stderr and "BrokenPipe" not in stderr


def test_front_table_keeps_every_digit_at_80_columns(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dense = ROOT / "examples" / "qwen3-32b-h200.yaml"  # disagg labels such as 1xTP1+1xTP4
    assert main(["tune", str(dense), "--trials", "30", "--out", str(tmp_path / "run"), "-q"]) == 0
    capsys.readouterr()
    # The seed chart's labels are long (2xTP4xDP2xEP8+3xDEP16): give every point one.
    long = Deployment.from_dict(
        {
            "mode": "disagg",
            "prefill": {"tp": 4, "dp": 2, "ep": 8, "count": 2},
            "decode": {"dp": 16, "ep": 16, "count": 3},
        }
    )
    points = [dataclasses.replace(m, deployment=long) for m in load_run(str(tmp_path / "run")).points]
    buffer = io.StringIO()
    Console(file=buffer, width=80, color_system=None).print(front_table(points))
    text = buffer.getvalue()
    assert "…" not in text, "no number cut"
    front = pareto_front(points)
    assert len(front) <= 20, "every front point is in the table"
    for m in front:
        assert f"{m.point.tok_s_gpu:,.0f}" in text and f"{m.point.ttft_ms_p90:,.0f}" in text
    assert max(len(line) for line in text.splitlines()) <= 80


def test_the_validate_example_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "pred.csv"
    assert main(["validate", str(ROOT / "examples" / "validate" / "points.csv"), "--out", str(out)]) == 0
    assert "| all | 8 |" in capsys.readouterr().out
    assert len(out.read_text().splitlines()) == 9


def test_reports_are_ignored_by_git() -> None:
    assert "reports/" in (ROOT / ".gitignore").read_text().split()
