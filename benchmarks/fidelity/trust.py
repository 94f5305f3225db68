"""Sections of docs/fidelity.md on trust: interval coverage, the set-aside block, decision quality.

Everything here is computed from the cached out-of-sample predictions (``holdout.py``) and the
interval model fitted on them (``fit_intervals.py``), never from hand-set widths.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from statistics import NormalDist

from decisions import Decisions, decide, groups
from fit_intervals import FIT_SCHEMES, Record, oof_bounds
from holdout import OOS, SCHEME_TITLES, generation, is_set_aside

from backends.simulator.intervals import METRICS, IntervalModel
from tuner.confidence import DEFAULT_CONFIDENCE
from tuner.validate import Prediction, positive_float

__all__ = ["MIN_PAIRS", "coverage_counts", "coverage_section", "decision_section"]

TITLES = {"ttft_ms": "TTFT", "tpot_ms": "TPOT", "tok_s_gpu": "tok/s/GPU"}
Bounds = Mapping[str, Mapping[str, tuple[float, float, float]]]


def _slices(rec: Record) -> list[str]:
    return [
        "all",
        f"generation={generation(rec.row['hardware'])}",
        f"engine={rec.row.get('backend') or 'vllm'}",
    ]


#: Held-out pairs a slice needs before its coverage counts against the 75-85% target.
MIN_PAIRS = 100


def coverage_counts(
    records: Sequence[Record], bounds: Mapping[str, Bounds]
) -> dict[str, dict[str, list[int]]]:
    """slice -> metric -> hits (1 inside the interval, 0 outside) over ``records``, each
    scored with the bounds of its own scheme (``bounds[scheme][point_id]``)."""
    counts: dict[str, dict[str, list[int]]] = {}
    for rec in records:
        for metric in rec.z:
            lo, hi, _ = bounds[rec.scheme][rec.point_id][metric]
            inside = lo <= positive_float(rec.row[metric]) <= hi
            for key in _slices(rec):
                counts.setdefault(key, {}).setdefault(metric, []).append(int(inside))
    return counts


def _coverage_rows(records: Sequence[Record], bounds: Mapping[str, Bounds], scheme: str) -> list[str]:
    counts = coverage_counts(records, bounds)
    lines = []
    for key in sorted(counts, key=lambda k: (k != "all", k)):
        cells = []
        for metric in METRICS:
            hits = counts[key].get(metric, [])
            ok = hits and 75.0 <= 100 * sum(hits) / len(hits) <= 85.0
            cells.append(
                f"{100 * sum(hits) / len(hits):.0f}%{'' if ok else ' ✗'} ({len(hits)})" if hits else "-"
            )
        title = SCHEME_TITLES.get(scheme, scheme)
        lines.append(f"| {title} | {key} | " + " | ".join(cells) + " |")
    return lines


def coverage_section(
    records: Sequence[Record], *, set_aside: bool, set_aside_bounds: Bounds | None
) -> tuple[str, dict[str, Bounds]]:
    """The coverage table and every scheme's out-of-fold bounds (for the decision playback)."""
    all_bounds: dict[str, Bounds] = {}
    lines = ["| scheme | slice | " + " | ".join(TITLES[m] for m in METRICS) + " |", "|---|---|---|---|---|"]
    for scheme in FIT_SCHEMES:
        all_bounds[scheme] = oof_bounds(records, scheme)
        lines += _coverage_rows([r for r in records if r.scheme == scheme], all_bounds, scheme)
    pooled = [r for r in records if r.scheme in FIT_SCHEMES]
    lines += _coverage_rows(pooled, all_bounds, "all four CV schemes pooled")
    if set_aside and set_aside_bounds is not None:
        all_bounds["set-aside"] = set_aside_bounds
        block = [r for r in records if r.scheme == "set-aside"]
        lines += _coverage_rows(block, all_bounds, "set-aside")
        text = _verdict(coverage_counts(pooled, all_bounds), "Pooled over the four CV schemes")
        text += "\n\n" + _verdict(coverage_counts(block, all_bounds), "Set-aside block, scored once")
        return "\n".join(lines) + "\n\n" + text, all_bounds
    return "\n".join(lines) + "\n\n" + _verdict(coverage_counts(pooled, all_bounds)), all_bounds


def _verdict(
    counts: Mapping[str, Mapping[str, list[int]]], where: str = "Pooled over the four CV schemes"
) -> str:
    """Which GPU generations and engines (>= MIN_PAIRS pairs) meet the 75-85% target, and
    which miss it."""
    met, missed = [], []
    for key in sorted(k for k in counts if k != "all"):
        for metric in METRICS:
            hits = counts[key].get(metric, [])
            if len(hits) < MIN_PAIRS:
                continue
            share = 100 * sum(hits) / len(hits)
            cell = f"{key} {TITLES[metric]} {share:.0f}%"
            (met if 75.0 <= share <= 85.0 else missed).append(cell)
    text = f"{where}, per GPU generation and engine ({MIN_PAIRS}+ pairs): "
    text += f"target met in {len(met)} of {len(met) + len(missed)} cells"
    return text + (f"; **missed**: {', '.join(missed)}." if missed else ".")


