"""Regenerate docs/fidelity.md and docs/fidelity/*.png: how close the simulator is to measurements.

Tables (over rows with spec_decode == none, as ``tuner validate`` scores them):

- in-sample: the packaged constants (fitted on the whole calibration file) predict it;
- leave one GPU type out, one model out, one engine out, whole sweeps out: for each held-out
  group, constants refitted from the sourced priors (``priors.yaml``) on the other rows
  predict it, over the rows outside the set-aside block (``holdout.py``, cached);
- the set-aside block (vLLM on Blackwell; seen since an earlier round), and the fresh block
  (one sweep in eight, blind; ``holdout.is_fresh_block``), predicted once.

Then the calibrated 80% intervals' coverage out of fold, and the decision quality of plain
and robust SLA picks (``trust.py``, ``decisions.py``).

Plus a predicted-vs-measured scatter plot per metric, the largest misses with their likely
cause, the time one prediction takes, and NVIDIA AIConfigurator 0.12 scored the same way
(its predictions from ``aic.py``, committed in ``docs/fidelity/aic_predictions.csv``) side by
side with ours on the rows both price.

    python benchmarks/fidelity/report.py [--csv ../shared/fidelity/calibration.csv] [--quick]
        [--aic-predictions docs/fidelity/aic_predictions.csv] [--aic-python /path/to/python]
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from aic_compare import AIC_LABEL, AIC_PREDICTIONS, aic_report, slice_cell  # noqa: E402
from fit import DEFAULT_CSV, FIT, load_rows  # noqa: E402
from fit_intervals import FIT_SCHEMES, build_records, fit_model, support_of  # noqa: E402
from holdout import SCHEME_TITLES, is_fresh_block, is_set_aside, oos_predictions  # noqa: E402
from seed_chart import seed_chart_section  # noqa: E402
from trust import coverage_section, decision_section, set_aside_bounds  # noqa: E402

from backends.simulator import Constants, SimulatorBackend, load_constants  # noqa: E402
from tuner.validate import Prediction, Predictor, Summary, format_summary, summarize  # noqa: E402

logger = logging.getLogger("report")

from fit import PRIORS_YAML as PRIORS  # noqa: E402

DOC = ROOT / "docs" / "fidelity.md"
FIGURES = ROOT / "docs" / "fidelity"
TABLE_METRICS = ("ttft_ms", "tpot_ms", "tok_s_gpu", "output_tok_s_gpu")


def _ladder_timing(consts: Constants) -> float:
    """Microseconds for check + measure of one deployment over an 8-level ladder."""
    from serving import Deployment, Parallelism, Problem, WorkerGroup, Workload, load_gpu, load_model

    backend = SimulatorBackend(engine="vllm")
    backend.constants = consts
    dep = Deployment(mode="agg", agg=WorkerGroup(parallel=Parallelism(tp=1, dp=8, ep=8)))
    workload = Workload(isl=1024, osl=1024, concurrency=(1, 2, 4, 8, 16, 32, 64, 128))
    prob = Problem(load_model("DeepSeek-R1"), load_gpu("h200"), "fp8", workload, gpus=8, gpus_per_node=8)
    n, start = 200, time.perf_counter()
    for _ in range(n):
        backend.check(dep, prob)
        backend.measure(dep, prob)
    return (time.perf_counter() - start) / n * 1e6


def _scatter(rows: Sequence[Mapping[str, str]], preds: Sequence[Prediction], folder: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    names = []
    colors = {
        "aic_silicon": "tab:blue",
        "inferencex": "tab:red",
        "nim": "tab:green",
        "trtllm_perf_overview": "tab:purple",
    }
    for metric in TABLE_METRICS:
        fig, ax = plt.subplots(figsize=(5, 5))
        lo, hi = math.inf, 0.0
        for source, color in colors.items():
            xs, ys = [], []
            for row, pred in zip(rows, preds, strict=True):
                m, p = _num(row.get(metric)), pred.values.get(f"pred_{metric}", math.nan)
                if row.get("source") == source and row.get("spec_decode") == "none" and m > 0 and p > 0:
                    xs.append(m)
                    ys.append(p)
            if xs:
                ax.scatter(xs, ys, s=8, alpha=0.6, color=color, label=f"{source} ({len(xs)})")
                lo, hi = min(lo, *xs, *ys), max(hi, *xs, *ys)
        if hi > 0:
            ax.plot([lo, hi], [lo, hi], "k-", lw=0.8)
            ax.plot([lo, hi], [lo * 1.2, hi * 1.2], "k:", lw=0.6)
            ax.plot([lo, hi], [lo / 1.2, hi / 1.2], "k:", lw=0.6)
        ax.set(xscale="log", yscale="log", xlabel=f"measured {metric}", ylabel=f"predicted {metric}")
        ax.set_title(f"{metric}: predicted vs measured (in-sample)")
        ax.legend(fontsize=7)
        fig.tight_layout()
        name = f"scatter_{metric}.png"
        fig.savefig(folder / name, dpi=110)
        plt.close(fig)
        names.append(name)
    return names


def _num(text: str | None) -> float:
    try:
        return float(text or "nan")
    except ValueError:
        return math.nan


def _config_key(row: Mapping[str, str]) -> tuple[str, ...]:
    cols = ("model", "hardware", "precision", "backend", "mode", "topology", "isl", "osl", "concurrency")
    return tuple(row.get(c, "") for c in cols)


def _cause(
    row: Mapping[str, str], metric: str, ratio: float, twins: Mapping[tuple[str, ...], list[float]]
) -> str:
    """A likely cause for a large miss, from what the row and its twins say."""
    same = twins.get(_config_key(row), [])
    if len(same) > 1 and max(same) / min(same) > 1.3:
        return f"measurement noise: the same configuration measured {min(same):.4g}-{max(same):.4g}"
    if row.get("hardware") == "gb200" and row.get("source") == "aic_silicon":
        return "AIC GB200 Qwen3-32B sweep: TPOT 3-12x above a B200's at the same load (contended runs)"
    if metric == "ttft_ms" and row.get("backend") == "sglang":
        return "SGLang prefill-first phase structure: in-phase share fitted per engine, not per sweep"
    if metric == "ttft_ms" and ratio > 1:
        return "burst model: users assumed in phase, long outputs de-phase them (TTFT overpredicted)"
    if metric == "ttft_ms":
        return "queueing ahead of prefill larger than the burst model (ranks in lockstep, DP balancing)"
    if row.get("model", "").startswith("deepseek") and row.get("mode") == "disagg":
        return "DeepSeek disagg at large scale: EP all-to-all and rate matching across pools"
    return "kernel efficiency of this shape/engine outside the global fractions"


def _misses(rows: Sequence[Mapping[str, str]], preds: Sequence[Prediction], *, top: int = 12) -> str:
    twins: dict[tuple[str, ...], list[float]] = {}
    for row in rows:
        value = _num(row.get("tpot_ms")) or _num(row.get("output_tok_s_gpu"))
        if value > 0:
            twins.setdefault(_config_key(row), []).append(value)
    found = []
    for row, pred in zip(rows, preds, strict=True):
        if row.get("spec_decode") != "none" or pred.status != "ok":
            continue
        for metric in TABLE_METRICS:
            m, p = _num(row.get(metric)), pred.values.get(f"pred_{metric}", math.nan)
            if m > 0 and p > 0:
                found.append((abs(math.log(p / m)), metric, row, p / m))
    found.sort(key=lambda t: -t[0])
    lines = ["| point | config | metric | pred/meas | likely cause |", "|---|---|---|---|---|"]
    for _, metric, row, ratio in found[:top]:
        cfg = (
            f"{row['model'].split('/')[-1]} {row['hardware']} {row['precision']} {row['backend']} "
            f"{row['topology']} {row['isl']}/{row['osl']} c={row['concurrency'] or '-'}"
        )
        lines.append(
            f"| {row['point_id']} | {cfg} | {metric} | x{ratio:.2f} | {_cause(row, metric, ratio, twins)} |"
        )
    return "\n".join(lines)


def _constants_table(
    consts: Constants, prior: Constants, folds: Mapping[str, Mapping[str, Constants]]
) -> str:
    head = "| constant | fitted | prior | range over CV folds |\n|---|---|---|---|"
    if not folds:  # the cached CV predictions keep no per-fold constants
        head = "| constant | fitted | prior |\n|---|---|---|"
    lines = [head]
    for name in FIT:
        if not folds:
            lines.append(f"| {name} | {getattr(consts, name):.4g} | {getattr(prior, name):.4g} |")
            continue
        values = [getattr(c, name) for fold in folds.values() for c in fold.values()]
        spread = f"{min(values):.3g}-{max(values):.3g}" if values else "-"
        lines.append(f"| {name} | {getattr(consts, name):.4g} | {getattr(prior, name):.4g} | {spread} |")
    return "\n".join(lines)


#: Headline columns: (title, slice key, metric).
HEADLINE = (
    ("TTFT", ("all", ""), "ttft_ms"),
    ("TPOT", ("all", ""), "tpot_ms"),
    ("tok/s/GPU", ("all", ""), "tok_s_gpu"),
    ("max-throughput out tok/s/GPU", ("source", "trtllm_perf_overview"), "output_tok_s_gpu"),
    ("InferenceX tok/s/GPU", ("source", "inferencex"), "tok_s_gpu"),
    ("disagg TPOT", ("mode", "disagg"), "tpot_ms"),
)


def _headline(summary_tables: Mapping[str, Summary], aic: Summary | None = None) -> str:
    titles = " | ".join(t for t, _, _ in HEADLINE)
    lines = [f"| evaluation | coverage | {titles} |", "|---|---|" + "---|" * len(HEADLINE)]
    for label, summary in summary_tables.items():
        cells = " | ".join(slice_cell(summary, key, metric, pairs=False) for _, key, metric in HEADLINE)
        lines.append(f"| {label} | {summary.slices[('all', '')].coverage:.1f}% | {cells} |")
    if aic is not None:  # measured by benchmarks/fidelity/aic.py; its cells cover the rows it prices
        cells = " | ".join(slice_cell(aic, key, metric, pairs=False) for _, key, metric in HEADLINE)
        lines.append(f"| {AIC_LABEL} (rows it prices) | {aic.slices[('all', '')].coverage:.1f}% | {cells} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--csv", type=Path, default=DEFAULT_CSV, help="calibration points")
    parser.add_argument("--out", type=Path, default=DOC)
    parser.add_argument("--max-nfev", type=int, default=12, help="function evaluations per CV fit")
    parser.add_argument("--quick", action="store_true", help="skip the cross-validation refits")
    parser.add_argument(
        "--set-aside",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="score the set-aside block (--no-set-aside while developing: it is scored once)",
    )
    parser.add_argument(
        "--aic-predictions",
        type=Path,
        default=AIC_PREDICTIONS,
        help="AIConfigurator's predictions (benchmarks/fidelity/aic.py output) to score side by side",
    )
    parser.add_argument(
        "--aic-python",
        help="a Python with aiconfigurator 0.12: first regenerate --aic-predictions with aic.py under it",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    rows = load_rows(args.csv)
    consts, prior = load_constants(None), load_constants(str(PRIORS))
    start = time.perf_counter()
    predictor = Predictor(constants=consts)
    in_sample = [predictor.predict(r) for r in rows]
    per_row_ms = (time.perf_counter() - start) / len(rows) * 1e3
    summaries: dict[str, Summary] = {"in-sample": summarize(rows, in_sample)}
    all_preds: dict[str, list[Prediction]] = {"in-sample": in_sample}
    folds: dict[str, dict[str, Constants]] = {}
    cv_text: list[str] = []
    trust_text = "_Cross-validation skipped (--quick)._\n"
    if not args.quick:
        oos = oos_predictions(rows, args.csv, max_nfev=args.max_nfev)
        schemes = [*FIT_SCHEMES, "set-aside", "fresh"] if args.set_aside else list(FIT_SCHEMES)
        for scheme in schemes:
            label = SCHEME_TITLES[scheme]
            preds = oos.get(scheme, {})
            full = [
                preds[r["point_id"]][1]
                if r["point_id"] in preds
                else Prediction(r["point_id"], "unsupported: not in this evaluation")
                for r in rows
            ]
            block = scheme == "set-aside"
            keep = is_fresh_block if scheme == "fresh" else is_set_aside if block else _outside_block
            summaries[label] = summarize(rows, full, keep=keep)
            all_preds[label] = full
            where = (
                "the fresh block only (fitted on every other row)"
                if scheme == "fresh"
                else "the set-aside block only"
                if block
                else "rows outside the set-aside block"
            )
            table = format_summary(summaries[label], metrics=TABLE_METRICS)
            cv_text.append(f"### {label[0].upper() + label[1:]}\n\nOver {where}.\n\n{table}\n")
        trust_text = _trust(rows, in_sample, oos, args)
    figures = _scatter(rows, in_sample, FIGURES)
    seed = "\n".join(seed_chart_section(FIGURES, rows, predictor=predictor))  # in-sample constants
    timing = _ladder_timing(consts)
    aic, aic_summary = aic_report(
        rows,
        all_preds,
        HEADLINE,
        metrics=TABLE_METRICS,
        predictions=args.aic_predictions,
        points=args.csv,
        python=args.aic_python,
    )
    doc = _render(
        args=args,
        summaries=summaries,
        cv_text=cv_text,
        figures=figures,
        seed=seed,
        aic=aic,
        aic_summary=aic_summary,
        misses=_misses(rows, in_sample),
        constants=_constants_table(consts, prior, folds),
        timing=(timing, per_row_ms),
        trust=trust_text,
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(doc)
    logger.info("wrote %s and %d figures", args.out, len(figures))
    return 0


def _outside_block(row: Mapping[str, str]) -> bool:
    return not is_set_aside(row)


def _trust(
    rows: Sequence[Mapping[str, str]], in_sample: Sequence[Prediction], oos: dict, args: argparse.Namespace
) -> str:
    """Coverage of the 80% intervals and decision quality (trust.py)."""
    from backends.simulator.intervals import load_intervals

    records, cases, ctxs = build_records(rows, oos)
    support, ranges = support_of([ctxs[c.row["point_id"]] for c in cases], [c.row for c in cases])
    pooled = fit_model([r for r in records if r.scheme in FIT_SCHEMES], support, ranges)
    block = set_aside_bounds(records, pooled) if args.set_aside else None
    coverage, bounds = coverage_section(records, set_aside=args.set_aside, set_aside_bounds=block)
    deployed = load_intervals()
    by_id = {p.point_id: p for p in in_sample}
    in_bounds = {}
    for case in cases:
        pred = by_id[case.row["point_id"]]
        if deployed is None or pred.status != "ok" or "pred_tpot_ms" not in pred.values:
            continue
        x = deployed.features(ctxs[case.row["point_id"]])
        lo, hi = deployed.bounds("tpot_ms", pred.values["pred_tpot_ms"], x)
        in_bounds[case.row["point_id"]] = {"tpot_ms": (lo, hi, hi)}
    aic_path = args.aic_predictions
    aic = None
    if aic_path.is_file():
        from aic_compare import read_predictions

        aic = {p.point_id: p for p in read_predictions(aic_path, rows)}
    decisions = decision_section(
        rows,
        in_sample=by_id,
        in_sample_bounds=in_bounds,
        oos=oos,
        bounds=bounds,
        aic=aic,
        set_aside=args.set_aside,
    )
    return TRUST.format(coverage=coverage, decisions=decisions)


TRUST = """## Error bars: calibrated 80% intervals

