"""Capacity and cost: the replica math, node counts, $/Mtok, the cost objective and its
front, prices from the catalog and the spec, ``tuner plan`` and its exports, the cost chart,
and bad plan input as one line with exit 2."""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

import pytest
import yaml

from serving import Deployment, EngineKnobs, LoadPoint, Parallelism, WorkerGroup
from serving.catalog import gpu_names, gpu_price_usd_per_hour
from serving.launch import node_count, plan_launch
from tuner.capacity import capacity_point, plan_capacity, plan_deployment, replicas_for, scale
from tuner.cli import main
from tuner.cost import cost_front, usd_per_mtok, usd_per_mtok_output
from tuner.errors import NoFeasiblePick
from tuner.export import render_exports
from tuner.objectives import OBJECTIVES, get_objective
from tuner.results import MeasuredPoint
from tuner.sla import SLA
from tuner.spec import build_problem, load_spec, parse_spec
from tuner.studies import fingerprint

from .conftest import small_spec


def _point(
    *, tok_s_user: float, output_tok_s_gpu: float, requests_s: float, gpus: int = 1, **kw: Any
) -> LoadPoint:
    values: dict[str, Any] = {
        "concurrency": 8,
        "gpus": gpus,
        "ttft_ms_p50": 100.0,
        "ttft_ms_p90": 150.0,
        "ttft_ms_p99": 200.0,
        "tpot_ms_p50": 1000.0 / tok_s_user,
        "tpot_ms_p90": 1000.0 / tok_s_user,
        "tpot_ms_p99": 1000.0 / tok_s_user,
        "tok_s_user": tok_s_user,
        "tok_s_gpu": 2 * output_tok_s_gpu,
        "output_tok_s_gpu": output_tok_s_gpu,
        "requests_s": requests_s,
    }
    values.update(kw)
    return LoadPoint(**values)


def _agg(tp: int, count: int = 1) -> Deployment:
    return Deployment(mode="agg", agg=WorkerGroup(Parallelism(tp=tp), count=count))


def _disagg(p_tp: int, p_count: int, d_tp: int, d_count: int) -> Deployment:
    return Deployment(
        mode="disagg",
        prefill=WorkerGroup(Parallelism(tp=p_tp), count=p_count),
        decode=WorkerGroup(Parallelism(tp=d_tp), count=d_count),
    )


# -- the replica math ----------------------------------------------------------------------
def test_rate_just_under_one_replica_needs_one() -> None:
    assert replicas_for(9.99, 10.0, headroom=0.0) == 1
    assert replicas_for(10.0, 10.0, headroom=0.0) == 1  # exactly full
    assert replicas_for(0.001, 10.0, headroom=0.0) == 1  # never zero


def test_rate_just_over_one_replica_needs_two() -> None:
    assert replicas_for(10.01, 10.0, headroom=0.0) == 2
    assert replicas_for(30.0, 10.0, headroom=0.0) == 3
    assert replicas_for(0.3, 0.1, headroom=0.0) == 3  # 0.3 / 0.1 = 2.9999999999999996


def test_headroom_adds_replicas() -> None:
    # 9 req/s on 10 req/s replicas: one is enough bare, but 20% headroom asks for 10.8.
    assert replicas_for(9.0, 10.0, headroom=0.0) == 1
    assert replicas_for(9.0, 10.0, headroom=0.2) == 2
    assert replicas_for(8.0, 10.0, headroom=0.25) == 1  # 10.0: exactly one replica's worth


def test_a_replica_without_capacity_is_refused() -> None:
    with pytest.raises(ValueError, match="> 0"):
        replicas_for(1.0, 0.0, headroom=0.0)


def test_disagg_plan_keeps_the_prefill_decode_ratio() -> None:
    dep = _disagg(2, 1, 4, 2)  # 1xTP2 + 2xTP4 = 10 GPUs
    m = MeasuredPoint(0, dep, _point(tok_s_user=50, output_tok_s_gpu=100, requests_s=2.0, gpus=10))
    plan = plan_deployment(m, role="pick", rate_rps=9.0, headroom=0.0, gpus_per_node=8, usd_per_gpu_hour=2.0)
    assert plan.replicas == 5
    assert plan.workers() == {"prefill": 5, "decode": 10}
    assert plan.deployment == scale(dep, 5)
    assert plan.gpus == 50 == plan.deployment.gpus() == 5 * dep.gpus()
    assert plan.capacity_rps == pytest.approx(10.0)
    assert plan.spare == pytest.approx(10.0 / 9.0 - 1)
    assert plan.usd_per_hour == pytest.approx(100.0)


