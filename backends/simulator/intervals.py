"""Calibrated 80% intervals for the simulator's TTFT, TPOT and tok/s/GPU (issue 14 part 3).

The interval of a predicted metric ``p`` is ``p * exp(s * Q(0.1)) .. p * exp(s * Q(0.9))``
where ``Q`` is the empirical quantile function of the standardised out-of-sample log error
``log(measured / predicted) / s`` and the scale ``s`` grows with how far the point lies from
the calibration data:

    log s = b . x + g_engine + g_generation

``x`` holds:

- ``new_gpu``, ``new_precision``, ``new_model``, ``new_family``: ``1 / sqrt(1 + n)`` for the
  ``n`` calibration rows sharing the point's GPU, precision, model, and model family
  (dense/MoE, MLA, sliding-window); 1 when none does;
- ``beyond_range``: how far (natural log units, summed) the point's input length, output
  length and per-rank concurrency lie outside the calibrated ranges;
- ``saturation``: ``clip(log2(c_rank / batch capacity) + 1, 0, 3)``: 0 up to half the batch
  a rank can hold, 1 at a full batch, more as the engine queue grows;
- ``disagg``: disaggregated serving (its own error level).

``g_engine`` and ``g_generation`` are per-group log width factors of the engine family and
the GPU generation. Each dimension has one factor per calibrated group and one ``*`` factor
for an unseen group, all fitted by grouped cross-validation: the unseen factor from the
residuals of rows whose whole engine family (GPU generation) was left out of the fit that
predicted them, a group's own factor from its rows' residuals when it was seen, shrunk
toward the global width by its residual count ``m`` (weight ``m / (m + K)``). A point whose
group has ``n`` calibration rows mixes the two, ``w g_group + (1 - w) g_*`` with
``w = n / (n + K)``: a group with few rows gets about the leave-that-group-out width, and
the unseen factor is never below a calibrated group's, so less support never narrows an
interval. ``K`` (:data:`SHRINK`) is the one constant of this part, chosen by grouped CV.

``b`` (non-negative on the extrapolation terms), the group factors and ``Q`` are fitted by
``benchmarks/fidelity/fit_intervals.py`` on grouped cross-validation residuals and stored,
with the calibration file's support counts and ranges, in ``intervals.yaml``: a formula per
point, no per-point lookup.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Any

import yaml

from serving import Deployment, LoadPoint, Problem, WorkerGroup, Workload
from serving.arch import ModelArch

from .agg import batch_capacity
from .costs import WorkerCost

__all__ = [
    "FEATURES",
    "GROUPS",
    "INTERVALS_FILE",
    "LEVEL",
    "METRICS",
    "SHRINK",
    "UNSEEN",
    "IntervalModel",
    "PointContext",
    "family",
    "load_intervals",
    "load_ratio",
]

INTERVALS_FILE = Path(__file__).with_name("intervals.yaml")
#: Two-sided level of the stored intervals; its upper end is the one-sided 90% bound.
LEVEL = 0.8
#: Metrics with an interval, as LoadPoint field stems (``<stem>_low`` / ``<stem>_high``).
METRICS = ("ttft_ms", "tpot_ms", "tok_s_gpu")
#: Support categories, each a PointContext attribute counted over the calibration rows.
SUPPORT = ("engine", "generation", "hardware", "precision", "model", "family")
#: Scale features, in the order of the fitted coefficients.
FEATURES = (
    "bias",
    "new_gpu",
    "new_precision",
    "new_model",
    "new_family",
    "beyond_range",
    "saturation",
    "disagg",
)
#: Features whose coefficient is kept >= 0 (extrapolation may only widen an interval).
MONOTONE = FEATURES[1:7]
#: Dimensions with per-group width factors (PointContext attributes).
GROUPS = ("engine", "generation")
#: Key of a dimension's unseen-group factor.
UNSEEN = "*"
#: Pseudo-count K of the group factors: shrinkage m / (m + K) of a group's own factor and
#: its weight n / (n + K) against the unseen factor (chosen by grouped CV, fit_intervals.py).
SHRINK = 30.0


def family(arch: ModelArch) -> str:
    """Model family for support counting: dense or MoE, plus MLA and sliding-window."""
    name = "moe" if arch.experts else "dense"
    if arch.kv_lora_rank:
        name += "-mla"
    if getattr(arch, "sliding_window", 0):
        name += "-swa"
    return name


@dataclass(frozen=True)
class PointContext:
    """What the interval of one predicted point depends on."""

    engine: str
    generation: str
    hardware: str
    precision: str
    model: str
    family: str
    mode: str
    isl: int
    osl: int
    c_rank: float
    load_ratio: float

    @classmethod
    def of(
        cls, problem: Problem, deployment: Deployment, *, engine: str, c_rank: float, ratio: float
    ) -> PointContext:
        return cls(
            engine=engine,
            generation=problem.gpu.generation,
            hardware=problem.gpu.name,
            precision=problem.precision,
            model=problem.arch.name,
            family=family(problem.arch),
            mode=deployment.mode,
            isl=problem.workload.isl,
            osl=problem.workload.osl,
            c_rank=c_rank,
            load_ratio=ratio,
        )


def load_ratio(
    cost: WorkerCost, group: WorkerGroup, workload: Workload, concurrency: int
) -> tuple[float, float]:
    """(users per DP rank of ``group``, that over the batch a rank can hold)."""
    c_rank = concurrency / (group.count * group.parallel.dp)
    return c_rank, c_rank / batch_capacity(cost, group, workload)


def _outside(value: float, bounds: tuple[float, float]) -> float:
    lo, hi = bounds
    if value <= 0 or lo <= 0:
        return 0.0
    return max(0.0, math.log(value / hi), math.log(lo / value))


@dataclass(frozen=True)
class IntervalModel:
    """Fitted interval parameters (see the module docstring) and the data's support."""

    support: Mapping[str, Mapping[str, int]]
    ranges: Mapping[str, tuple[float, float]]
    coefficients: Mapping[str, Mapping[str, float]]
    quantiles: Mapping[str, Mapping[float, float]]
    #: metric -> dimension (GROUPS) -> group or UNSEEN -> log width factor.
    groups: Mapping[str, Mapping[str, Mapping[str, float]]] = field(default_factory=dict)
    shrink: float = SHRINK

    def features(self, ctx: PointContext) -> dict[str, float]:
        """Scale features (FEATURES) plus, per dimension of GROUPS, the support count
        ``n_<dim>`` and the membership ``<dim>=<group>`` the group factors read."""
        x = {"bias": 1.0}
        for name in SUPPORT:
            n = self.support.get(name, {}).get(getattr(ctx, name), 0)
            if name in GROUPS:
                x[f"n_{name}"] = float(n)
                x[f"{name}={getattr(ctx, name)}"] = 1.0
            else:
                x["new_" + ("gpu" if name == "hardware" else name)] = 1.0 / math.sqrt(1.0 + n)
        x["beyond_range"] = sum(
            _outside(float(getattr(ctx, k)), self.ranges[k])
            for k in ("isl", "osl", "c_rank")
            if k in self.ranges
        )
        ratio = max(ctx.load_ratio, 1e-9)
        x["saturation"] = min(3.0, max(0.0, math.log2(ratio) + 1.0))
        x["disagg"] = float(ctx.mode == "disagg")
        return x

    @cached_property
    def _group_keys(self) -> dict[tuple[str, str], tuple[float, list[tuple[str, float]]]]:
        """(metric, dim) -> (unseen factor, [(feature key ``<dim>=<group>``, factor)])."""
        return {
            (m, d): (t[UNSEEN], [(f"{d}={g}", v) for g, v in t.items() if g != UNSEEN])
            for m, dims in self.groups.items()
            for d, t in dims.items()
            if t
        }

    def group_log_factor(self, metric: str, dim: str, x: Mapping[str, float]) -> float:
        """``w g_group + (1 - w) g_*`` of the point's group in ``dim`` (0 when not fitted)."""
        entry = self._group_keys.get((metric, dim))
        if entry is None:
            return 0.0
        unseen, keyed = entry
        n = x.get(f"n_{dim}", 0.0)
        if n <= 0:
            return unseen
        for key, own in keyed:
            if key in x:
                w = n / (n + self.shrink)
                return w * own + (1.0 - w) * max(unseen, own)
        return unseen

    def scale(self, metric: str, x: Mapping[str, float]) -> float:
        coef = self.coefficients[metric]
        log_s = sum(coef.get(k, 0.0) * x.get(k, 0.0) for k in FEATURES)
        return math.exp(log_s + sum(self.group_log_factor(metric, d, x) for d in GROUPS))

    @cached_property
    def _tables(self) -> dict[str, list[tuple[float, float]]]:
        return {m: sorted(q.items()) for m, q in self.quantiles.items()}

    def quantile(self, metric: str, p: float) -> float:
        """Standardised log-error quantile at probability ``p`` (linear in between)."""
        table = self._tables[metric]
        if p <= table[0][0]:
            return table[0][1]
        for (p0, q0), (p1, q1) in itertools.pairwise(table):
            if p <= p1:
                return q0 + (q1 - q0) * (p - p0) / (p1 - p0)
        return table[-1][1]

    def bounds(
        self, metric: str, value: float, x: Mapping[str, float], *, level: float = LEVEL
    ) -> tuple[float, float]:
        """The central ``level`` interval of the measured value around prediction ``value``."""
        s = self.scale(metric, x)
        tail = (1.0 - level) / 2.0
        return value * math.exp(s * self.quantile(metric, tail)), value * math.exp(
            s * self.quantile(metric, 1 - tail)
        )

    def attach(self, point: LoadPoint, ctx: PointContext) -> LoadPoint:
        """``point`` with its ``<metric>_low`` / ``<metric>_high`` fields filled."""
        x = self.features(ctx)
        values: dict[str, float] = {}
        for metric in METRICS:
            value = float(getattr(point, metric if metric == "tok_s_gpu" else f"{metric}_p50"))
            s = self.scale(metric, x)
            q_low, q_high = self._central[metric]
            values[f"{metric}_low"], values[f"{metric}_high"] = (
                value * math.exp(s * q_low),
                value * math.exp(s * q_high),
            )
        return point.with_intervals(values)

    @cached_property
    def _central(self) -> dict[str, tuple[float, float]]:
        """metric -> the quantiles of the central ``LEVEL`` interval (what :meth:`bounds`
        reads per call), looked up once."""
        tail = (1.0 - LEVEL) / 2.0
        return {m: (self.quantile(m, tail), self.quantile(m, 1 - tail)) for m in METRICS}

    def to_dict(self) -> dict[str, Any]:
        return {
            "level": LEVEL,
            "shrink": self.shrink,
            "support": {k: dict(v) for k, v in self.support.items()},
            "ranges": {k: list(v) for k, v in self.ranges.items()},
            "metrics": {
                m: {
                    "coefficients": dict(self.coefficients[m]),
                    "groups": {d: dict(t) for d, t in self.groups.get(m, {}).items()},
                    "quantiles": {float(p): q for p, q in sorted(self.quantiles[m].items())},
                }
                for m in METRICS
            },
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> IntervalModel:
        metrics = data["metrics"]
        return cls(
            support={k: {str(n): int(c) for n, c in v.items()} for k, v in data["support"].items()},
            ranges={k: (float(v[0]), float(v[1])) for k, v in data["ranges"].items()},
            coefficients={m: {k: float(v) for k, v in metrics[m]["coefficients"].items()} for m in METRICS},
            quantiles={m: {float(p): float(q) for p, q in metrics[m]["quantiles"].items()} for m in METRICS},
            groups={
                m: {
                    d: {str(g): float(v) for g, v in t.items()}
                    for d, t in metrics[m].get("groups", {}).items()
                }
                for m in METRICS
            },
            shrink=float(data.get("shrink", SHRINK)),
        )


@lru_cache(maxsize=4)
def load_intervals(path: str | None = None) -> IntervalModel | None:
    """The interval model in ``path`` (default: the packaged file); None when absent."""
    target = Path(path) if path else INTERVALS_FILE
    if not target.is_file():
        return None
    return IntervalModel.from_dict(yaml.safe_load(target.read_text()))