Every simulator point carries an 80% interval for TTFT, TPOT and tok/s/GPU
(`ttft_ms_low` .. `ttft_ms_high`, ...): `backends/simulator/intervals.py`, with parameters in
`backends/simulator/intervals.yaml` written by `python benchmarks/fidelity/fit_intervals.py`
from the grouped-CV residuals above (the set-aside block excluded). The width grows with
extrapolation: a GPU, precision, model or model family with few calibration rows, lengths
or per-rank concurrency beyond the calibrated range, load near or past the batch a rank
holds, and disagg. Engine family and GPU generation each carry per-group width factors
fitted by grouped CV: an unseen group's factor from the residuals of rows whose whole engine
(generation) was left out of the fit that predicted them, a calibrated group's own factor
from its rows' residuals, shrunk toward the global width by its residual count (m / (m + K),
K = 30, the one constant, chosen by grouped CV over 30/100/300); a point whose group has n
calibration rows mixes the two with weight n / (n + K), so a group with few rows gets about
the leave-that-group-out width.

Coverage out of fold: for each held-out group the interval model is refitted without any
residual of that group's rows, then the share of the group's measured values inside their
interval is counted (target 75-85%; ✗ marks a cell outside it; pairs in parentheses). The
pooled rows count every scheme's held-out values together, per GPU generation and engine.

