"""``tuner validate``: price measured serving points with the simulator and score the error.

The input is any CSV with the columns of ``shared/fidelity/calibration.csv`` (see
``shared/fidelity/README.md``, "The tuner validate contract"); measured columns may be blank.
Each row becomes one (deployment, problem, engine) and one prediction:

- ``load_point`` rows: the row's closed-loop concurrency, one level.
- ``max_throughput`` rows: the best output tok/s/GPU over a ladder of loads up to a full batch
  (``trtllm-bench``-style offline runs queue every request at once).
- disaggregated rows: ``pred_output_tok_s_gpu`` is per *decode* GPU, the basis the data uses
  (README: "for disagg InferenceX rows it is per decode GPU"); ``pred_tok_s_gpu`` is over all GPUs.

The summary is computed over rows with ``spec_decode == none``: coverage, then per metric the
median absolute percentage error, the share within +-20% and the median predicted/measured
ratio, overall and per source, hardware, mode and model.
"""

from __future__ import annotations

import csv
import io
import math
import statistics
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from backends.simulator import Constants, SimulatorBackend
from serving import (
    ConfigError,
    Deployment,
    EngineKnobs,
    LoadPoint,
    Parallelism,
    Problem,
    WorkerGroup,
    Workload,
    load_gpu,
    load_model,
)
from serving.inputs import read_text

__all__ = [
    "ENGINES",
    "METRICS",
    "OUTPUT_COLUMNS",
    "REQUIRED_COLUMNS",
    "SLICES",
    "MetricStats",
    "Prediction",
    "Predictor",
    "RowError",
    "Summary",
    "format_summary",
    "positive_float",
    "read_points",
    "row_deployment",
    "summarize",
    "write_predictions",
]

#: Columns a points file must have (measured columns and provenance are optional).
REQUIRED_COLUMNS = (
    "point_id", "kind", "model", "hardware", "precision", "mode", "isl", "osl", "concurrency",
    "workers", "tp", "dp", "ep", "p_workers", "p_tp", "p_dp", "p_ep", "d_workers", "d_tp", "d_dp",
    "d_ep",
)  # fmt: skip
OUTPUT_COLUMNS = (
    "point_id", "status", "pred_ttft_ms", "pred_tpot_ms", "pred_tok_s_user", "pred_tok_s_gpu",
    "pred_output_tok_s_gpu",
)  # fmt: skip
#: Scored metrics: (measured column, prediction column).
METRICS = (
    ("ttft_ms", "pred_ttft_ms"),
    ("tpot_ms", "pred_tpot_ms"),
    ("tok_s_user", "pred_tok_s_user"),
    ("tok_s_gpu", "pred_tok_s_gpu"),
    ("output_tok_s_gpu", "pred_output_tok_s_gpu"),
)
SLICES = ("source", "hardware", "mode", "model")
#: Engine families the data names in its ``backend`` column; a blank one is vLLM.
ENGINES = ("trtllm", "sglang", "vllm")
#: Engine knobs the measured runs used where the row does not say. 8192 batched tokens is
#: the default token budget of vLLM (online serving), TensorRT-LLM (max_num_tokens) and SGLang
#: (chunked_prefill_size on 80+ GB GPUs).
TOKEN_BUDGET = 8192
#: Share of HBM the engine lets weights + KV + reserve use. vLLM: gpu_memory_utilization 0.9
#: of the whole GPU. TensorRT-LLM: kv_cache_free_gpu_memory_fraction 0.9 of the memory left
#: *after* weights, so with large weights it uses ~97% of HBM; SGLang's recipes for large
#: models (InferenceX, AIC) set mem_fraction_static to 0.95+ likewise.
MEMORY_UTILIZATION = {"vllm": 0.9, "trtllm": 0.97, "sglang": 0.97}
#: Offline (max_throughput) runs: TensorRT-LLM's default max_batch_size is 2048; the ladder
#: of per-rank loads the best point is taken over (KV capacity caps the batch below that).
OFFLINE_MAX_SEQS = 2048
OFFLINE_LADDER = (32, 64, 128, 256, 512, 1024, 2048)


