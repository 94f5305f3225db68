"""NVIDIA AIConfigurator 0.12 next to the simulator, for ``docs/fidelity.md``.

Reads AIC's predictions (written by ``benchmarks/fidelity/aic.py`` in the ``tuner validate``
format; ``docs/fidelity/aic_predictions.csv`` is the committed run), scores them with the same
summary as ``tuner validate`` (rows with ``spec_decode == none``) and renders the headline row
and the side-by-side section, where both are scored on the rows both price.
"""

from __future__ import annotations

import csv
import math
import subprocess
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from tuner.validate import METRICS, Prediction, Summary, format_summary, summarize

ROOT = Path(__file__).resolve().parents[2]
AIC_SCRIPT = Path(__file__).resolve().parent / "aic.py"
AIC_PREDICTIONS = ROOT / "docs" / "fidelity" / "aic_predictions.csv"
AIC_LABEL = "AIConfigurator 0.12"
#: How the committed predictions file was made (a CSV carries no provenance of its own).
AIC_PROVENANCE = (
    "aiconfigurator 0.12.0 and its default databases (TRT-LLM 1.3.0rc20, SGLang 0.5.14, "
    "vLLM 0.24.0; database mode SILICON)"
)
#: Our own source of the AIC silicon sweeps (they ship with AIC, see aic_section).
AIC_SOURCE = "aic_silicon"

#: A headline column: (title, summary slice key, metric).
Column = tuple[str, tuple[str, str], str]


def run_aic(python: str, points: Path, out: Path) -> str:
    """Regenerate ``out`` with ``aic.py`` under the interpreter ``python`` (where
    aiconfigurator is installed); returns the aiconfigurator version it found."""
    probe = "import importlib.metadata as m; print(m.version('aiconfigurator'))"
    version = subprocess.run([python, "-c", probe], capture_output=True, text=True, check=True).stdout
    subprocess.run([python, str(AIC_SCRIPT), "--csv", str(points), "--out", str(out)], check=True)
    return version.strip()


def _value(text: str | None) -> float:
    try:
        value = float(text or "nan")
    except ValueError:
        return math.nan
    return value if math.isfinite(value) else math.nan


def read_predictions(path: Path, rows: Sequence[Mapping[str, str]]) -> list[Prediction]:
    """AIC's predictions aligned with ``rows``; a row the file lacks is ``unsupported``."""
    by_id: dict[str, Prediction] = {}
    with path.open(newline="") as fh:
        for rec in csv.DictReader(fh):
            values = {col: _value(rec.get(col)) for _, col in METRICS}
            values = {col: v for col, v in values.items() if math.isfinite(v)}
            pid = rec.get("point_id", "")
            by_id[pid] = Prediction(pid, rec.get("status") or "unsupported: no status", values)
    missing = "unsupported: not in the AIC predictions file"
    return [by_id.get(r.get("point_id", ""), Prediction(r.get("point_id", ""), missing)) for r in rows]


def both_price(
    rows: Sequence[Mapping[str, str]], aic: Sequence[Prediction], ours: Sequence[Prediction]
) -> set[str]:
    """Point ids of the scored rows (``spec_decode == none``) that both AIC and we price."""
    return {
        row.get("point_id", "")
        for row, a, o in zip(rows, aic, ours, strict=True)
        if (row.get("spec_decode") or "none") == "none" and a.status == "ok" and o.status == "ok"
    }


def slice_cell(summary: Summary, key: tuple[str, str], metric: str, *, pairs: bool = True) -> str:
    """``median |error|% (share within ±20%[; pairs])`` of one slice and metric, or ``-``."""
    st = summary.slices.get(key)
    if st is None or not st.metrics[metric].n:
        return "-"
    m = st.metrics[metric]
    return f"{m.mape:.1f}% ({m.within20:.0f}%; {m.n})" if pairs else f"{m.mape:.1f}% ({m.within20:.0f}%)"


def side_by_side(
    rows: Sequence[Mapping[str, str]],
    aic: Sequence[Prediction],
    ours: Mapping[str, Sequence[Prediction]],
    columns: Sequence[Column],
    *,
    keep: Callable[[Mapping[str, str]], bool] | None = None,
) -> tuple[str, int]:
    """A Markdown table, one line per evaluation (AIC, then each of ``ours``), scored on the
    rows both AIC and our in-sample run price (and ``keep`` accepts); and that row count."""
    shared = both_price(rows, aic, ours["in-sample"])
    if keep is not None:
        shared = {r.get("point_id", "") for r in rows if r.get("point_id", "") in shared and keep(r)}

    def select(row: Mapping[str, str]) -> bool:
        return row.get("point_id", "") in shared

    evaluations = {AIC_LABEL: aic, **{f"ours, {label}": preds for label, preds in ours.items()}}
    titles = " | ".join(t for t, _, _ in columns)
    lines = [f"| evaluation | {titles} |", "|---|" + "---|" * len(columns)]
    for label, preds in evaluations.items():
        summary = summarize(rows, preds, keep=select)
        lines.append(f"| {label} | " + " | ".join(slice_cell(summary, k, m) for _, k, m in columns) + " |")
    return "\n".join(lines), len(shared)


