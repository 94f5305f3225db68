"""Refit the simulator's global constants on measured points (calibration.csv).

Weighted, robust least squares (``scipy.optimize.least_squares``, Cauchy loss) over the log
ratio predicted/measured of TTFT, TPOT and tok/s/GPU (output tok/s/GPU for max-throughput
rows), in log space of the constants, with a ridge penalty pulling each constant towards its
sourced prior value in ``constants.yaml``. The prior is what a constant keeps when the data
say nothing about it (e.g. Blackwell efficiencies when every Blackwell row is held out), so
leave-one-out fits stay physical. Only the GLOBAL constants in :data:`FIT` move: no per-point,
per-configuration or per-model term exists.

    python benchmarks/fidelity/fit.py [--csv ../shared/fidelity/calibration.csv] [--write]
"""

from __future__ import annotations

import argparse
import csv
import logging
import math
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))

from backends.simulator import Constants, load_constants  # noqa: E402
from tuner.validate import Prediction, Predictor, RowError, row_deployment  # noqa: E402

__all__ = ["DEFAULT_CSV", "FIT", "Case", "fit_constants", "load_cases", "predict_cases", "residuals"]

logger = logging.getLogger("fit")

DEFAULT_CSV = ROOT.parent / "shared" / "fidelity" / "calibration.csv"
CONSTANTS_YAML = ROOT / "backends" / "simulator" / "constants.yaml"
#: Sourced prior values (with their comments): the fit's start and its pull.
PRIORS_YAML = Path(__file__).resolve().parent / "priors.yaml"

#: Constants the fit moves, with (low, high) bounds; the rest keep their sourced values.
FIT: dict[str, tuple[float, float]] = {
    "hbm_efficiency": (0.4, 0.95),
    "hbm_efficiency_blackwell": (0.3, 0.95),
    "gemm_compute_efficiency": (0.25, 0.85),
    "gemm_compute_efficiency_blackwell": (0.15, 0.85),
    "roofline_sharpness": (1.0, 8.0),
    "attn_prefill_efficiency": (0.15, 0.8),
    "kernel_speed_sglang": (0.5, 1.5),
    "kernel_speed_vllm": (0.5, 1.5),
    "step_overhead_us_trtllm": (20.0, 5000.0),
    "step_overhead_us_sglang": (20.0, 5000.0),
    "step_overhead_us_vllm": (20.0, 5000.0),
    "request_overhead_us_trtllm": (1000.0, 200000.0),
    "request_overhead_us_sglang": (1000.0, 200000.0),
    "request_overhead_us_vllm": (1000.0, 200000.0),
    "moe_imbalance": (1.0, 3.0),
    "burst_fraction_trtllm": (0.01, 1.0),
    "burst_fraction_sglang": (0.01, 1.0),
    "burst_fraction_vllm": (0.01, 1.0),
    "mtp_acceptance": (0.3, 1.0),
    "fp4_compute_scale": (0.2, 1.0),
    "fp8_block_compute_scale": (0.3, 1.0),
    "moe_expert_fixed_us": (0.02, 10.0),
    "kernel_fixed_scale": (0.05, 2.0),
    "seq_overhead_us_trtllm": (0.1, 100.0),
    "seq_overhead_us_sglang": (0.1, 100.0),
    "seq_overhead_us_vllm": (0.1, 100.0),
    "ib_latency_us": (5.0, 200.0),
}
#: Residual scale per metric (log units): the error we aim for, so each metric counts
#: in proportion to its target (TPOT 8%, tok/s 10%, TTFT 25%).
SCALE = {"ttft_ms": 0.25, "tpot_ms": 0.08, "tok_s_gpu": 0.10, "output_tok_s_gpu": 0.08}
PRED = {m: f"pred_{m}" for m in SCALE}
#: Robust loss: Cauchy, whose influence fades for gross outliers (a few measured sweeps disagree
#: with their own twins 2-12x, see docs/fidelity.md), so they cannot drag a shared constant the
#: way an L1-like loss lets them when they are most of a slice (e.g. Blackwell with B200 held out).
LOSS = "cauchy"
#: Weight of the pull towards the prior, per log-unit of deviation (about one row's worth).
PRIOR_WEIGHT = 2.0


@dataclass(frozen=True)
class Case:
    """One calibration row mapped once to (deployment, problem, engine)."""

    row: dict[str, str]
    case: tuple[object, ...]


def load_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return [dict(r) for r in csv.DictReader(fh)]


