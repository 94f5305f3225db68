"""Percentile SLAs, end-to-end limits, goodput and open-loop capacity in the pick and front."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from serving import Deployment, LoadPoint, Parallelism, WorkerGroup
from tuner.cli import main
from tuner.front import pareto_front
from tuner.goodput import goodput, goodput_rps, share_within
from tuner.pick import pick_best
from tuner.results import MeasuredPoint
from tuner.sla import SLA

from .conftest import small_spec

DEP = Deployment("agg", agg=WorkerGroup(Parallelism(tp=1), 1))


def _point(
    ttft: tuple[float, float, float], tpot: tuple[float, float, float] = (10, 12, 14), **extra: float
) -> LoadPoint:
    """A point with these (p50, p90, p99) latencies; E2E = TTFT + 99 TPOT."""
    e2e = tuple(t + 99 * p for t, p in zip(ttft, tpot, strict=True))
    return LoadPoint(**{**_point_fields(ttft, tpot, e2e), **extra})  # type: ignore[arg-type]


def _point_fields(
    ttft: tuple[float, ...], tpot: tuple[float, ...], e2e: tuple[float, ...]
) -> dict[str, float]:
    out: dict[str, float] = {"concurrency": 8, "gpus": 1, "tok_s_user": 1000 / tpot[0], "tok_s_gpu": 1000.0}
    out.update(output_tok_s_gpu=100.0, requests_s=2.0, num_requests=80)
    for name, values in (("ttft_ms", ttft), ("tpot_ms", tpot), ("e2e_ms", e2e), ("itl_ms", tpot)):
        out.update({f"{name}_p{p}": v for p, v in zip((50, 90, 99), values, strict=True)})
    return out


def test_share_within_reads_the_known_quantiles_and_is_monotone() -> None:
    p = _point((100, 200, 400))
    assert share_within(p, "ttft_ms", 100) == pytest.approx(0.5)
    assert share_within(p, "ttft_ms", 200) == pytest.approx(0.9)
    assert share_within(p, "ttft_ms", 400) == pytest.approx(0.99)
    shares = [share_within(p, "ttft_ms", x) for x in range(0, 2000, 10)]
    assert shares == sorted(shares) and shares[0] == 0.0 and 0.9999 < shares[-1] <= 1.0
    flat = _point((100, 100, 100))  # no spread: all or nothing
    assert share_within(flat, "ttft_ms", 99.9) == 0.0 and share_within(flat, "ttft_ms", 100) == 1.0


def test_goodput_combines_limits_and_is_zero_past_capacity() -> None:
    p = _point((100, 200, 400))
    assert goodput(p, SLA()) == 1.0  # no latency limit
    assert goodput(p, SLA(max_ttft_ms=200)) == pytest.approx(0.9)
    both = goodput(p, SLA(max_ttft_ms=200, max_tpot_ms=12))
    assert both == pytest.approx(0.81)  # independent TTFT and TPOT
    assert goodput_rps(p, SLA(max_ttft_ms=200)) == pytest.approx(1.8)
    over = _point((100, 200, 400), request_rate_rps=9.0, utilization=1.2)
    assert goodput(over, SLA(max_ttft_ms=1e9)) == 0.0


def test_min_goodput_and_e2e_limits_name_themselves() -> None:
    p = _point((100, 200, 400))
    assert SLA(max_ttft_ms=200, min_goodput=0.9).meets(p)
    assert set(SLA(max_ttft_ms=200, min_goodput=0.99).check(p)) == {"min_goodput"}
    assert set(SLA(max_e2e_ms=1000, percentile=90).check(p)) == {"max_e2e_ms"}
    assert "E2E p90 <= 1000 ms" in SLA(max_e2e_ms=1000, percentile=90).describe()


def test_a_point_past_capacity_never_meets_and_leaves_the_front() -> None:
    ok = MeasuredPoint(0, DEP, _point((100, 200, 400), request_rate_rps=4.0, utilization=0.9))
    over = MeasuredPoint(1, DEP, _point((100, 200, 400), request_rate_rps=9.0, utilization=1.2))
    over = MeasuredPoint(1, DEP, LoadPoint(**{**over.point.to_dict(), "tok_s_gpu": 5000.0}))
    assert set(SLA().check(over.point)) == {"capacity"}
    assert pick_best([ok, over], SLA()).chosen is ok
    assert pareto_front([ok, over]) == [ok]


OPEN_LOOP = {
    "lengths": {
        "input": {"distribution": "lognormal", "mean": 1000, "std": 700, "min": 32, "max": 8000},
        "output": {"distribution": "lognormal", "mean": 250, "std": 150, "min": 8, "max": 2000},
    },
    "request_rates": [1, 2, 4, 6, 8, 10, 12, 14, 16, 20, 24, 32],
}


def _replace_workload(spec: Path, workload: dict[str, object]) -> None:
    data = yaml.safe_load(spec.read_text())
    data["workload"] = workload
    spec.write_text(yaml.safe_dump(data))


def _tok_s_gpu(run: Path) -> float:
    return float(yaml.safe_load((run / "pick.yaml").read_text())["operating_point"]["tok_s_gpu"])


@pytest.mark.parametrize("workload", [None, OPEN_LOOP], ids=["closed-loop", "open-loop"])
def test_p99_sla_picks_no_better_than_p50(tmp_path: Path, workload: dict[str, object] | None) -> None:
    """The same limits at p99 can only remove points: its pick is no better (tok/s/GPU), and
    with a TTFT limit the queue tail binds, strictly worse here."""
    # Plain picks (confidence 0.5: no margin), so the percentile alone moves the pick.
    spec = small_spec(tmp_path, sla={"max_ttft_ms": 300, "max_tpot_ms": 20, "confidence": 0.5})
    if workload is not None:
        _replace_workload(spec, workload)
    run = tmp_path / "run"
    assert main(["tune", str(spec), "-q"]) == 0
    p50 = _tok_s_gpu(run)
    assert main(["pick", str(run), "--percentile", "99", "--out", str(tmp_path / "p99")]) == 0
    p99 = _tok_s_gpu(tmp_path / "p99")
    assert p99 < p50
    chosen = yaml.safe_load((tmp_path / "p99" / "pick.yaml").read_text())["operating_point"]
    assert chosen["ttft_ms_p99"] <= 300 and chosen["tpot_ms_p99"] <= 20
    front = (run / "front.csv").read_text().splitlines()[0].split(",")
    assert front[front.index("goodput") + 1] == "goodput_rps"


def test_impossible_sla_names_the_limit_that_failed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = small_spec(tmp_path / "a", workload={"request_rates": [1000, 2000]}, sla={"max_e2e_ms": 1e9})
    assert main(["tune", str(spec), "-q"]) == 1
    failed = capsys.readouterr().err.split("no point meets ", 1)[1]
    assert "capacity" in [limit.strip() for limit in failed.splitlines()[0].split(",")]
    spec = small_spec(tmp_path / "b", sla={"max_e2e_ms": 5, "percentile": 99})
    assert main(["tune", str(spec), "-q"]) == 1
    assert "no point meets max_e2e_ms" in capsys.readouterr().err
    run = str(tmp_path / "b" / "run")
    assert main(["pick", run, "--max-e2e-ms", "1e9", "--max-ttft-ms", "1", "--min-goodput", "0.99"]) == 1
    err = capsys.readouterr().err
    assert "goodput >= 0.99" in err and "no point meets" in err
