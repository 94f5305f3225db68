"""Regenerate docs/fidelity.md and docs/fidelity/*.png: how close the simulator is to measurements.

Tables (over rows with spec_decode == none, as ``tuner validate`` scores them):

- in-sample: the packaged constants (fitted on the whole calibration file) predict it;
- leave one GPU type out: for each hardware, refit the constants from the sourced priors
  (``priors.yaml``) on the other GPUs' rows, then predict the held-out GPU's rows;
- leave one model out: the same per model.

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
from fit import DEFAULT_CSV, FIT, Case, fit_constants, load_cases, load_rows, predict_cases  # noqa: E402
from seed_chart import seed_chart_section  # noqa: E402

from backends.simulator import Constants, SimulatorBackend, load_constants  # noqa: E402
from tuner.validate import Prediction, Predictor, Summary, format_summary, summarize  # noqa: E402

logger = logging.getLogger("report")

from fit import PRIORS_YAML as PRIORS  # noqa: E402

DOC = ROOT / "docs" / "fidelity.md"
FIGURES = ROOT / "docs" / "fidelity"
TABLE_METRICS = ("ttft_ms", "tpot_ms", "tok_s_gpu", "output_tok_s_gpu")


def _cross_validate(
    cases: Sequence[Case], prior: Constants, column: str, *, max_nfev: int
) -> tuple[list[Prediction], dict[str, Constants]]:
    """Predictions where each row comes from constants fitted without its ``column`` value."""
    preds: list[Prediction | None] = [None] * len(cases)
    fitted: dict[str, Constants] = {}
    for value in sorted({c.row[column] for c in cases}):
        train = [c for c in cases if c.row[column] != value]
        start = time.perf_counter()
        consts = fit_constants(train, prior, max_nfev=max_nfev)
        fitted[value] = consts
        held = [i for i, c in enumerate(cases) if c.row[column] == value]
        for i, pred in zip(held, predict_cases([cases[i] for i in held], consts), strict=True):
            preds[i] = pred
        logger.info("  %s held out: %d rows, fit %.0f s", value, len(held), time.perf_counter() - start)
    return [p for p in preds if p is not None], fitted


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
    lines = [head]
    for name in FIT:
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
    cv_text = []
    if not args.quick:
        cases = load_cases(rows)
        mapped = {c.row["point_id"] for c in cases}
        for label, column in (("leave one GPU type out", "hardware"), ("leave one model out", "model")):
            logger.info("%s:", label)
            preds, folds[column] = _cross_validate(cases, prior, column, max_nfev=args.max_nfev)
            by_id = {c.row["point_id"]: p for c, p in zip(cases, preds, strict=True)}
            full = [
                by_id[r["point_id"]] if r["point_id"] in mapped else p
                for r, p in zip(rows, in_sample, strict=True)
            ]
            summaries[label] = summarize(rows, full)
            all_preds[label] = full
            cv_text.append(
                f"### {label.capitalize()}\n\n{format_summary(summaries[label], metrics=TABLE_METRICS)}\n"
            )
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
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(doc)
    logger.info("wrote %s and %d figures", args.out, len(figures))
    return 0


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

Targets (issue 4, cross-validated): coverage ≥ 95%, TPOT ≤ 8%, tok/s/GPU ≤ 10%, TTFT ≤ 25%,
max-throughput output tok/s/GPU ≤ 8%. AIConfigurator's row is measured: it priced every row
(`benchmarks/fidelity/aic.py`) and is scored on the rows it prices; compared with ours on the
rows both price below ("Side by side").

Speed: one deployment over an 8-level ladder (check + measure, DeepSeek-R1 DEP8) takes
{timing[0]:.0f} µs; `tuner validate` spends {timing[1]:.2f} ms per calibration row.

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

Each held-out slice is predicted by constants refitted from the priors without it. When a
whole GPU generation is held out (H100 is the only Hopper GPU here) its fractions stay at the
priors measured on an H200 (`shared/fidelity/kernels/h200.md`).

{cv}
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
  fractions in the fit.
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