{coverage}

## Decision quality: plain and robust picks played back

Measured load points grouped by (model, hardware, precision, engine, isl, osl, source),
groups with at least 3 deployments; SLA thresholds at the 20/40/60/80th percentile of each
group's measured tok/s/user (`benchmarks/fidelity/decisions.py`, the rule of issue 14 part 6).
Plain: predicted tok/s/user >= X. Robust (confidence c): 1000 / the one-sided c TPOT bound
>= X, the bound as `tuner.confidence.pessimistic` makes it from the 80% interval (out of
fold for the cross-validated rows), ranked by the central tok/s/GPU estimate as `tuner pick`
ranks; rows at 0.9 and at the default `sla.confidence` (0.6, chosen by this grouped CV: the
level of 0.5-0.9 whose picks meet both targets in every scheme). Median regret is over the
picks that met X; within 2% and the SLA-miss rate are shares of all picks. Targets (issue
14): robust SLA-miss rate <= 5% cross-validated at a median regret <= 5%.

{decisions}
"""


def _render(
    *,
    args: argparse.Namespace,
    summaries: Mapping[str, Summary],
    cv_text: Sequence[str],
    figures: Sequence[str],
    seed: str,
    aic: str,
    aic_summary: Summary | None,
    misses: str,
    constants: str,
    timing: tuple[float, float],
    trust: str,
) -> str:
    in_sample = summaries["in-sample"]
    plots = "\n".join(f"![{f}](fidelity/{f})" for f in figures)
    cv = "\n".join(cv_text) if cv_text else "_Cross-validation skipped (--quick)._\n"
    return f"""# Simulator fidelity