@pytest.mark.parametrize(
    ("dep", "gpn"),
    [
        (_agg(2, 5), 8),
        (_agg(1, 9), 8),
        (_agg(16, 3), 8),
        (_disagg(4, 3, 8, 2), 8),
        (_disagg(2, 3, 4, 5), 4),
        (_disagg(2, 1, 16, 2), 8),
        (_disagg(8, 2, 2, 3), 8),
    ],
    ids=lambda v: v.label() if isinstance(v, Deployment) else str(v),
)
def test_node_count_is_the_launch_plans(dep: Deployment, gpn: int, tmp_path: Path) -> None:
    spec = load_spec(small_spec(tmp_path, hardware={"gpu": "H100", "gpus": 64, "gpus_per_node": gpn}))
    problem = build_problem(spec)
    assert node_count(dep, gpn) == len(plan_launch(dep, problem).nodes)


# -- which point, which deployments ----------------------------------------------------------
SLA_40 = SLA(min_tok_s_user=40)


def test_capacity_point_is_the_most_requests_within_the_sla() -> None:
    dep = _agg(1)
    pts = [
        MeasuredPoint(0, dep, _point(tok_s_user=80, output_tok_s_gpu=50, requests_s=1.0)),
        MeasuredPoint(0, dep, _point(tok_s_user=45, output_tok_s_gpu=90, requests_s=3.0)),
        MeasuredPoint(0, dep, _point(tok_s_user=20, output_tok_s_gpu=150, requests_s=6.0)),  # too slow
    ]
    best = capacity_point(pts, SLA_40)
    assert best is not None and best.point.requests_s == 3.0
    assert capacity_point(pts[2:], SLA_40) is None


def test_plan_lists_the_pick_then_front_topologies_by_gpus() -> None:
    tp1, tp2, tp4 = _agg(1), _agg(2), _agg(4)
    tp2_other_knobs = Deployment(
        mode="agg", agg=WorkerGroup(Parallelism(tp=2), knobs=EngineKnobs(max_num_seqs=64))
    )
    pts = [
        MeasuredPoint(0, tp1, _point(tok_s_user=41, output_tok_s_gpu=100, requests_s=1.0)),  # the pick
        MeasuredPoint(1, tp2, _point(tok_s_user=60, output_tok_s_gpu=80, requests_s=1.6, gpus=2)),
        MeasuredPoint(2, tp2_other_knobs, _point(tok_s_user=61, output_tok_s_gpu=70, requests_s=1.4, gpus=2)),
        MeasuredPoint(3, tp4, _point(tok_s_user=90, output_tok_s_gpu=60, requests_s=2.4, gpus=4)),
        MeasuredPoint(3, tp4, _point(tok_s_user=30, output_tok_s_gpu=200, requests_s=8.0, gpus=4)),  # misses
    ]
    front = get_objective("sla").front(pts)
    plans = plan_capacity(
        pts, front, SLA_40, rate_rps=10.0, headroom=0.0, gpus_per_node=8, usd_per_gpu_hour=1.0
    )
    assert [(p.role, p.replica.label(), p.replicas, p.gpus) for p in plans] == [
        ("pick", "TP1", 10, 10),
        ("front", "TP2", 7, 14),  # of TP2's two knob settings, the one needing fewer GPUs
        ("front", "TP4", 5, 20),  # sized at its SLA point (2.4 req/s), not the 8 req/s one
    ]
    assert plans[1].trial == 1


def test_nothing_to_plan_when_nothing_meets_the_sla() -> None:
    pts = [MeasuredPoint(0, _agg(1), _point(tok_s_user=10, output_tok_s_gpu=100, requests_s=1.0))]
    with pytest.raises(NoFeasiblePick, match="min_tok_s_user"):
        plan_capacity(pts, pts, SLA_40, rate_rps=1.0, headroom=0.0, gpus_per_node=8, usd_per_gpu_hour=None)


# -- cost ------------------------------------------------------------------------------------
def test_usd_per_mtok_counts_input_and_output_tokens_over_all_gpus() -> None:
    # 1000 output tok/s per GPU = 3.6 Mtok per GPU-hour; at $7.20 per GPU-hour: $2 per output
    # Mtok, whatever the GPU count (price x gpus / (output tok/s x gpus x 3600 / 1e6)). The
    # points carry as many prompt tokens as output ones: $1 per Mtok in and out.
    for gpus in (1, 8):
        p = _point(tok_s_user=50, output_tok_s_gpu=1000.0, requests_s=1.0, gpus=gpus)
        assert usd_per_mtok_output(p, 7.2) == pytest.approx(2.0)
        assert usd_per_mtok(p, 7.2) == pytest.approx(1.0)
    assert usd_per_mtok(p, None) is None and usd_per_mtok_output(p, None) is None
    idle = _point(tok_s_user=50, output_tok_s_gpu=0.0, requests_s=0.0)
    assert usd_per_mtok(idle, 7.2) is None and usd_per_mtok_output(idle, 7.2) is None


