"""Objective ``energy``: tok/J against tok/s/user, one module (tuner/objectives/energy.py) and one
registry line, end to end on the simulator."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import pytest

from serving import Deployment, LoadPoint, Parallelism, WorkerGroup
from tuner.cli import main
from tuner.objectives import get_objective
from tuner.objectives.energy import energy_front, energy_values
from tuner.results import MeasuredPoint
from tuner.sla import SLA
from tuner.spec import parse_spec

from .conftest import small_spec

DEP = Deployment(mode="agg", agg=WorkerGroup(Parallelism(tp=1)))


def _point(*, tok_s_user: float, output_tok_s_gpu: float, joules: float | None) -> LoadPoint:
    p = LoadPoint(
        concurrency=8,
        gpus=1,
        ttft_ms_p50=100.0,
        ttft_ms_p90=100.0,
        ttft_ms_p99=100.0,
        tpot_ms_p50=1000.0 / tok_s_user,
        tpot_ms_p90=1000.0 / tok_s_user,
        tpot_ms_p99=1000.0 / tok_s_user,
        tok_s_user=tok_s_user,
        tok_s_gpu=output_tok_s_gpu * 2,
        output_tok_s_gpu=output_tok_s_gpu,
        requests_s=1.0,
        num_requests=10,
    )
    return (
        p.without_energy("no NVML")
        if joules is None
        else p.with_energy(joules, seconds=10.0, source="measured")
    )


def test_front_ranks_tok_per_j_not_throughput_and_skips_missing_energy() -> None:
    a = MeasuredPoint(0, DEP, _point(tok_s_user=20, output_tok_s_gpu=1000, joules=10000))  # 1.0 tok/J
    b = MeasuredPoint(1, DEP, _point(tok_s_user=40, output_tok_s_gpu=800, joules=4000))  # 2.0 tok/J
    c = MeasuredPoint(2, DEP, _point(tok_s_user=80, output_tok_s_gpu=100, joules=2000))  # 0.5 tok/J
    d = MeasuredPoint(3, DEP, _point(tok_s_user=90, output_tok_s_gpu=900, joules=None))  # no energy
    # On tok/s/GPU, a (most throughput) and d (most interactive) would be on the front.
    assert [m.trial for m in energy_front([a, b, c, d])] == [1, 2]
    assert get_objective("energy").front is energy_front
    values, violation = get_objective("energy").values([a.point, b.point, c.point, d.point], SLA())
    assert values == pytest.approx([2.0, 90.0]) and violation == 0.0
    assert energy_values([d.point], SLA())[0] == [0.0, 90.0]  # nothing to rank on tok/J


def test_spec_accepts_objective_energy() -> None:
    base: dict[str, Any] = {
        "model": "meta-llama/Llama-3.1-8B",
        "hardware": {"gpu": "H100", "gpus": 2},
        "workload": {"isl": 100, "osl": 20},
        "study": {"objective": "energy"},
    }
    assert parse_spec(base).study.objective == "energy"


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open() as fh:
        return list(csv.DictReader(fh))


def test_energy_study_writes_tok_per_j_and_its_front(tmp_path: Path) -> None:
    spec = small_spec(tmp_path, study={"sampler": "random", "trials": 12, "seed": 1, "objective": "energy"})
    assert main(["tune", str(spec), "-q"]) == 0
    run = tmp_path / "run"
    points, front = _rows(run / "points.csv"), _rows(run / "front.csv")
    assert points and front and "tok_per_j" in points[0] and "tok_per_j" in front[0]
    assert all(r["energy_source"] == "estimated" and float(r["tok_per_j"]) > 0 for r in points)

    def key(r: dict[str, str]) -> tuple[str, str]:
        return r["trial"], r["concurrency"]

    def pareto(axis: str) -> set[tuple[str, str]]:
        return {
            key(r)
            for r in points
            if not any(
                float(o[axis]) >= float(r[axis])
                and float(o["tok_s_user"]) >= float(r["tok_s_user"])
                and (float(o[axis]), float(o["tok_s_user"])) != (float(r[axis]), float(r["tok_s_user"]))
                for o in points
            )
        }

    on_front = {key(r) for r in front}
    energy = pareto("tok_per_j")
    # The front is exactly the (tok/J, tok/s/user) Pareto set of the points (duplicates
    # of one value pair keep one point) ...
    pairs = {(r["tok_per_j"], r["tok_s_user"]) for r in points if key(r) in energy}
    assert on_front <= energy and len(on_front) == len(pairs)
    # ... and not the throughput front, which differs on this study.
    assert on_front != pareto("tok_s_gpu")
