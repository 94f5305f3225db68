"""Fit the simulator's 80% intervals on out-of-sample residuals -> backends/simulator/intervals.yaml.

Residuals: ``z = log(measured / predicted)`` of TTFT, TPOT and tok/s/GPU for every load-point
row outside the set-aside block (``holdout.py``), predicted by constants fitted without the
row's fold, pooled over the four schemes (leave one GPU, model, engine out; whole sweeps out).
Each residual's features (``backends/simulator/intervals.py``) are computed against the rows
its constants were fitted on, so a row held out with its whole engine family shows the
residual of an unseen engine. Per metric the scale ``log s = b . x + g_engine + g_generation``
is backfitted: ``b`` a least-squares fit of ``log(|z| + 0.01)`` less the group factors
(non-negative extrapolation coefficients, a light ridge); each group factor the one that
calibrates its residuals' coverage (unseen groups: rows whose whole group was left out;
shrinkage and support mixing with ``K = intervals.SHRINK``); ``Q`` the empirical quantile
table of ``z / s``. The written file carries the support counts and ranges
of the whole calibration file (what the packaged constants were fitted on).

``oof_bounds`` gives the out-of-fold version the report scores: for a held-out group, the
interval model is refitted without any residual of that group's rows.

    python benchmarks/fidelity/fit_intervals.py [--csv ../shared/fidelity/calibration.csv]
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import yaml  # noqa: E402
from fit import DEFAULT_CSV, Case, load_cases, load_rows  # noqa: E402
from holdout import OOS, SCHEMES, fold_value, is_set_aside, oos_predictions  # noqa: E402

from backends.simulator import load_constants  # noqa: E402
from backends.simulator.costs import WorkerCost  # noqa: E402
from backends.simulator.intervals import (  # noqa: E402
    FEATURES,
    GROUPS,
    INTERVALS_FILE,
    LEVEL,
    METRICS,
    MONOTONE,
    SHRINK,
    SUPPORT,
    UNSEEN,
    IntervalModel,
    PointContext,
    load_ratio,
)
from tuner.validate import positive_float  # noqa: E402

__all__ = ["FIT_SCHEMES", "Record", "build_records", "fit_model", "oof_bounds", "support_of"]

logger = logging.getLogger("fit_intervals")

#: Schemes whose residuals train the interval model.
FIT_SCHEMES = (*SCHEMES, "sweep")
#: Probabilities of the stored quantile table (a robust pick interpolates in it).
GRID = (0.01, 0.02, *(round(0.05 * k, 2) for k in range(1, 20)), 0.98, 0.99)
#: Ridge weight per coefficient (about a few rows' worth against ~4000 residuals).
RIDGE = 3.0
#: Floor of |z| in the scale regression: 1% error, below the data's own noise.
FLOOR = 0.01
#: Backfitting rounds of the scale regression and the group factors.
ROUNDS = 3


@dataclass(frozen=True)
class Record:
    """One out-of-sample prediction of one row under one scheme, with its features."""

    point_id: str
    scheme: str
    fold: str
    row: Mapping[str, str]
    ctx: PointContext
    x: Mapping[str, float]
    z: Mapping[str, float]
    pred: Mapping[str, float]


def context(case: Case) -> PointContext:
    """The interval context of a calibration row at its own concurrency."""
    dep, problem, engine = case.case  # type: ignore[misc]
    group = dep.agg if dep.mode == "agg" else dep.decode
    cost = WorkerCost(group, problem, _CONSTS, engine=engine)
    conc = problem.workload.concurrency[-1]
    c_rank, ratio = load_ratio(cost, group, problem.workload, conc)
    return PointContext.of(problem, dep, engine=engine, c_rank=c_rank, ratio=ratio)


_CONSTS = load_constants(None)


def support_of(
    contexts: Sequence[PointContext], rows: Sequence[Mapping[str, str]]
) -> tuple[dict[str, dict[str, int]], dict[str, tuple[float, float]]]:
    """Support counts per category and calibrated ranges of lengths and per-rank load."""
    support = {name: dict(Counter(getattr(c, name) for c in contexts)) for name in SUPPORT}
    loads = [c for c, r in zip(contexts, rows, strict=True) if r["kind"] == "load_point"]
    ranges = {
        k: (min(getattr(c, k) for c in loads), max(getattr(c, k) for c in loads))
        for k in ("isl", "osl", "c_rank")
    }
    return support, ranges


def _model(
    support: Mapping[str, Mapping[str, int]], ranges: Mapping[str, tuple[float, float]]
) -> IntervalModel:
    return IntervalModel(support=support, ranges=ranges, coefficients={}, quantiles={})


def build_records(
    rows: Sequence[Mapping[str, str]], oos: OOS
) -> tuple[list[Record], list[Case], dict[str, PointContext]]:
    """Every scheme's out-of-sample records (set-aside ones under scheme ``set-aside``)."""
    cases = [c for c in load_cases(rows) if (c.row.get("spec_decode") or "none") == "none"]
    ctxs = {c.row["point_id"]: context(c) for c in cases}
    inside = [c for c in cases if not is_set_aside(c.row)]
    records: list[Record] = []
    for scheme in (*FIT_SCHEMES, "set-aside"):
        if scheme == "set-aside":
            groups = {"vllm@blackwell": ([c for c in cases if is_set_aside(c.row)], inside)}
        else:
            groups = {}
            for value in sorted({fold_value(c.row, scheme) for c in inside}):
                held = [c for c in inside if fold_value(c.row, scheme) == value]
                groups[value] = (held, [c for c in inside if fold_value(c.row, scheme) != value])
        for value, (held, train) in groups.items():
            model = _model(*support_of([ctxs[c.row["point_id"]] for c in train], [c.row for c in train]))
            for case in held:
                rec = _record(case, scheme, value, oos, ctxs, model)
                if rec is not None:
                    records.append(rec)
    return records, cases, ctxs