def load_cases(rows: Sequence[Mapping[str, str]]) -> list[Case]:
    """Rows the simulator can map, each parsed once."""
    out = []
    for row in rows:
        try:
            out.append(Case(dict(row), row_deployment(row)))
        except RowError:
            continue
    return out


def predict_cases(cases: Sequence[Case], consts: Constants) -> list[Prediction]:
    predictor = Predictor(constants=consts)
    return [predictor.predict_case(c.row, c.case) for c in cases]  # type: ignore[arg-type]


def _measured(row: Mapping[str, str], metric: str) -> float:
    try:
        value = float(row.get(metric) or "nan")
    except ValueError:
        return math.nan
    return value if value > 0 else math.nan


def residuals(cases: Sequence[Case], preds: Sequence[Prediction]) -> np.ndarray:
    """Scaled log errors, one slot per (row, metric); 0 where either side is missing."""
    out = np.zeros(len(cases) * len(SCALE))
    i = 0
    for case, pred in zip(cases, preds, strict=True):
        for metric, scale in SCALE.items():
            m = _measured(case.row, metric)
            p = pred.values.get(PRED[metric], math.nan) if pred.status == "ok" else math.nan
            if math.isfinite(m) and math.isfinite(p) and p > 0:
                out[i] = math.log(p / m) / scale
            i += 1
    return out


def _with(base: Constants, names: Sequence[str], x: np.ndarray) -> Constants:
    return replace(base, **{n: float(math.exp(v)) for n, v in zip(names, x, strict=True)})


def fit_constants(
    cases: Sequence[Case],
    prior: Constants,
    *,
    names: Sequence[str] | None = None,
    max_nfev: int = 60,
    progress: Callable[[str], None] | None = None,
) -> Constants:
    """The constants minimising the robust loss of :func:`residuals` plus the prior pull."""
    from scipy.optimize import least_squares  # the `fit` extra

    names = list(names or FIT)
    x0 = np.array([math.log(getattr(prior, n)) for n in names])
    lo = np.array([math.log(FIT[n][0]) for n in names])
    hi = np.array([math.log(FIT[n][1]) for n in names])
    x0 = np.clip(x0, lo + 1e-9, hi - 1e-9)
    calls = [0]

    def fun(x: np.ndarray) -> np.ndarray:
        calls[0] += 1
        consts = _with(prior, names, x)
        data = residuals(cases, predict_cases(cases, consts))
        pull = PRIOR_WEIGHT * (x - x0)
        if progress is not None and calls[0] % 25 == 0:
            progress(f"  eval {calls[0]}: cost {0.5 * float(np.sum(np.minimum(data**2, 25.0))):.0f}")
        return np.concatenate([data, pull])

    result = least_squares(
        fun, x0, bounds=(lo, hi), loss=LOSS, f_scale=1.0, max_nfev=max_nfev, diff_step=1e-3
    )
    return _with(prior, names, result.x)


def write_constants(consts: Constants, path: Path = CONSTANTS_YAML, *, template: Path = PRIORS_YAML) -> None:
    """Write ``template`` (the priors, comments kept) with the fitted values to ``path``."""
    lines = template.read_text().splitlines()
    values = consts.to_dict()
    out = []
    for line in lines:
        key = line.split(":", 1)[0]
        if key in FIT and not line.startswith("#"):
            value = values[key]
            text = f"{value:.4g}" if abs(value) < 100 else f"{value:.1f}"
            line = f"{key}: {text}  # fitted; prior {line.split(':', 1)[1].split('#')[0].strip()}"
        out.append(line)
    path.write_text("\n".join(out) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--csv", type=Path, default=DEFAULT_CSV, help="calibration points")
    parser.add_argument("--priors", type=Path, default=PRIORS_YAML, help="prior constants YAML")
    parser.add_argument("--max-nfev", type=int, default=60)
    parser.add_argument("--write", action="store_true", help="write the result into constants.yaml")
    parser.add_argument("--out", type=Path, help="write the result to this YAML file instead")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    prior = load_constants(str(args.priors))
    cases = load_cases(load_rows(args.csv))
    start = time.perf_counter()
    fitted = fit_constants(cases, prior, max_nfev=args.max_nfev, progress=logger.info)
    logger.info("fit: %d rows, %.0f s", len(cases), time.perf_counter() - start)
    for name in FIT:
        logger.info("  %-36s %10.4g  (prior %.4g)", name, getattr(fitted, name), getattr(prior, name))
    if args.write or args.out:
        target = args.out or CONSTANTS_YAML
        write_constants(fitted, target)
        logger.info("wrote %s", target)
    return 0


if __name__ == "__main__":
    sys.exit(main())