class RowError(ValueError):
    """A row the simulator cannot price; the message is the ``unsupported:`` reason."""


@dataclass(frozen=True)
class Prediction:
    """One output row: status ``ok`` or ``unsupported: <reason>`` and the predicted metrics."""

    point_id: str
    status: str
    values: Mapping[str, float] = field(default_factory=dict)

    def row(self) -> dict[str, str]:
        out = {"point_id": self.point_id, "status": self.status}
        for _, col in METRICS:
            value = self.values.get(col)
            out[col] = "" if value is None or not math.isfinite(value) else f"{value:.6g}"
        return out


def _int(row: Mapping[str, str], name: str, default: int | None = None) -> int:
    text = (row.get(name) or "").strip()
    if not text:
        if default is None:
            raise RowError(f"column {name} is blank")
        return default
    try:
        value = float(text)
    except ValueError:
        raise RowError(f"column {name} is not a number: {text!r}") from None
    if value != int(value) or value < 1:
        raise RowError(f"column {name} must be a positive integer, got {text}")
    return int(value)


def _group(row: Mapping[str, str], prefix: str, *, max_seqs: int, engine: str) -> WorkerGroup:
    tp, dp, ep = (_int(row, f"{prefix}{n}", 1) for n in ("tp", "dp", "ep"))
    try:
        par = Parallelism(tp=tp, dp=dp, ep=ep)
    except ConfigError as exc:
        raise RowError(f"{prefix}tp/dp/ep: {exc}") from None
    knobs = EngineKnobs(
        max_num_seqs=max_seqs,
        max_num_batched_tokens=TOKEN_BUDGET,
        gpu_memory_utilization=MEMORY_UTILIZATION[engine],
        kv_cache_dtype=_kv_dtype(row),
    )
    return WorkerGroup(parallel=par, count=_int(row, f"{prefix}workers", 1), knobs=knobs)


def _kv_dtype(row: Mapping[str, str]) -> str:
    """fp8 KV cache with fp8/fp4 weights: the default of TensorRT-LLM and SGLang for
    quantised checkpoints and what InferenceX/AIC recipes set for vLLM; 16-bit otherwise."""
    return "fp8" if row["precision"] in ("fp8", "fp4") else "auto"