def _record(
    case: Case, scheme: str, value: str, oos: OOS, ctxs: Mapping[str, PointContext], model: IntervalModel
) -> Record | None:
    pid, row = case.row["point_id"], case.row
    if row["kind"] != "load_point" or pid not in oos.get(scheme, {}):
        return None
    _, pred = oos[scheme][pid]
    if pred.status != "ok":
        return None
    z, p = {}, {}
    for metric in METRICS:
        m, v = positive_float(row.get(metric)), pred.values.get(f"pred_{metric}", math.nan)
        if math.isfinite(m) and math.isfinite(v) and v > 0:
            z[metric], p[metric] = math.log(m / v), v
    ctx = ctxs[pid]
    return Record(pid, scheme, value, row, ctx, model.features(ctx), z, p)


def fit_model(
    records: Sequence[Record],
    support: Mapping[str, Mapping[str, int]],
    ranges: Mapping[str, tuple[float, float]],
    *,
    shrink: float = SHRINK,
) -> IntervalModel:
    """Scale coefficients, group factors and standardised quantiles per metric from ``records``.

    Backfitting, :data:`ROUNDS` rounds: the scale regression ``log(|z| + FLOOR) ~ b . x`` on
    the residuals divided by the current group factors, then each dimension's factors given
    the regression and the other dimension (:func:`_group_factors`)."""
    from scipy.optimize import lsq_linear  # the `fit` extra

    coefficients, quantiles, groups = {}, {}, {}
    k = len(FEATURES)
    lo = np.array([0.0 if f in MONOTONE else -np.inf for f in FEATURES])
    probe = IntervalModel(support={}, ranges={}, coefficients={}, quantiles={}, shrink=shrink)
    for metric in METRICS:
        use = [r for r in records if metric in r.z]
        x = np.array([[r.x[f] for f in FEATURES] for r in use])
        absz = np.abs([r.z[metric] for r in use])
        ridge = math.sqrt(RIDGE) * np.eye(k)[1:]
        a = np.vstack([x, ridge])
        tables: dict[str, dict[str, float]] = {}
        lf = {d: np.zeros(len(use)) for d in GROUPS}
        for _ in range(ROUNDS):
            y = np.log(absz + FLOOR) - sum(lf.values())
            coef = lsq_linear(a, np.concatenate([y, np.zeros(k - 1)]), bounds=(lo, np.full(k, np.inf))).x
            base = np.exp(x @ coef)
            for dim in GROUPS:
                other = sum(v for d, v in lf.items() if d != dim)
                signed = np.array([r.z[metric] for r in use]) / (base * np.exp(other))
                tables[dim] = _group_factors(use, signed, dim, shrink)
                model = replace(probe, groups={metric: {dim: tables[dim]}})
                lf[dim] = np.array([model.group_log_factor(metric, dim, r.x) for r in use])
        u = np.array([r.z[metric] for r in use]) / (base * np.exp(sum(lf.values())))
        coefficients[metric] = {f: float(c) for f, c in zip(FEATURES, coef, strict=True)}
        quantiles[metric] = {p: float(np.quantile(u, p)) for p in GRID}
        groups[metric] = tables
    return IntervalModel(
        support=support,
        ranges=ranges,
        coefficients=coefficients,
        quantiles=quantiles,
        groups=groups,
        shrink=shrink,
    )


