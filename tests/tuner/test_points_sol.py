"""points.csv / front.csv carry each point's share of its speed-of-light bound."""

from __future__ import annotations

import csv
from pathlib import Path

from backends.simulator import SimulatorBackend
from serving import Deployment, EngineKnobs, Parallelism, Problem, WorkerGroup, Workload, load_gpu, load_model
from serving.roofline import speed_of_light
from tuner.outputs import write_csv
from tuner.results import MeasuredPoint


def test_points_csv_appends_sol_frac_and_role(tmp_path: Path) -> None:
    problem = Problem(
        arch=load_model("Llama-3.1-8B"),
        gpu=load_gpu("h100"),
        precision="bf16",
        workload=Workload(isl=1024, osl=256, concurrency=(1, 16, 64)),
        gpus=2,
        gpus_per_node=8,
    )
    group = WorkerGroup(parallel=Parallelism(tp=1), knobs=EngineKnobs())
    deps = [
        Deployment(mode="agg", agg=group),
        Deployment(mode="disagg", prefill=group, decode=group),
    ]
    sim = SimulatorBackend()
    points = [MeasuredPoint(i, d, p) for i, d in enumerate(deps) for p in sim.measure(d, problem)]
    write_csv(tmp_path / "points.csv", points, problem=problem)
    with (tmp_path / "points.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    columns = list(rows[0])
    assert columns[columns.index("sol_frac") + 1] == "sol_role"
    for row, m in zip(rows, points, strict=True):
        expected = speed_of_light(m.deployment, problem, m.point)
        assert float(row["sol_frac"]) == round(expected.frac, 4) and 0.0 < expected.frac <= 1.0
        assert row["sol_role"] == ("agg" if m.deployment.mode == "agg" else expected.role)
    assert {r["sol_role"] for r in rows} >= {"agg"} and {r["sol_role"] for r in rows} & {"prefill", "decode"}
    # Without a problem (a spec whose model no longer resolves) the columns stay blank.
    write_csv(tmp_path / "bare.csv", points)
    with (tmp_path / "bare.csv").open() as fh:
        assert {r["sol_frac"] for r in csv.DictReader(fh)} == {""}