def test_plan_costs_both_token_bases_at_the_point_and_at_the_rate() -> None:
    m = MeasuredPoint(0, _agg(2), _point(tok_s_user=50, output_tok_s_gpu=1000.0, requests_s=4.0, gpus=2))
    plan = plan_deployment(m, role="pick", rate_rps=6.0, headroom=0.0, gpus_per_node=8, usd_per_gpu_hour=7.2)
    assert plan.replicas == 2  # 8 req/s of capacity for 6
    assert plan.usd_per_mtok == pytest.approx(1.0) and plan.usd_per_mtok_output == pytest.approx(2.0)
    # At the rate a quarter of the fleet idles: each basis costs 8/6 as much.
    assert plan.usd_per_mtok_at_rate == pytest.approx(8 / 6)
    assert plan.usd_per_mtok_output_at_rate == pytest.approx(2 * 8 / 6)


def test_cost_front_on_hand_built_points() -> None:
    dep = _agg(1)
    a = MeasuredPoint(0, dep, _point(tok_s_user=20, output_tok_s_gpu=1000, requests_s=5))  # cheapest
    b = MeasuredPoint(1, dep, _point(tok_s_user=40, output_tok_s_gpu=600, requests_s=3))
    c = MeasuredPoint(2, dep, _point(tok_s_user=35, output_tok_s_gpu=500, requests_s=2))  # b: faster, cheaper
    d = MeasuredPoint(3, dep, _point(tok_s_user=80, output_tok_s_gpu=200, requests_s=1))  # most interactive
    e = MeasuredPoint(4, dep, _point(tok_s_user=15, output_tok_s_gpu=900, requests_s=4))  # a dominates
    front = cost_front([c, e, d, a, b])
    assert [m.trial for m in front] == [0, 1, 3]
    costs = [usd_per_mtok_output(m.point, 3.6) for m in front]
    assert costs == pytest.approx([1.0, 1000 / 600, 5.0])  # rising with interactivity
    assert get_objective("cost").front is cost_front


def test_cost_objective_is_one_registry_entry_with_price_free_values() -> None:
    assert set(OBJECTIVES) == {"sla", "front", "cost", "energy"}
    pts = [
        _point(tok_s_user=20, output_tok_s_gpu=1000, requests_s=5),
        _point(tok_s_user=80, output_tok_s_gpu=200, requests_s=1),
    ]
    values, violation = get_objective("cost").values(pts, SLA_40)
    assert values == pytest.approx([3.6, 80.0]) and violation == 0.0  # Mtok per GPU-hour, tok/s/user


