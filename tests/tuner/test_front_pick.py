"""The front and the SLA pick: pure functions over load points."""

from __future__ import annotations

import pytest

from serving import Deployment, LoadPoint, Parallelism, WorkerGroup
from tuner.errors import NoFeasiblePick
from tuner.front import pareto_front
from tuner.pick import closest_points, pick_best
from tuner.results import MeasuredPoint
from tuner.sla import SLA


def agg(tp: int, count: int = 1) -> Deployment:
    return Deployment("agg", agg=WorkerGroup(Parallelism(tp=tp), count))


def disagg(p_dp: int, d_dp: int, p_count: int = 1) -> Deployment:
    return Deployment(
        "disagg",
        prefill=WorkerGroup(Parallelism(dp=p_dp, ep=p_dp), p_count),
        decode=WorkerGroup(Parallelism(dp=d_dp, ep=d_dp)),
    )


def point(
    dep: Deployment, user: float, gpu: float, ttft: float = 100.0, trial: int = 0, conc: int = 1
) -> MeasuredPoint:
    lp = LoadPoint(
        concurrency=conc,
        gpus=dep.gpus(),
        ttft_ms_p50=ttft,
        ttft_ms_p90=ttft * 1.5,
        ttft_ms_p99=ttft * 2,
        tpot_ms_p50=1000 / user,
        tpot_ms_p90=1100 / user,
        tpot_ms_p99=1200 / user,
        tok_s_user=user,
        tok_s_gpu=gpu,
        output_tok_s_gpu=gpu / 2,
        requests_s=1.0,
    )
    return MeasuredPoint(trial, dep, lp)


def test_front_excludes_dominated_points() -> None:
    a = point(agg(8), user=100, gpu=500)
    b = point(agg(4), user=50, gpu=1500)
    dominated = point(agg(2), user=40, gpu=1400)  # b is better on both axes
    c = point(agg(1), user=10, gpu=3000)
    front = pareto_front([a, dominated, b, c])
    assert front == [c, b, a]  # sorted by interactivity ascending
    assert dominated not in front


def test_front_keeps_equal_user_only_best() -> None:
    a = point(agg(8), user=100, gpu=500)
    b = point(agg(4), user=100, gpu=600)
    assert pareto_front([a, b]) == [b]


def test_disagg_gpu_count_is_prefill_plus_decode() -> None:
    dep = disagg(4, 8)
    assert dep.gpus() == 12
    assert dep.label() == "1xDEP4+1xDEP8"
    assert disagg(2, 8, p_count=2).gpus() == 12
    assert disagg(2, 8, p_count=2).label() == "2xDEP2+1xDEP8"


def test_pick_highest_throughput_meeting_sla() -> None:
    sla = SLA(min_tok_s_user=30, max_ttft_ms=2000)
    fast_slow_ttft = point(agg(1), user=35, gpu=3000, ttft=2500)  # fails TTFT
    too_slow = point(agg(2), user=20, gpu=4000)  # fails interactivity
    good = point(agg(4), user=40, gpu=2000, ttft=800)
    ok = point(agg(8), user=90, gpu=900, ttft=300)
    result = pick_best([fast_slow_ttft, too_slow, good, ok], sla)
    assert result.chosen is good
    assert result.eligible == 2 and result.total == 4


def test_pick_uses_sla_percentile() -> None:
    p = point(agg(4), user=40, gpu=2000, ttft=1000)  # p90 = 1500
    assert pick_best([p], SLA(max_ttft_ms=1200, percentile=50)).chosen is p
    with pytest.raises(NoFeasiblePick):
        pick_best([p], SLA(max_ttft_ms=1200, percentile=90))


def test_tie_break_fewer_gpus_then_lower_ttft() -> None:
    sla = SLA(min_tok_s_user=10)
    big = point(agg(8), user=50, gpu=1000.0, ttft=100)
    small_slow = point(agg(2), user=50, gpu=999.0, ttft=900)  # within 0.5%: tied
    small_fast = point(agg(1, count=2), user=50, gpu=998.0, ttft=200)
    assert pick_best([big, small_slow, small_fast], sla).chosen is small_fast
    clearly_better = point(agg(8), user=50, gpu=1100.0, ttft=100)
    assert pick_best([big, small_slow, clearly_better], sla).chosen is clearly_better


def test_impossible_sla_names_constraint_and_shows_closest() -> None:
    sla = SLA(min_tok_s_user=500)
    pts = [
        point(agg(8), user=100, gpu=500),
        point(agg(4), user=300, gpu=200),
        point(agg(1), user=10, gpu=3000),
    ]
    with pytest.raises(NoFeasiblePick, match="min_tok_s_user"):
        pick_best(pts, sla)
    assert closest_points(pts, sla, n=1)[0].point.tok_s_user == 300


def test_no_points_at_all() -> None:
    with pytest.raises(NoFeasiblePick, match="no load point"):
        pick_best([], SLA(min_tok_s_user=1))