Generated by `python benchmarks/fidelity/report.py` from `{args.csv.name}` (all rows; scored
over rows with `spec_decode == none`, as `tuner validate` does). Do not edit by hand.

Cells: median absolute % error (share of rows within ±20%); full tables below also give the
median predicted/measured ratio and the number of pairs. Disaggregated rows' output tok/s/GPU
is per decode GPU, the basis the data uses.

## Headline

{_headline(summaries, aic_summary)}

Targets (issue 14, cross-validated, each scheme and the set-aside block): coverage ≥ 95%,
TPOT ≤ 10%, tok/s/GPU ≤ 10%, TTFT ≤ 25%. The cross-validated rows are over the rows outside
the set-aside block; the in-sample row is over every row. AIConfigurator's row is measured:
it priced every row (`benchmarks/fidelity/aic.py`) and is scored on the rows it prices;
compared with ours on the rows both price below ("Side by side").

Speed: one deployment over an 8-level ladder (check + measure, DeepSeek-R1 DEP8) takes
{timing[0]:.0f} µs; `tuner validate` spends {timing[1]:.2f} ms per calibration row.

Which checkpoint fields are priced, and each point's speed-of-light share:
[fidelity/checkpoint-fields.md](fidelity/checkpoint-fields.md).

## How the model works and what was fitted

