"""How fast `tuner tune` answers on the simulator, and how good the answer is.

For the dense example (Qwen3-32B on 8 x H200) and the seed chart (DeepSeek-R1 FP8 on 64
GB200) this prints:

- the wall time of the whole ``tuner tune`` command (fresh run directory each time, so no
  resume), median and range over ``--runs``, and the trials per second it implies;
- the SLA pick's tok/s/GPU next to the best that an exhaustive enumeration of the same
  search space on the simulator finds, and their ratio (goal: within 1%);
- where NVIDIA AIConfigurator 0.12 is installed (``pip install -e '.[benchmark]'``, or
  ``--aic PATH`` to its ``aiconfigurator`` executable), the wall time of its
  ``aiconfigurator cli default`` for the same model, GPUs, lengths and SLA in the same
  run, and the ratio ours / theirs (goal: at most 0.2).

Usage: ``python benchmarks/tune_speed.py [--runs 3] [--aic PATH] [--only dense|moe]``.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from backends import create  # noqa: E402
from search_spaces import infeasible_reason, load_space  # noqa: E402
from tuner import confidence as robust  # noqa: E402
from tuner.spec import build_problem, load_spec  # noqa: E402
from tuner.studies import default_preset  # noqa: E402

#: Our GPU ids -> AIConfigurator system names (aiconfigurator_core/systems/*.yaml).
AIC_SYSTEMS = {
    "h100_sxm": "h100_sxm",
    "h200_sxm": "h200_sxm",
    "b200": "b200_sxm",
    "gb200": "gb200",
    "b300": "b300_sxm",
    "gb300": "gb300",
    "a100_sxm": "a100_sxm",
    "l40s": "l40s",
}


@dataclass(frozen=True)
class Problem:
    name: str
    spec: Path


PROBLEMS = {
    "dense": Problem("dense: Qwen3-32B bf16, 8 x H200", ROOT / "examples" / "qwen3-32b-h200.yaml"),
    "moe": Problem("seed chart: DeepSeek-R1 fp8, 64 x GB200", ROOT / "examples" / "deepseek-r1-gb200.yaml"),
}


def time_command(argv: list[str], runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        proc = subprocess.run(argv, capture_output=True, text=True)
        times.append(time.perf_counter() - start)
        if proc.returncode not in (0, 1):
            raise SystemExit(
                f"{' '.join(argv[:4])}... failed ({proc.returncode}): {proc.stderr.strip()[-500:]}"
            )
    return times


def tuner_run(spec: Path, runs: int) -> tuple[list[float], float, int]:
    """Wall times, the pick's tok/s/GPU and the number of trials of the last run."""
    times, pick, trials = [], float("nan"), 0
    for _ in range(runs):
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "run"
            times += time_command(
                [sys.executable, "-m", "tuner.cli", "tune", str(spec), "--out", str(out), "-q"], 1
            )
            doc = yaml.safe_load((out / "pick.yaml").read_text())
            pick = doc["operating_point"]["tok_s_gpu"]
            trials = doc["study"]["trials"]
    return times, pick, trials


def exhaustive_best(spec_path: Path) -> tuple[float, int, float]:
    """(best SLA-feasible tok/s/GPU, feasible candidates, seconds) over the whole space,
    feasible as the pick decides it."""
    spec = load_spec(spec_path)
    problem = build_problem(spec)
    space = load_space(default_preset(spec, problem))
    sim = create("simulator")
    # The pick's own rule: every simulator point is estimated, so the robust SLA test at
    # the spec's confidence (default 0.9) applies to the exhaustive best as to the pick.
    level = spec.sla.confidence if spec.sla.confidence is not None else robust.DEFAULT_CONFIDENCE
    start = time.perf_counter()
    best, feasible = 0.0, 0
    for dep in space.candidates(problem):
        if infeasible_reason(dep, problem) or sim.check(dep, problem):
            continue
        feasible += 1
        for p in sim.measure(dep, problem):
            if robust.meets(spec.sla, p, level):
                best = max(best, p.tok_s_gpu)
    return best, feasible, time.perf_counter() - start


def aic_argv(aic: str, spec_path: Path, save_dir: str) -> list[str]:
    spec = load_spec(spec_path)
    problem = build_problem(spec)
    sla = spec.sla
    argv = [
        aic,
        "cli",
        "default",
        "--model-path",
        problem.arch.hf_id or problem.arch.name,
        "--total-gpus",
        str(spec.hardware.gpus),
        "--system",
        AIC_SYSTEMS[problem.gpu.name],
        "--isl",
        str(spec.workload.isl),
        "--osl",
        str(spec.workload.osl),
        "--save-dir",
        save_dir,
        "--log-level",
        "ERROR",
    ]
    if sla.min_tok_s_user:
        argv += ["--tpot", f"{1000.0 / sla.min_tok_s_user:.2f}"]
    if sla.max_ttft_ms:
        argv += ["--ttft", f"{sla.max_ttft_ms:g}"]
    return argv


def find_aic(given: str | None) -> str | None:
    return given or shutil.which("aiconfigurator")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=3, help="timed runs of tuner tune per problem")
    parser.add_argument("--aic", help="path to the aiconfigurator executable (default: on PATH)")
    parser.add_argument("--only", choices=sorted(PROBLEMS), help="one problem only")
    args = parser.parse_args()
    aic = find_aic(args.aic)
    names = [args.only] if args.only else list(PROBLEMS)
    print(
        f"{'problem':42} {'tuner s (min-max)':>20} {'trials/s':>9} {'pick':>9} {'exhaustive':>10} "
        f"{'pick/best':>9} {'AIC s':>7} {'ours/AIC':>8}"
    )
    for key in names:
        prob = PROBLEMS[key]
        times, pick, trials = tuner_run(prob.spec, args.runs)
        best, feasible, enum_s = exhaustive_best(prob.spec)
        med = statistics.median(times)
        aic_s = ratio = "n/a"
        if aic:
            with tempfile.TemporaryDirectory() as tmp:
                aic_time = time_command(aic_argv(aic, prob.spec, tmp), 1)[0]
            aic_s, ratio = f"{aic_time:.1f}", f"{med / aic_time:.2f}"
        print(
            f"{prob.name:42} {med:6.2f} ({min(times):.2f}-{max(times):.2f}) {trials / med:9.1f} "
            f"{pick:9.0f} {best:10.0f} {pick / best:9.3f} {aic_s:>7} {ratio:>8}"
        )
        print(f"{'':42} {trials} trials; exhaustive: {feasible} feasible candidates priced in {enum_s:.2f} s")
    if not aic:
        print(
            "AIConfigurator not found: install the benchmark extra "
            "(pip install -e '.[benchmark]') or pass --aic"
        )


if __name__ == "__main__":
    main()