def set_aside_bounds(records: Sequence[Record], model: IntervalModel, *, confidence: float = 0.9) -> Bounds:
    """Bounds of the set-aside rows from the model fitted on every other row's residuals."""
    out: dict[str, dict[str, tuple[float, float, float]]] = {}
    for r in records:
        if r.scheme != "set-aside":
            continue
        out[r.point_id] = {}
        for m in r.pred:
            lo, hi = model.bounds(m, r.pred[m], r.x)
            tail = confidence if m != "tok_s_gpu" else 1 - confidence
            out[r.point_id][m] = (lo, hi, r.pred[m] * math.exp(model.scale(m, r.x) * model.quantile(m, tail)))
    return out


def _predictor(
    preds: Mapping[str, Prediction], bounds: Bounds | None, level: float = DEFAULT_CONFIDENCE
) -> Callable[[Mapping[str, str]], tuple[float, float] | None]:
    """The values a pick sees: plain (``bounds`` None), or robust at ``level`` as
    ``tuner.confidence.pessimistic`` makes it: tok/s/user from the TPOT bound scaled to the
    level (``(bound / p) ** (z(level) / z(0.9))``), tok/s/GPU ranked at its central estimate."""
    power = NormalDist().inv_cdf(level) / NormalDist().inv_cdf(0.9)

    def predict(row: Mapping[str, str]) -> tuple[float, float] | None:
        pred = preds.get(row["point_id"])
        if pred is None or pred.status != "ok":
            return None
        user, gpu = pred.values.get("pred_tok_s_user", math.nan), pred.values.get("pred_tok_s_gpu", math.nan)
        if bounds is not None:
            b = bounds.get(row["point_id"], {}).get("tpot_ms")
            tpot = pred.values.get("pred_tpot_ms", math.nan)
            if b is None or not tpot > 0:
                return None
            user = 1000.0 / (tpot * (b[2] / tpot) ** power)
        return (user, gpu) if math.isfinite(user) and math.isfinite(gpu) else None

    return predict


def decision_section(
    rows: Sequence[Mapping[str, str]],
    *,
    in_sample: Mapping[str, Prediction],
    in_sample_bounds: Bounds,
    oos: OOS,
    bounds: Mapping[str, Bounds],
    aic: Mapping[str, Prediction] | None,
    set_aside: bool,
) -> str:
    """Median regret, share within 2% and SLA-miss rate per evaluation, plain and robust."""
    inside = [r for r in rows if not is_set_aside(r)]
    table = [
        "| evaluation | rows | pick | median regret | within 2% | SLA-miss rate | picks |",
        "|---|---|---|---|---|---|---|",
    ]

    def add(
        label: str,
        subset: Sequence[Mapping[str, str]],
        preds: Mapping[str, Prediction],
        b: Bounds | None,
        what: str,
        level: float = DEFAULT_CONFIDENCE,
    ) -> None:
        result: Decisions = decide(groups(subset), _predictor(preds, b, level))
        table.append(
            f"| {label} | {what} | {f'robust ({level:g})' if b is not None else 'plain'} | "
            + " | ".join(result.cells())
            + " |"
        )

    add("in-sample", inside, in_sample, None, "all")
    add("in-sample", inside, in_sample, in_sample_bounds, "all")
    for scheme in FIT_SCHEMES:
        preds = {pid: p for pid, (_, p) in oos.get(scheme, {}).items()}
        add(SCHEME_TITLES[scheme], inside, preds, None, "all")
        add(SCHEME_TITLES[scheme], inside, preds, bounds[scheme], "all", 0.9)
        add(SCHEME_TITLES[scheme], inside, preds, bounds[scheme], "all")
    if aic is not None:
        both = [
            r
            for r in inside
            if aic.get(r["point_id"], Prediction("", "")).status == "ok"
            and in_sample[r["point_id"]].status == "ok"
        ]
        add("AIConfigurator 0.12", both, aic, None, "both price")
        add("in-sample", both, in_sample, None, "both price")
        add("in-sample", both, in_sample, in_sample_bounds, "both price")
        for scheme in FIT_SCHEMES[:3]:
            preds = {pid: p for pid, (_, p) in oos.get(scheme, {}).items()}
            add(SCHEME_TITLES[scheme], both, preds, bounds[scheme], "both price")
    if set_aside:
        block = [r for r in rows if is_set_aside(r)]
        preds = {pid: p for pid, (_, p) in oos.get("set-aside", {}).items()}
        add(SCHEME_TITLES["set-aside"], block, preds, None, "block")
        add(SCHEME_TITLES["set-aside"], block, preds, bounds["set-aside"], "block", 0.9)
        add(SCHEME_TITLES["set-aside"], block, preds, bounds["set-aside"], "block")
    return "\n".join(table)