def row_deployment(row: Mapping[str, str]) -> tuple[Deployment, Problem, str]:
    """The (deployment, problem, engine) a points row describes; :class:`RowError` if none."""
    kind = row["kind"]
    if kind not in ("load_point", "max_throughput"):
        raise RowError(f"kind {kind!r} (allowed: load_point, max_throughput)")
    engine = (row.get("backend") or "vllm").strip()
    if engine not in ENGINES:
        raise RowError(f"engine {engine!r} (known: {', '.join(ENGINES)})")
    isl, osl = _int(row, "isl"), _int(row, "osl")
    if kind == "load_point":
        ladder: tuple[int, ...] = (_int(row, "concurrency"),)
    mode = row["mode"]
    try:
        arch, gpu = load_model(row["model"]), load_gpu(row["hardware"])
        if mode == "agg":
            ranks = _int(row, "workers", 1) * _int(row, "dp", 1)
            if kind == "max_throughput":
                ladder = tuple(ranks * n for n in OFFLINE_LADDER)
            seqs = OFFLINE_MAX_SEQS if kind == "max_throughput" else max(256, -(-ladder[-1] // ranks))
            dep = Deployment(mode="agg", agg=_group(row, "", max_seqs=seqs, engine=engine))
        elif mode == "disagg":
            if kind == "max_throughput":
                raise RowError("max_throughput rows are priced for agg deployments only")
            seqs = max(256, ladder[-1])
            dep = Deployment(
                mode="disagg",
                prefill=_group(row, "p_", max_seqs=seqs, engine=engine),
                decode=_group(row, "d_", max_seqs=seqs, engine=engine),
            )
        else:
            raise RowError(f"mode {mode!r} (allowed: agg, disagg)")
    except ConfigError as exc:
        raise RowError(str(exc)) from None
    workload = Workload(isl=isl, osl=osl, concurrency=ladder)
    problem = Problem(
        arch=arch,
        gpu=gpu,
        precision=row["precision"],
        workload=workload,
        gpus=dep.gpus(),
        gpus_per_node=gpu.nvlink_domain,
    )
    return dep, problem, engine


def _values(points: Sequence[LoadPoint], dep: Deployment, *, offline: bool) -> dict[str, float]:
    out_gpus = dep.gpus() if dep.decode is None else dep.decode.gpus
    if offline:
        best = max(p.requests_s for p in points)
        osl_tokens = points[0].output_tok_s_gpu / points[0].requests_s * points[0].gpus
        return {"pred_output_tok_s_gpu": best * osl_tokens / out_gpus}
    p = points[0]
    return {
        "pred_ttft_ms": p.ttft_ms_p50,
        "pred_tpot_ms": p.tpot_ms_p50,
        "pred_tok_s_user": p.tok_s_user,
        "pred_tok_s_gpu": p.tok_s_gpu,
        "pred_output_tok_s_gpu": p.output_tok_s_gpu * p.gpus / out_gpus,
    }


class Predictor:
    """Prices rows with one simulator per engine family, sharing one set of constants:
    the packaged file, the YAML file at path ``constants``, or a :class:`Constants` record
    (what the fit script passes while it searches)."""

    def __init__(
        self, *, constants: str | Constants | None = None, options: Mapping[str, Any] | None = None
    ) -> None:
        self._options = dict(options or {})
        self._record = constants if isinstance(constants, Constants) else None
        if isinstance(constants, str):
            self._options["constants"] = constants
        self._backends: dict[tuple[str, str], SimulatorBackend] = {}

    def backend(self, engine: str, spec_decode: str = "none") -> SimulatorBackend:
        """The simulator for one engine family and speculative-decoding mode (cached)."""
        key = (engine, spec_decode)
        if key not in self._backends:
            options = {"engine": engine, "spec_decode": spec_decode, **self._options}
            backend = SimulatorBackend(**options)
            if self._record is not None:
                backend.constants = self._record
            backend.intervals = None  # scored on the point predictions; intervals cost time
            self._backends[key] = backend
        return self._backends[key]

    def predict(self, row: Mapping[str, str]) -> Prediction:
        pid = row.get("point_id", "")
        if (row.get("spec_decode") or "none") not in ("none", "mtp"):
            return Prediction(pid, f"unsupported: spec_decode {row['spec_decode']!r} (known: none, mtp)")
        try:
            case = row_deployment(row)
        except RowError as exc:
            return Prediction(pid, f"unsupported: {exc}")
        return self.predict_case(row, case)

    def predict_case(self, row: Mapping[str, str], case: tuple[Deployment, Problem, str]) -> Prediction:
        """Price a row already mapped by :func:`row_deployment` (the fit re-prices rows often)."""
        pid, (dep, problem, engine) = row.get("point_id", ""), case
        backend = self.backend(engine, row.get("spec_decode") or "none")
        reason = backend.check(dep, problem)
        if reason is not None:
            return Prediction(pid, reason if reason.startswith("unsupported") else f"unsupported: {reason}")
        points = backend.measure(dep, problem)
        return Prediction(pid, "ok", _values(points, dep, offline=row["kind"] == "max_throughput"))


def read_points(path: Path) -> list[dict[str, str]]:
    """Rows of a points CSV; :class:`ConfigError` if the file or a required column is missing."""
    if not path.is_file():
        raise ConfigError("POINTS", str(path), "must be an existing CSV file")
    text = read_text(path, "POINTS", "must be an existing CSV file")
    try:
        reader = csv.DictReader(io.StringIO(text, newline=""))
        header = reader.fieldnames or []
        missing = [c for c in REQUIRED_COLUMNS if c not in header]
        if missing:
            raise ConfigError(
                "POINTS", str(path), f"missing columns {', '.join(missing)} (see shared/fidelity/README.md)"
            )
        return [dict(r) for r in reader]
    except csv.Error as exc:
        raise ConfigError("POINTS", str(path), f"must be a CSV file ({exc})") from None


def write_predictions(path: Path, predictions: Iterable[Prediction]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=OUTPUT_COLUMNS)
        writer.writeheader()
        for pred in predictions:
            writer.writerow(pred.row())


# -- summary ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class MetricStats:
    """Error of one metric over one slice: n pairs, median |error| %, share within +-20%,
    median predicted/measured ratio."""

    n: int
    mape: float
    within20: float
    ratio: float

    @classmethod
    def of(cls, pairs: Sequence[tuple[float, float]]) -> MetricStats:
        if not pairs:
            return cls(0, math.nan, math.nan, math.nan)
        ratios = [p / m for p, m in pairs]
        return cls(
            n=len(pairs),
            mape=100.0 * statistics.median(abs(r - 1.0) for r in ratios),
            within20=100.0 * sum(abs(r - 1.0) <= 0.2 for r in ratios) / len(ratios),
            ratio=statistics.median(ratios),
        )


@dataclass(frozen=True)
class SliceStats:
    rows: int
    ok: int
    metrics: dict[str, MetricStats]

    @property
    def coverage(self) -> float:
        return 100.0 * self.ok / self.rows if self.rows else math.nan


@dataclass(frozen=True)
class Summary:
    """Per-slice statistics; the key ``("all", "")`` covers every scored row."""

    slices: dict[tuple[str, str], SliceStats]


def positive_float(text: str | None) -> float:
    """A measured cell as a number; NaN when blank, unparsable, zero or negative."""
    try:
        value = float(text or "nan")
    except ValueError:
        return math.nan
    return value if math.isfinite(value) and value > 0 else math.nan


def summarize(
    rows: Sequence[Mapping[str, str]],
    predictions: Sequence[Prediction],
    *,
    slices: Sequence[str] = SLICES,
    keep: Callable[[Mapping[str, str]], bool] | None = None,
) -> Summary:
    """Statistics over rows with ``spec_decode == none`` (and ``keep(row)`` when given)."""
    groups: dict[tuple[str, str], list[tuple[Mapping[str, str], Prediction]]] = {}
    for row, pred in zip(rows, predictions, strict=True):
        if (row.get("spec_decode") or "none") != "none" or (keep is not None and not keep(row)):
            continue
        keys = [("all", "")] + [(s, row.get(s) or "?") for s in slices]
        for key in keys:
            groups.setdefault(key, []).append((row, pred))
    out: dict[tuple[str, str], SliceStats] = {}
    for key, members in groups.items():
        metrics = {}
        for measured, col in METRICS:
            pairs = []
            for row, pred in members:
                m, p = positive_float(row.get(measured)), pred.values.get(col, math.nan)
                if pred.status == "ok" and math.isfinite(m) and math.isfinite(p):
                    pairs.append((p, m))
            metrics[measured] = MetricStats.of(pairs)
        ok = sum(pred.status == "ok" for _, pred in members)
        out[key] = SliceStats(rows=len(members), ok=ok, metrics=metrics)
    return Summary(out)


def _cell(stats: MetricStats) -> str:
    if not stats.n:
        return "-"
    return f"{stats.mape:.1f}% {stats.within20:.0f}% x{stats.ratio:.2f} ({stats.n})"


def format_summary(summary: Summary, *, metrics: Sequence[str] | None = None) -> str:
    """A Markdown table: one row per slice; per metric 'median|err| within20 xratio (n)'."""
    names = list(metrics or [m for m, _ in METRICS])
    head = "| slice | rows | coverage | " + " | ".join(names) + " |"
    lines = [head, "|" + "---|" * (3 + len(names))]
    order = sorted(
        summary.slices, key=lambda k: (k != ("all", ""), SLICES.index(k[0]) if k[0] in SLICES else 0, k[1])
    )
    for key in order:
        st = summary.slices[key]
        label = "all" if key == ("all", "") else f"{key[0]}={key[1]}"
        cells = " | ".join(_cell(st.metrics[m]) for m in names)
        lines.append(f"| {label} | {st.rows} | {st.coverage:.1f}% | {cells} |")
    lines.append("")
    lines.append("cells: median |error| · share within ±20% · median predicted/measured (pairs)")
    return "\n".join(lines)