Per-step GPU time from FLOPs and bytes (`backends/simulator/costs.py`): GEMMs joined
bandwidth and compute regimes with a p-norm roofline and a fixed cost per kernel; decode
attention streams KV; prefill attention is FLOPs at a fitted efficiency; MoE layers read the
experts a step touches, with routing kernels, a per-expert cost, and (with expert parallelism)
a busiest EP rank of routing skew x mean + the multinomial excess sqrt(2 ln(EP) x mean),
which sets its expert compute and its dispatch/combine all-to-all; TP-only MoE computes every
routed token on every GPU, with no skew, and all-reduces; MLA uses its latent KV; fp8/fp4
weights and fp8 KV set bytes and peaks, and block-scaled FP8 checkpoints (the model's
published `weight_block_size`, e.g. DeepSeek-R1 and Qwen3-FP8; Llama FP8 is per-tensor) run
their GEMMs at a fitted share of the FP8 rate; the per-kernel fixed costs timed on an H200
are scaled by one fitted factor (what engines' fusion and CUDA graphs leave of them); host
overhead per step and per running sequence. Agg serving is a fluid model of continuous
batching with chunked prefill: a fitted share of each rank's users stays in phase (their
prompts are prefilled together, in their TTFT), the rest arrive spread out and their prefill
is mixed into decode steps (vLLM, TRT-LLM) or run as prefill-only steps ahead of decode
(SGLang), in the others' TPOT; throughput follows from Little's law over the closed loop,
users = rate x (TTFT + (osl - 1) TPOT), so the three metrics stay consistent; disagg matches
the prefill and decode pool rates and adds the KV transfer. MTP rows use one draft token with
a fitted acceptance rate.

