"""The robust pick (tuner/confidence.py): pessimistic bounds, sla.confidence, --confidence."""

from __future__ import annotations

import csv
import itertools
import math
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from serving import ConfigError, Deployment, LoadPoint, Parallelism, WorkerGroup
from tuner import confidence as robust
from tuner.pick import pick_best
from tuner.results import MeasuredPoint
from tuner.sla import SLA
from tuner.spec import parse_spec

ROOT = Path(__file__).resolve().parents[2]


def _point(user: float, gpu: float, spread: float, *, trial: int, tp: int = 1) -> MeasuredPoint:
    tpot = 1000.0 / user
    lp = LoadPoint(
        concurrency=8, gpus=tp, ttft_ms_p50=100.0, ttft_ms_p90=120.0, ttft_ms_p99=150.0,
        tpot_ms_p50=tpot, tpot_ms_p90=tpot, tpot_ms_p99=tpot, tok_s_user=user, tok_s_gpu=gpu,
        output_tok_s_gpu=gpu / 2, requests_s=1.0,
        ttft_ms_low=100.0 / (1 + spread), ttft_ms_high=100.0 * (1 + spread),
        tpot_ms_low=tpot / (1 + spread), tpot_ms_high=tpot * (1 + spread),
        tok_s_gpu_low=gpu / (1 + spread), tok_s_gpu_high=gpu * (1 + spread),
    )  # fmt: skip
    return MeasuredPoint(trial, Deployment("agg", agg=WorkerGroup(Parallelism(tp=tp))), lp)


def test_pessimistic_point_uses_upper_latency_and_lower_throughput() -> None:
    m = _point(50.0, 1000.0, 0.2, trial=0)
    p = robust.pessimistic(m.point, 0.9)
    assert p.tpot_ms_p50 == pytest.approx(m.point.tpot_ms_high)
    assert p.tok_s_user == pytest.approx(1000.0 / m.point.tpot_ms_high)
    assert p.ttft_ms_p90 == pytest.approx(120.0 * 1.2)
    assert p.tok_s_gpu == pytest.approx(m.point.tok_s_gpu_low)
    assert robust.pessimistic(m.point, 0.5) == m.point
    # Higher confidence, wider margin.
    assert robust.pessimistic(m.point, 0.97).tpot_ms_p50 > p.tpot_ms_p50


def test_measured_point_is_its_own_bound() -> None:
    m = _point(50.0, 1000.0, 0.2, trial=0)
    measured = replace(m.point, tpot_ms_high=math.nan, ttft_ms_high=math.nan)
    assert robust.pessimistic(measured, 0.9) == measured
    assert robust.label(measured) == "measured"
    assert robust.label(m.point) == "estimated +/-18%"  # (1.2 - 1/1.2) / 2


def test_robust_pick_never_chooses_a_point_whose_bound_misses() -> None:
    """Over a grid of points and SLAs: the robust choice always meets the SLA at its
    pessimistic bound, and it is never better than the plain pick (that is the margin)."""
    users = (20.0, 40.0, 60.0, 80.0)
    spreads = (0.0, 0.1, 0.3, 0.6)
    points = [
        _point(u, 5000.0 / u * (1 + s), s, trial=i, tp=1 + i % 2)
        for i, (u, s) in enumerate(itertools.product(users, spreads))
    ]
    chose_other = 0
    for target, ttft in itertools.product((10.0, 30.0, 50.0, 70.0), (None, 115.0, 200.0)):
        sla = SLA(min_tok_s_user=target, max_ttft_ms=ttft, confidence=0.9)
        try:
            pick = pick_best(points, sla)
        except Exception:
            continue
        assert sla.meets(robust.pessimistic(pick.chosen.point, 0.9))
        assert pick.plain is not None and pick.margin_tok_s_gpu >= 0
        chose_other += pick.plain is not pick.chosen
    assert chose_other > 0  # the margin changed some picks


def test_default_confidence_is_on_for_estimated_points_only() -> None:
    m = _point(50.0, 1000.0, 0.2, trial=0)
    assert robust.confidence_for(SLA(), [m]) == robust.DEFAULT_CONFIDENCE
    measured = MeasuredPoint(0, m.deployment, replace(m.point, tpot_ms_high=math.nan, ttft_ms_high=math.nan))
    assert robust.confidence_for(SLA(), [measured]) == 0.5
    assert robust.confidence_for(SLA(confidence=0.7), [m]) == 0.7


@pytest.mark.parametrize("bad", [0.4, 1.0, 1.5, "abc", True, float("nan")])
def test_spec_confidence_rejects_bad_values(bad: object) -> None:
    with pytest.raises(ConfigError, match=r"sla\.confidence"):
        robust.parse_confidence(bad)


def test_spec_reads_confidence() -> None:
    spec = parse_spec(_spec_dict(confidence=0.8))
    assert spec.sla.confidence == 0.8


def _spec_dict(**sla: object) -> dict[str, object]:
    return {
        "model": "meta-llama/Llama-3.1-8B",
        "precision": "bf16",
        "hardware": {"gpu": "H100", "gpus": 1},
        "workload": {"isl": 1000, "osl": 200, "concurrency": [1, 8, 32, 64]},
        "sla": {"min_tok_s_user": 60, **sla},
        "search_space": {"preset": "small"},
        "backend": {"name": "simulator"},
        "study": {"sampler": "random", "trials": 4, "seed": 0},
    }


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}
    return subprocess.run([sys.executable, "-m", "tuner.cli", *args], capture_output=True, text=True, env=env)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import yaml

    out = tmp_path_factory.mktemp("run")
    spec = out / "spec.yaml"
    spec.write_text(yaml.safe_dump(_spec_dict()))
    result = _cli("tune", str(spec), "--out", str(out / "run"), "-q")
    assert result.returncode == 0, result.stderr
    return out / "run"


@pytest.mark.parametrize("bad", ["1.5", "abc", "0.2", "nan"])
def test_cli_confidence_bad_value_one_line_exit_2(run_dir: Path, bad: str) -> None:
    result = _cli("pick", str(run_dir), "--confidence", bad)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "--confidence" in lines[0] and "[0.5, 0.99]" in lines[0]


def test_interval_columns_in_points_and_front_csv(run_dir: Path) -> None:
    for name in ("points.csv", "front.csv"):
        with (run_dir / name).open(newline="") as fh:
            rows = list(csv.DictReader(fh))
        assert rows
        for stem in ("ttft_ms", "tpot_ms", "tok_s_gpu"):
            for row in rows:
                lo, hi = float(row[f"{stem}_low"]), float(row[f"{stem}_high"])
                assert lo < hi
        assert all(row["estimate"].startswith("estimated +/-") for row in rows)


def test_pick_yaml_says_how_far_to_trust_it(run_dir: Path) -> None:
    import yaml

    result = _cli("pick", str(run_dir), "--confidence", "0.95")
    assert result.returncode == 0, result.stderr
    doc = yaml.safe_load((run_dir / "pick.yaml").read_text())
    est = doc["estimate"]
    assert est["label"].startswith("estimated") and est["confidence"] == 0.95
    assert est["tpot_ms"][0] < doc["operating_point"]["tpot_ms_p50"] < est["tpot_ms"][1]
    assert est["margin_tok_s_gpu"] >= 0 and "plain_pick" in est
    assert doc["sla"]["confidence"] == 0.95
