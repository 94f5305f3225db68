"""Sanity check of the simulator backend against shared/fidelity/calibration.csv.

Prices every ``load_point`` row with ``spec_decode == none`` and prints the median absolute
percentage error and the median predicted/measured ratio of TTFT, TPOT and tok/s/GPU,
overall and per (source, mode), plus the time per prediction. Rows the simulator rejects
(memory fit, unsupported) are counted and skipped. Not a test: a quick look at whether
predictions are in the right ballpark before the constants are fitted.

    python benchmarks/simulator_sanity.py [--csv PATH] [--constants YAML] [--by hardware]
"""

from __future__ import annotations

import argparse
import csv
import math
import statistics
import time
from collections import defaultdict
from pathlib import Path

from backends.simulator import SimulatorBackend
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

DEFAULT_CSV = Path("/work/shared/fidelity/calibration.csv")
METRICS = ("ttft_ms", "tpot_ms", "tok_s_gpu")


def _group(row: dict[str, str], prefix: str, concurrency: int) -> WorkerGroup:
    """A worker group from the row's ``{prefix}workers/tp/dp/ep`` columns. The measured
    engines admitted every user, so max_num_seqs is at least the per-rank concurrency."""
    get = lambda name: int(row[f"{prefix}{name}"] or 1)  # noqa: E731
    par = Parallelism(tp=get("tp"), dp=get("dp"), ep=get("ep"))
    count = get("workers")
    seqs = max(256, math.ceil(concurrency / (count * par.dp)))
    return WorkerGroup(parallel=par, count=count, knobs=EngineKnobs(max_num_seqs=seqs))


def row_problem(row: dict[str, str]) -> tuple[Deployment, Problem]:
    """The (deployment, problem) a calibration row describes."""
    conc = int(row["concurrency"])
    if row["mode"] == "agg":
        dep = Deployment(mode="agg", agg=_group(row, "", conc))
    else:
        dep = Deployment(mode="disagg", prefill=_group(row, "p_", conc), decode=_group(row, "d_", conc))
    gpu = load_gpu(row["hardware"])
    workload = Workload(isl=int(row["isl"]), osl=int(row["osl"]), concurrency=(conc,))
    problem = Problem(
        arch=load_model(row["model"]),
        gpu=gpu,
        precision=row["precision"],
        workload=workload,
        gpus=dep.gpus(),
        gpus_per_node=gpu.nvlink_domain,
    )
    return dep, problem


def _summary(pairs: list[tuple[float, float]]) -> str:
    if not pairs:
        return "      -            -  "
    err = statistics.median(abs(p / m - 1.0) * 100 for p, m in pairs)
    ratio = statistics.median(p / m for p, m in pairs)
    return f"{err:6.1f}%  x{ratio:5.2f}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--csv", type=Path, default=DEFAULT_CSV)
    parser.add_argument("--constants", default=None, help="alternative constants YAML")
    parser.add_argument("--by", default="source,mode", help="comma-separated columns to slice by")
    args = parser.parse_args(argv)
    backend = SimulatorBackend(**({"constants": args.constants} if args.constants else {}))
    rows = [
        r for r in csv.DictReader(args.csv.open()) if r["kind"] == "load_point" and r["spec_decode"] == "none"
    ]
    keys = args.by.split(",")
    pairs: dict[tuple[str, ...], dict[str, list[tuple[float, float]]]] = defaultdict(
        lambda: defaultdict(list)
    )
    skipped: dict[str, int] = defaultdict(int)
    elapsed, priced = 0.0, 0
    for row in rows:
        try:
            dep, problem = row_problem(row)
        except ConfigError as err:
            skipped[f"config: {err.field}"] += 1
            continue
        except ValueError:
            skipped["blank column"] += 1
            continue
        start = time.perf_counter()
        reason = backend.check(dep, problem)
        points: list[LoadPoint] = [] if reason else backend.measure(dep, problem)
        elapsed += time.perf_counter() - start
        if reason:
            skipped[reason.split(":")[0]] += 1
            continue
        priced += 1
        point = points[0]
        for slice_key in (("all",), tuple(row[k] for k in keys)):
            for metric in METRICS:
                measured = float(row[metric] or "nan")
                if measured > 0:
                    pairs[slice_key][metric].append((point.metric(metric), measured))
    print(f"rows: {len(rows)}  priced: {priced}  skipped: {dict(skipped)}")
    print(f"time per prediction (check + measure, one level): {elapsed / max(priced, 1) * 1e6:.0f} us")
    header = "".join(f"{m:>20}" for m in METRICS)
    print(f"{'slice':<34}{'n':>5}{header}\n{'':<39}" + "   med|err|  med p/m " * 3)
    for slice_key in sorted(pairs, key=lambda k: (k != ("all",), k)):
        cols = "".join(f"  {_summary(pairs[slice_key][m])}" for m in METRICS)
        n = len(pairs[slice_key]["tok_s_gpu"])
        print(f"{'/'.join(slice_key):<34}{n:>5}{cols}")


if __name__ == "__main__":
    main()
