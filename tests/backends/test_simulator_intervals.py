"""Calibrated intervals of simulator points (backends/simulator/intervals.py) and their
out-of-fold coverage on the calibration file's grouped cross-validation."""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import pytest

from backends.simulator import SimulatorBackend
from backends.simulator.intervals import METRICS, PointContext, load_intervals
from serving import Deployment, Parallelism, Problem, WorkerGroup, Workload, load_gpu, load_model

ROOT = Path(__file__).resolve().parents[2]


def _points(model: str = "Llama-3.1-8B", gpu: str = "h100", ladder: tuple[int, ...] = (1, 16, 256)) -> list:
    problem = Problem(
        load_model(model),
        load_gpu(gpu),
        "bf16",
        Workload(isl=1024, osl=256, concurrency=ladder),
        gpus=1,
        gpus_per_node=8,
    )
    dep = Deployment("agg", agg=WorkerGroup(Parallelism(tp=1)))
    return SimulatorBackend(engine="vllm").measure(dep, problem)


def test_every_point_carries_an_interval_around_its_prediction() -> None:
    for p in _points():
        assert p.ttft_ms_low < p.ttft_ms_high and p.tpot_ms_low < p.tpot_ms_high
        assert p.tok_s_gpu_low < p.tok_s_gpu_high
        # The 80% interval brackets the prediction (residual medians are near 0).
        assert p.tpot_ms_low < p.tpot_ms_p50 < p.tpot_ms_high


def _ctx(**changes: object) -> PointContext:
    base = PointContext(engine="trtllm", generation="hopper", hardware="h100_sxm", precision="fp8",
                        model="Llama-3.1-70B", family="dense", mode="agg", isl=1024, osl=1024,
                        c_rank=16.0, load_ratio=0.2)  # fmt: skip
    return replace(base, **changes)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "change",
    [
        {"engine": "an-engine-never-calibrated"},
        {"hardware": "a-gpu-never-calibrated"},
        {"model": "a-model-never-calibrated", "family": "moe-swa"},
        {"isl": 128000},
        {"load_ratio": 4.0},
    ],
)
def test_extrapolation_never_narrows_the_interval(change: dict[str, object]) -> None:
    model = load_intervals()
    assert model is not None
    for metric in METRICS:
        width = [model.bounds(metric, 100.0, model.features(c)) for c in (_ctx(), _ctx(**change))]
        assert width[1][1] / width[1][0] >= width[0][1] / width[0][0]
    wider = any(
        model.scale(m, model.features(_ctx(**change))) > model.scale(m, model.features(_ctx())) * 1.01
        for m in METRICS
    )
    assert wider, f"{change} widens no metric"


def _calibration() -> Path | None:
    for p in Path(__file__).resolve().parents:
        if (p / "shared" / "fidelity" / "calibration.csv").is_file():
            return p / "shared" / "fidelity" / "calibration.csv"
    return None


#: Coverage (%) of the nominal 80% interval per (slice, metric), pooled over the four CV
#: schemes, that the calibration reaches: (low, high). Cells in the 75-85% target assert it;
#: the others (issue 14's target missed, said in docs/fidelity.md) assert what is achieved,
#: a regression guard a few points around today's figure, never a widened target.
TARGET = (75.0, 85.0)
ACHIEVED: dict[tuple[str, str], tuple[float, float]] = {
    ("engine=sglang", "ttft_ms"): (53.0, 85.0),  # 56%: an engine fitted on one model per GPU
    ("engine=sglang", "tpot_ms"): (62.0, 85.0),  # 65%
    ("engine=trtllm", "ttft_ms"): (70.0, 85.0),  # 73%
    ("engine=vllm", "ttft_ms"): (75.0, 91.0),  # 88%: vLLM is unseen whenever H100 is held out
    ("engine=vllm", "tok_s_gpu"): (75.0, 93.0),  # 90%
    ("generation=blackwell", "ttft_ms"): (63.0, 85.0),  # 66%
}


def test_out_of_fold_coverage_per_generation_and_engine() -> None:
    """On the grouped CV folds (one GPU type, model, engine, whole sweeps held out), the
    nominal 80% interval, refitted without the held-out group's residuals, holds 75-85% of
    the held-out values of every GPU generation and engine with 100+ pairs, pooled over the
    schemes, or at least what the calibration reaches there (ACHIEVED)."""
    path = _calibration()
    if path is None:
        pytest.skip("shared/fidelity/calibration.csv not found")
    sys.path.insert(0, str(ROOT / "benchmarks" / "fidelity"))
    from fit import load_rows
    from fit_intervals import FIT_SCHEMES, build_records, oof_bounds
    from holdout import OOS_CACHE, _read_cache, fingerprint
    from trust import MIN_PAIRS, coverage_counts

    rows = load_rows(path)
    oos = _read_cache(OOS_CACHE, fingerprint(path, rows))
    if oos is None:
        pytest.skip("docs/fidelity/oos_predictions.csv is stale: run python benchmarks/fidelity/report.py")
    records, _, _ = build_records(rows, oos)
    pooled = [r for r in records if r.scheme in FIT_SCHEMES]
    counts = coverage_counts(pooled, {s: oof_bounds(records, s) for s in FIT_SCHEMES})
    checked = 0
    for key, per_metric in counts.items():
        if key == "all":
            continue
        for metric, hits in per_metric.items():
            if len(hits) < MIN_PAIRS:
                continue
            share = 100 * sum(hits) / len(hits)
            low, high = ACHIEVED.get((key, metric), TARGET)
            assert low <= share <= high, (key, metric, round(share, 1))
            checked += 1
    assert checked >= 12  # two generations and three engines, three metrics each (sglang included)