Global constants (`backends/simulator/constants.yaml`) are refitted by `python
benchmarks/fidelity/fit.py --write` (robust Cauchy-loss least squares on log errors, pulled
towards the sourced priors in `benchmarks/fidelity/priors.yaml`): per GPU generation
(Hopper, Blackwell) HBM and GEMM fractions of peak, per engine family (TRT-LLM, SGLang,
vLLM) kernel speed, step overhead, request overhead and in-phase (burst) share; the FP4 and
block-FP8 GEMM shares, the per-kernel fixed-cost factor, the MoE skew and per-expert cost,
the per-sequence host cost, the cross-node collective latency, the MTP acceptance. No
per-point, per-model or per-configuration term exists.

{constants}

## In-sample

{format_summary(in_sample, metrics=TABLE_METRICS)}

## Cross-validated

Each held-out slice is predicted by constants refitted from the priors without it (at most
{args.max_nfev} function evaluations per fit, against 60 for the packaged constants: a full
refit per fold on 2 cores would take hours). When a whole GPU generation is held out (H100
is the only Hopper GPU here) its fractions stay at the priors measured on an H200
(`shared/fidelity/kernels/h200.md`). The set-aside block (vLLM on Blackwell, 120 rows,
`benchmarks/fidelity/holdout.py`) was chosen by a written rule before an earlier round was
designed and is in no fold and in no interval fit; it has been scored and reported since, so
it is *seen*. The fresh block (one sweep in eight by a salted hash of the sweep key, rule
written on 2026-12-03 before that round's TTFT work looked at any residual) is blind: it was
left out of every fit and CV run of that round and is predicted once, by constants refitted
on every other row; its rows stay in the CV folds above (the folds predate it).

{cv}
{trust}
{aic}
## Predicted vs measured

{plots}

## Seed chart: DeepSeek-R1 disagg on GB200 and B200

{seed}

## Largest misses (in-sample)

{misses}

What would close the remaining gaps:

- TTFT (cross-validated ~32% against 25%): the fitted per-engine request overheads
  (tens to ~150 ms) are mostly the benchmark harness (HTTP, tokenisation, streaming), which
  differs between AIC's sweeps, InferenceX and NIM, so they carry over poorly between sources
  (InferenceX DeepSeek-R1 TTFT stays overpredicted). The in-phase share is one constant per
  engine; the real phase structure also depends on DP balancing and length randomisation
  (InferenceX uses random lengths; `tuner validate` maps them as fixed). An event-level
  simulation of one rank's scheduler for the first cycles would replace the fitted share.
  Tried and dropped (cross-validated error did not fall): an output-length de-phasing term,
  an M/D/1 wait of spread-out prompts for prefill room, coupling the Hopper and Blackwell
  fractions in the fit. Tried and dropped on 2026-12-03 (fresh block excluded, 12-evaluation
  fits, leave one engine out TTFT / TPOT / tok/s/GPU against 59.0 / 13.8 / 14.6% for the
  model as it is, in-sample TTFT 23.6%): the first token leaving one fitted number of engine
  steps after its prefill step (overlap scheduling; one global constant): 60.7 / 12.0 /
  10.3%, in-sample TTFT 24.3%; that plus pooling the per-engine request overhead, step and
  sequence host costs and burst share (a shared level per family, per-engine deviations
  pulled towards it): 50.6 / 15.2 / 16.7%; pooling only the request overhead and burst
  share: 58.5 / 16.1 / 16.1%.
- TPOT held out by GPU generation (~13%): with H100 held out the Hopper fractions fall back
  to the PyTorch-kernel priors measured on an H200 (HBM 0.89), while engines on H100 fit
  higher (HBM at its 0.95 bound); more Hopper GPUs in the data (H200 rows) would inform it.
- The AIC GB200 Qwen3-32B sweep and a few InferenceX rows disagree with themselves (the same
  configuration measured twice 2-5x apart); they cap the share within ±20% and are not fitted
  away.
- DeepSeek-R1 disagg on H100 (TEP16/DEP16 across nodes): only these rows inform the
  cross-node collective latency, so no fold cross-validates it.
- MoE: the skew constant stays far above EPLB's ~1.2-1.3 and Qwen3-235B max-throughput is
  underpredicted, which points at missing MoE prefill cost (DEP all-to-all at prefill
  batches, grouped-GEMM tile padding per touched expert).
"""


if __name__ == "__main__":
    sys.exit(main())