def test_cost_objective_study_writes_the_cost_front(tmp_path: Path) -> None:
    spec = small_spec(tmp_path, study={"sampler": "random", "trials": 8, "seed": 1, "objective": "cost"})
    assert main(["tune", str(spec), "-q"]) == 0
    run = tmp_path / "run"
    with (run / "front.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    with (run / "points.csv").open() as fh:
        points = list(csv.DictReader(fh))
    # Every front row is undominated in (least $/Mtok, most tok/s/user) among all points.
    for r in rows:
        cost, user = float(r["usd_per_mtok_output"]), float(r["tok_s_user"])
        assert not any(
            float(p["usd_per_mtok_output"]) < cost and float(p["tok_s_user"]) > user for p in points
        )


# -- prices ----------------------------------------------------------------------------------
def test_every_catalog_gpu_has_a_price() -> None:
    for name in gpu_names():
        price = gpu_price_usd_per_hour(name)
        assert price is not None and 0.5 < price < 50, name
    assert gpu_price_usd_per_hour("H200") == gpu_price_usd_per_hour("h200_sxm")
    assert gpu_price_usd_per_hour("no-such-gpu") is None


def test_spec_price_overrides_the_catalog_and_does_not_change_the_study(tmp_path: Path) -> None:
    spec = small_spec(tmp_path)
    assert main(["tune", str(spec), "-q"]) == 0
    run = tmp_path / "run"

    def first_cost() -> float:
        with (run / "points.csv").open() as fh:
            return float(next(csv.DictReader(fh))["usd_per_mtok_output"])

    default = first_cost()
    h100 = gpu_price_usd_per_hour("H100")
    assert h100 is not None
    priced = small_spec(  # the same run directory, another spec file
        tmp_path / "priced", output_dir=str(run), hardware={"usd_per_gpu_hour": 2 * h100}
    )
    assert main(["tune", str(priced), "-q"]) == 0  # resumes: the price is no part of the problem
    assert first_cost() == pytest.approx(2 * default, rel=1e-3)
    a, b = load_spec(spec), load_spec(priced)
    assert fingerprint(a) == fingerprint(b) and a.hardware != b.hardware


# -- tuner plan, the plan block, the exports -----------------------------------------------
def _plan_rows(path: Path) -> list[dict[str, str]]:
    with path.open() as fh:
        return list(csv.DictReader(fh))


def _replicas_by_role(files: dict[str, str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for doc in yaml.safe_load_all(files["manifests.yaml"]):
        if doc and doc["kind"] in ("Deployment", "LeaderWorkerSet"):
            role = doc["metadata"]["labels"]["app.kubernetes.io/component"]
            out[role] = out.get(role, 0) + int(doc["spec"]["replicas"])
    return out


def test_tuner_plan_writes_the_plan_and_its_export(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["tune", str(small_spec(tmp_path)), "-q"]) == 0
    run = tmp_path / "run"
    capsys.readouterr()
    assert main(["plan", str(run), "--rate", "25", "--headroom", "0.1", "--export"]) == 0
    assert "Capacity plan: 25 requests/s, headroom 10%" in capsys.readouterr().out
    rows = _plan_rows(run / "plan.csv")
    pick = rows[0]
    assert pick["role"] == "pick" and all(r["role"] == "front" for r in rows[1:])
    replicas, per_replica = int(pick["replicas"]), float(pick["requests_s_per_replica"])
    assert replicas == math.ceil(25 * 1.1 / per_replica)
    assert int(pick["gpus"]) == replicas * int(pick["gpus_per_replica"])
    doc = yaml.safe_load((run / "pick.yaml").read_text())
    assert pick["topology"] == doc["deployment"]["label"]
    # The exported artifacts run the plan's replica count, not the measured one.
    manifests = (run / "deploy-plan" / "kubernetes" / "manifests.yaml").read_text()
    exported = _replicas_by_role({"manifests.yaml": manifests})
    count = doc["deployment"]["agg"]["count"] if doc["deployment"]["mode"] == "agg" else None
    if count is not None:
        assert exported["agg"] == replicas * count == int(pick["agg_workers"])
    # A plan without --export leaves no export of another rate behind.
    assert main(["plan", str(run), "--rate", "5"]) == 0
    assert not (run / "deploy-plan").exists()


def test_exported_disagg_replicas_equal_the_plan(tmp_path: Path) -> None:
    spec = load_spec(small_spec(tmp_path, hardware={"gpu": "H100", "gpus": 16, "gpus_per_node": 8}))
    problem = build_problem(spec)
    dep = _disagg(2, 1, 4, 2)
    m = MeasuredPoint(0, dep, _point(tok_s_user=50, output_tok_s_gpu=100, requests_s=1.5, gpus=10))
    plan = plan_deployment(m, role="pick", rate_rps=4.0, headroom=0.0, gpus_per_node=8, usd_per_gpu_hour=None)
    assert plan.deployment is not None
    files = render_exports(plan.deployment, problem, formats=("kubernetes",))["kubernetes"]
    assert _replicas_by_role(files) == {
        "prefill": plan.workers()["prefill"],
        "decode": plan.workers()["decode"],
        "router": 1,
    }
    assert plan.workers() == {"prefill": 3, "decode": 6}


def test_plan_block_makes_tune_write_the_plan_and_a_repick_removes_a_stale_one(tmp_path: Path) -> None:
    spec = small_spec(tmp_path, plan={"rate_rps": 12, "headroom": 0.0, "export": True})
    assert main(["tune", str(spec), "-q"]) == 0
    run = tmp_path / "run"
    rows = _plan_rows(run / "plan.csv")
    assert rows[0]["rate_rps"] == "12.0" and rows[0]["headroom"] == "0.0"
    assert (run / "deploy-plan" / "vllm").is_dir() and (run / "cost.png").is_file()
    assert main(["plan", str(run)]) == 0  # the rate comes from the stored plan block
    assert main(["pick", str(run), "--min-tok-s-user", "100000"]) == 1  # nothing meets it
    assert not (run / "plan.csv").exists() and not (run / "deploy-plan").exists()


def test_cost_chart_is_written_beside_the_main_chart(tmp_path: Path) -> None:
    assert main(["tune", str(small_spec(tmp_path)), "-q"]) == 0
    for name in ("pareto.png", "cost.png"):
        data = (tmp_path / "run" / name).read_bytes()
        assert data.startswith(b"\x89PNG") and len(data) > 10_000


# -- bad plan input: one line naming the field, exit 2 ------------------------------------
@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("run")
    assert main(["tune", str(small_spec(tmp)), "-q"]) == 0
    return tmp / "run"


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        (["--rate", "0"], "argument --rate: got '0'; must be a number > 0"),
        (["--rate", "-3"], "argument --rate: got '-3'; must be a number > 0"),
        (["--rate", "fast"], "argument --rate: got 'fast'"),
        (["--rate", "nan"], "argument --rate: got 'nan'"),
        (["--rate", "inf"], "argument --rate: got 'inf'"),
        (
            ["--rate", "1e300"],
            "argument --rate: got '1e300'; must be a number of requests/s in (0, 10,000,000]",
        ),
        (["--rate", "1", "--headroom", "20"], "argument --headroom: got '20'; must be a fraction in [0, 10]"),
        (["--rate", "1", "--headroom", "-0.1"], "argument --headroom: got '-0.1'; must be a number >= 0"),
        (
            ["--rate", "1", "--usd-per-gpu-hour", "0"],
            "argument --usd-per-gpu-hour: got '0'; must be a number > 0",
        ),
        ([], "--rate: got None; required: the run's spec has no plan.rate_rps"),
    ],
)
def test_bad_plan_flags(
    extra: list[str], fragment: str, finished_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = finished_run
    capsys.readouterr()
    assert main(["plan", str(run), *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert fragment in err, err


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [
        ({"plan": {}}, "plan.rate_rps: got None; required"),
        ({"plan": {"rate_rps": 0}}, "plan.rate_rps: got 0; must be a number > 0"),
        ({"plan": {"rate_rps": "fast"}}, "plan.rate_rps: got 'fast'"),
        ({"plan": {"rate_rps": 1e12}}, "plan.rate_rps: got 1000000000000.0; must be a number of requests/s"),
        ({"plan": {"rate_rps": 1, "headroom": 20}}, "plan.headroom: got 20; must be a fraction in [0, 10]"),
        ({"plan": {"rate_rps": 1, "headroom": -1}}, "plan.headroom: got -1; must be a number >= 0"),
        ({"plan": {"rate_rps": 1, "export": "yes"}}, "plan.export: got 'yes'; allowed: true, false"),
        ({"plan": {"rate": 1}}, "plan.rate: got 1; unknown key; allowed: rate_rps, headroom, export"),
        ({"plan": [1]}, "plan: got [1]; must be a mapping"),
        ({"hardware": {"usd_per_gpu_hour": 0}}, "hardware.usd_per_gpu_hour: got 0; must be a number > 0"),
        ({"hardware": {"usd_per_gpu_hour": "cheap"}}, "hardware.usd_per_gpu_hour: got 'cheap'"),
    ],
)
def test_bad_plan_spec(
    changes: dict[str, Any], fragment: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["tune", str(small_spec(tmp_path, **changes)), "-q"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert fragment in err, err


def test_plan_block_round_trips_through_the_stored_spec() -> None:
    data = {
        "model": "meta-llama/Llama-3.1-8B",
        "hardware": {"gpu": "H100", "gpus": 2, "usd_per_gpu_hour": 2.5},
        "workload": {"isl": 100, "osl": 10},
        "plan": {"rate_rps": 3.5},
    }
    spec = parse_spec(data)
    assert spec.plan is not None and spec.plan.headroom == 0.2 and not spec.plan.export
    assert parse_spec(spec.to_dict()) == spec


def test_a_plan_without_a_price_shows_gpus_and_no_cost() -> None:
    from rich.console import Console

    from tuner.planning import plan_rows, plan_table

    m = MeasuredPoint(0, _agg(2), _point(tok_s_user=50, output_tok_s_gpu=100, requests_s=2.0, gpus=2))
    plan = plan_deployment(m, role="pick", rate_rps=5.0, headroom=0.0, gpus_per_node=8, usd_per_gpu_hour=None)
    row = plan_rows([plan])[0]
    assert (row["replicas"], row["gpus"], row["nodes"]) == (3, 6, 1)
    assert row["usd_per_hour"] == row["usd_per_mtok_output"] == row["usd_per_mtok_output_at_rate"] == ""
    console = Console(width=100, record=True)
    console.print(plan_table([plan]))
    text = console.export_text()
    assert "no price" in text and "TP2" in text