def _group_factors(use: Sequence[Record], v: np.ndarray, dim: str, shrink: float) -> dict[str, float]:
    """Log width factors of ``dim``'s groups and of an unseen group, given ``v``: the signed
    residuals over the rest of the scale.

    Each factor is the one whose interval, the pooled central :data:`LEVEL` quantiles of
    ``v`` widened by it, holds a share :data:`LEVEL` of its residuals (its coverage
    calibrated, skew and bias included). Unseen: the residuals of rows whose group had no
    row in the fit that predicted them (the leave-that-group-out width); without any (the
    only GPU generation of its kind held out) the global width, 0. A group's own factor: over
    its seen rows, each widened by its mixed factor (``IntervalModel.group_log_factor``). Both
    are shrunk toward 0 by the residual count, ``m / (m + K)``; the unseen factor is then
    raised to the largest group's, so that less support never narrows an interval."""
    tail = (1.0 - LEVEL) / 2.0
    q_lo, q_hi = float(np.quantile(v, tail)), float(np.quantile(v, 1.0 - tail))
    n = np.array([r.x.get(f"n_{dim}", 0.0) for r in use])
    name = np.array([_group_of(r, dim) for r in use])
    unseen_sel = n <= 0
    unseen = 0.0
    if unseen_sel.any():
        m = int(unseen_sel.sum())
        unseen = m / (m + shrink) * _calibrating(v[unseen_sel], np.zeros(m), 0.0, q_lo, q_hi)
    table: dict[str, float] = {}
    for group in sorted({str(g) for g in name[n > 0]}):
        sel = (name == group) & (n > 0)
        m = int(sel.sum())
        table[group] = m / (m + shrink) * _calibrating(v[sel], n[sel] / (n[sel] + shrink), unseen, q_lo, q_hi)
    table[UNSEEN] = max(unseen, *table.values()) if unseen_sel.any() and table else unseen
    return table


def _calibrating(v: np.ndarray, w: np.ndarray, unseen: float, q_lo: float, q_hi: float) -> float:
    """The log factor ``g`` with which ``v / exp(w g + (1 - w) max(unseen, g))`` has a share
    LEVEL inside ``[q_lo, q_hi]`` (bisection: the share grows with ``g``)."""
    lo_g, hi_g = -4.0, 4.0
    for _ in range(40):
        g = (lo_g + hi_g) / 2.0
        u = v / np.exp(w * g + (1.0 - w) * max(unseen, g))
        if float(np.mean((u >= q_lo) & (u <= q_hi))) < LEVEL:
            lo_g = g
        else:
            hi_g = g
    return (lo_g + hi_g) / 2.0


def _group_of(r: Record, dim: str) -> str:
    prefix = f"{dim}="
    return next((k[len(prefix) :] for k in r.x if k.startswith(prefix)), "")


def oof_bounds(
    records: Sequence[Record], scheme: str, *, confidence: float = 0.9, shrink: float = SHRINK
) -> dict[str, dict[str, tuple[float, float, float]]]:
    """Per point of ``scheme``: per metric (low, high, one-sided pessimistic bound at
    ``confidence``) from an interval model fitted without any residual of the point's fold."""
    train_pool = [r for r in records if r.scheme in FIT_SCHEMES]
    out: dict[str, dict[str, tuple[float, float, float]]] = {}
    mine = [r for r in records if r.scheme == scheme]
    for value in sorted({r.fold for r in mine}):
        held = [r for r in mine if r.fold == value]
        ids = {r.point_id for r in held}
        model = fit_model([r for r in train_pool if r.point_id not in ids], {}, {}, shrink=shrink)
        for r in held:
            out[r.point_id] = {m: _bounds(model, m, r, confidence) for m in r.pred}
    return out


def _bounds(model: IntervalModel, metric: str, r: Record, confidence: float) -> tuple[float, float, float]:
    lo, hi = model.bounds(metric, r.pred[metric], r.x)
    tail = confidence if metric != "tok_s_gpu" else 1.0 - confidence
    s = model.scale(metric, r.x)
    return lo, hi, r.pred[metric] * math.exp(s * model.quantile(metric, tail))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--csv", type=Path, default=DEFAULT_CSV, help="calibration points")
    parser.add_argument("--out", type=Path, default=INTERVALS_FILE)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    rows = load_rows(args.csv)
    records, cases, ctxs = build_records(rows, oos_predictions(rows, args.csv))
    support, ranges = support_of([ctxs[c.row["point_id"]] for c in cases], [c.row for c in cases])
    model = fit_model([r for r in records if r.scheme in FIT_SCHEMES], support, ranges)
    header = (
        "# Written by benchmarks/fidelity/fit_intervals.py from grouped-CV residuals; do not edit.\n"
        "# Read by backends/simulator/intervals.py (the model is described there).\n"
    )
    args.out.write_text(header + yaml.safe_dump(model.to_dict(), sort_keys=False))
    logger.info("wrote %s from %d residual records", args.out, sum(r.scheme in FIT_SCHEMES for r in records))
    return 0


if __name__ == "__main__":
    sys.exit(main())