def _reasons(rows: Sequence[Mapping[str, str]], aic: Sequence[Prediction], *, top: int = 8) -> str:
    counts: Counter[str] = Counter()
    for row, pred in zip(rows, aic, strict=True):
        if (row.get("spec_decode") or "none") == "none" and pred.status != "ok":
            reason = pred.status.removeprefix("unsupported: ")
            counts[reason if len(reason) <= 100 else reason[:97] + "..."] += 1
    if not counts:
        return "AIC prices every scored row."
    lines = ["| AIC's reason | rows |", "|---|---|"]
    lines += [f"| {reason.replace('|', '/')} | {n} |" for reason, n in counts.most_common(top)]
    if len(counts) > top:
        rest = sum(n for _, n in counts.most_common()[top:])
        lines.append(f"| {len(counts) - top} other reasons | {rest} |")
    return "\n".join(lines)


def aic_section(
    rows: Sequence[Mapping[str, str]],
    aic: Sequence[Prediction],
    ours: Mapping[str, Sequence[Prediction]],
    columns: Sequence[Column],
    *,
    metrics: Sequence[str],
    provenance: str = AIC_PROVENANCE,
) -> str:
    """The "Side by side with AIConfigurator 0.12" section of docs/fidelity.md."""
    table, n_both = side_by_side(rows, aic, ours, columns)
    table_ext, n_ext = side_by_side(rows, aic, ours, columns, keep=lambda r: r.get("source") != AIC_SOURCE)
    by_slice = summarize(rows, aic, slices=("source", "hardware"))
    ttft = by_slice.slices[("all", "")].metrics["ttft_ms"]
    n_aic = sum(1 for r in rows if r.get("source") == AIC_SOURCE)
    ttft_note = (
        f"AIC's TTFT runs {'low' if ttft.ratio < 1 else 'high'} (median predicted/measured "
        f"x{ttft.ratio:.2f}): it is the prefill time times a heuristic queueing factor\n(2-4 on "
        "aggregated workers, 1.8 on disaggregated prefill); AIC models no queue behind a busy batch."
        if ttft.n
        else ""
    )
    return f"""## Side by side with {AIC_LABEL}

NVIDIA AIConfigurator (AIC) priced every calibration row through its single-point estimate
API, run by `benchmarks/fidelity/aic.py` with
{provenance}. Aggregated load points use its
in-flight-batching model at batch = concurrency per attention-DP rank, disaggregated ones its
rate-matched static prefill (batch 1) and decode (concurrency per decode rank) workers,
max-throughput rows its best batch; the full row mapping is in that script's docstring. Its
predictions are committed in `docs/fidelity/aic_predictions.csv`; `python
benchmarks/fidelity/report.py --aic-python PYTHON` regenerates them with an interpreter where
AIC is installed (`pip install '.[benchmark]'`, CPU-only). They are scored with the same code
as ours (`tuner.validate.summarize`, rows with `spec_decode == none`; AIC 0.12 prices MTP rows
only with a given accepted-token rate, so it leaves them out like the scoring does).
{ttft_note}

AIC is partly in-sample on the `source={AIC_SOURCE}` rows ({n_aic} rows): they are AIC's
own silicon sweeps, which AIC 0.12 ships as its reference measurements (every one of their
TTFT and TPOT values is in its `systems/silicon_sample.csv`), next to a perf database collected
on the same systems. Our in-sample row is fitted on them too; our cross-validated rows are
not. The second table leaves those rows out.

Cells: median |error| (share within ±20%; pairs), on the same rows for every evaluation.

### On the rows both price ({n_both} rows)

{table}

### On the rows both price, without AIC's own sweeps ({n_ext} rows)

{table_ext}

### {AIC_LABEL} per source and hardware (every row it prices)

{format_summary(by_slice, metrics=metrics)}

### Rows {AIC_LABEL} does not price

{_reasons(rows, aic)}
"""


def aic_report(
    rows: Sequence[Mapping[str, str]],
    ours: Mapping[str, Sequence[Prediction]],
    columns: Sequence[Column],
    *,
    metrics: Sequence[str],
    predictions: Path,
    points: Path,
    python: str | None = None,
) -> tuple[str, Summary | None]:
    """The side-by-side section and AIC's summary (None without a predictions file). With
    ``python``, first regenerate ``predictions`` from ``points`` by running aic.py under it."""
    provenance = AIC_PROVENANCE
    if python:
        version = run_aic(python, points, predictions)
        provenance = f"aiconfigurator {version} and its default databases, regenerated by this report"
    if not predictions.is_file():
        note = (
            f"_No AIC predictions file (`{predictions}`): run `python benchmarks/fidelity/report.py "
            "--aic-python PYTHON` with an interpreter where aiconfigurator 0.12 is installed._\n"
        )
        return f"## Side by side with {AIC_LABEL}\n\n{note}", None
    aic = read_predictions(predictions, rows)
    section = aic_section(rows, aic, ours, columns, metrics=metrics, provenance=provenance)
    return section, summarize(rows, aic)
