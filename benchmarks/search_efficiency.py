"""How many trials each sampler needs to find the SLA optimum, against exhaustive truth.

For problems small enough to enumerate on the simulator (dense Qwen3-32B on 8 H200,
Llama-3.1-70B on 16 H100 over two nodes, DeepSeek-R1 fp8 on 64 GB200 with agg and disagg),
each at a loose and a tight SLA, every sampler runs the product's study loop
(:func:`tuner.study.run_trials`, in-memory storage, objective ``sla``) for 10 seeds and we
record:

- ``trials to 2%``: measured trials (distinct deployments, what a live run pays; infeasible
  and duplicate asks cost nothing) until the best SLA pick is within 2% of the exhaustive
  optimum (median over seeds; ``>N`` when the median run did not get there within 20% of
  the feasible space);
- ``HV@5/10/20%``: hypervolume of the found front (tok/s/GPU x tok/s/user over every load
  point, reference (0, 0)) relative to the exhaustive front, after 5%, 10% and 20% of the
  feasible space has been measured (median over seeds), with Optuna's hypervolume.

Then the simulator-guided live search (:mod:`tuner.guided`) against plain TPE and random on
a stand-in "live" world (:mod:`benchmarks.standin_world`: hidden constants + noise): live
trials until the pick is within 2% of that world's optimum. ``--world harsh`` draws
per-seed constants that reorder the top of the simulator's ranking; a table before the live
one says how far the simulator's prior ranking is from each world's truth.

Each problem is priced exhaustively once and trials are answered from that table, so the
benchmark times the samplers, not the simulator. Usage::

    python benchmarks/search_efficiency.py            # full: 10 seeds; 27 min on 2 busy cores
    python benchmarks/search_efficiency.py --quick    # 3 seeds, no GP, a few minutes
    python benchmarks/search_efficiency.py --problems r1 --samplers tpe --no-live  # MoE, TPE only
    python benchmarks/search_efficiency.py --samplers '' --world harsh  # live comparison only

Writes ``docs/search_efficiency.png`` (with ``--problems``, only where ``--plot`` says) and
prints markdown tables.
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import math
import multiprocessing
import statistics
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from optuna._hypervolume import compute_hypervolume
from optuna.trial import TrialState

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from backends.base import Capabilities
from backends.simulator import SimulatorBackend
from benchmarks.standin_world import WORLDS, StandInWorld
from search_spaces import SearchSpace, infeasible_reason, load_space
from serving import CandidateFailed, Deployment, LoadPoint, Problem, Workload, load_gpu, load_model
from tuner.explore import EXPLORE_AFTER, explorer_for
from tuner.guided import GuidedQueue, GuidedSearch
from tuner.samplers import make_sampler
from tuner.sla import SLA
from tuner.study import TrialOutcome, objective_values, run_trials

FRACTIONS = (0.05, 0.10, 0.20)
WITHIN = 0.02
DOCS = Path(__file__).resolve().parents[1] / "docs"


@dataclass(frozen=True)
class Case:
    """One problem at one SLA."""

    name: str
    problem: Problem
    preset: str
    sla: SLA


def _problem(
    model: str,
    gpu: str,
    precision: str,
    gpus: int,
    per_node: int,
    isl: int,
    osl: int,
    ladder: tuple[int, ...],
) -> Problem:
    workload = Workload(isl=isl, osl=osl, concurrency=ladder)
    return Problem(
        arch=load_model(model),
        gpu=load_gpu(gpu),
        precision=precision,
        workload=workload,
        gpus=gpus,
        gpus_per_node=per_node,
    )


def cases() -> list[Case]:
    """The benchmark problems; each SLA's optimum is unique to within 2% for 3-32 deployments."""
    ladder = (1, 2, 4, 8, 16, 32, 64, 128, 256)
    dense = _problem("Qwen3-32B", "H200", "bf16", 8, 8, 4000, 1000, ladder)  # examples/qwen3-32b-h200
    llama = _problem("Llama-3.1-70B", "H100", "bf16", 16, 8, 2000, 500, ladder)
    moe = _problem(
        "DeepSeek-R1", "GB200", "fp8", 64, 4, 1024, 1024, (1, 4, 16, 64, 128, 256, 512, 1024, 2048)
    )  # examples/deepseek-r1-gb200
    return [
        Case("qwen32b-8xH200 loose", dense, "dense-single-node", SLA(30, 2000)),
        Case("qwen32b-8xH200 tight", dense, "dense-single-node", SLA(60, 1000)),
        Case("llama70b-16xH100 loose", llama, "dense-multi-node", SLA(20, 2000)),
        Case("llama70b-16xH100 tight", llama, "dense-multi-node", SLA(40, 1000)),
        Case("r1-64xGB200 loose", moe, "moe-multi-node", SLA(50)),
        Case("r1-64xGB200 tight", moe, "moe-multi-node", SLA(80)),
    ]


# -- exhaustive truth, priced once per problem --------------------------------------------
class Table:
    """Every candidate of a space priced by a backend: the truth and a cached backend."""

    def __init__(self, space: SearchSpace, problem: Problem, backend: Any) -> None:
        self.reasons: dict[str, str] = {}
        self.points: dict[str, list[LoadPoint]] = {}
        self.deployments: dict[str, Deployment] = {}
        for d in space.candidates(problem):
            reason = infeasible_reason(d, problem) or backend.check(d, problem)
            if reason is not None:
                self.reasons[d.key()] = reason
            else:
                self.points[d.key()] = backend.measure(d, problem)
                self.deployments[d.key()] = d
        self.fronts = {k: _own_front(p) for k, p in self.points.items()}
        self.hv = _hv([pt for f in self.fronts.values() for pt in f])

    def optimum(self, sla: SLA) -> float:
        return max(self.value(k, sla) for k in self.points)

    def value(self, key: str, sla: SLA) -> float:
        """The SLA objective of a deployment (0 when no point meets the SLA)."""
        values, violation = objective_values(self.points[key], sla, "sla")
        return values[0] if violation == 0 else 0.0


class CachedBackend:
    """Answers from a :class:`Table`: the product's loop at the cost of a dict lookup."""

    name = "cached"
    capabilities = Capabilities(instant=True)

    def __init__(self, table: Table) -> None:
        self.table = table

    def check(self, deployment: Deployment, problem: Problem) -> str | None:
        return self.table.reasons.get(deployment.key())

    def describe(self) -> dict[str, Any]:
        return {"name": self.name}

    def measure(self, deployment: Deployment, problem: Problem, *, on_point: Any = None) -> list[LoadPoint]:
        points = self.table.points.get(deployment.key())
        if points is None:
            raise CandidateFailed(self.table.reasons.get(deployment.key(), "not in the table"))
        for p in points:
            if on_point is not None:
                on_point(p)
        return points


def _own_front(points: list[LoadPoint]) -> list[tuple[float, float]]:
    pts = sorted(((p.tok_s_gpu, p.tok_s_user) for p in points), reverse=True)
    out: list[tuple[float, float]] = []
    for x, y in pts:
        if not out or y > out[-1][1]:
            out.append((x, y))
    return out


def _hv(points: list[tuple[float, float]]) -> float:
    if not points:
        return 0.0
    return float(compute_hypervolume(-np.array(points), np.zeros(2)))


# -- one sampler run ------------------------------------------------------------------------
def _sampler(name: str, seed: int, candidates: int, space: SearchSpace) -> optuna.samplers.BaseSampler:
    if name == "qmc":
        return optuna.samplers.QMCSampler(seed=seed, scramble=True, warn_independent_sampling=False)
    # As the product: draws snapped to the listed values, so params are deployed values.
    return make_sampler(name, seed=seed, candidates=candidates, snapped=space.ordered_params())


def measured_order(study: optuna.Study) -> list[str]:
    """Keys of the deployments a study measured, in the order it measured them."""
    return [
        Deployment.from_dict(t.user_attrs["deployment"]).key()
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if "deployment" in t.user_attrs and "duplicate_of" not in t.user_attrs
    ]


def score(order: list[str], table: Table, sla: SLA) -> dict[str, float]:
    """Trials to within 2% of the optimum (inf if never) and relative HV at each fraction."""
    optimum, feasible = table.optimum(sla), len(table.points)
    best, hit = 0.0, math.inf
    for i, key in enumerate(order, 1):
        best = max(best, table.value(key, sla))
        if best >= (1 - WITHIN) * optimum and hit == math.inf:
            hit = i
    out = {"trials": float(hit)}
    for f in FRACTIONS:
        k = math.ceil(f * feasible)
        out[f"hv{round(f * 100)}"] = _hv([pt for key in order[:k] for pt in table.fronts[key]]) / table.hv
    return out


def run_sampler(
    case: Case, table: Table, sampler: str, seed: int, explore_after: int = EXPLORE_AFTER
) -> dict[str, float]:
    """One seeded study over ``case`` through the product's study loop (with its exploration
    after ``explore_after`` re-proposals, :mod:`tuner.explore`; 0: without)."""
    budget = math.ceil(max(FRACTIONS) * len(table.points))
    space = load_space(case.preset)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        candidates = len(table.points) + len(table.reasons)
        study = optuna.create_study(direction="maximize", sampler=_sampler(sampler, seed, candidates, space))
        started = time.perf_counter()
        backend = CachedBackend(table)
        run_trials(
            study,
            space=space,
            backend=backend,
            problem=case.problem,
            sla=case.sla,
            objective="sla",
            n_trials=20 * budget,
            distinct=budget,
            explorer=explorer_for(explore_after, space, case.problem, backend, seed=seed),
        )
    out = score(measured_order(study), table, case.sla)
    out["seconds"] = time.perf_counter() - started
    return out


# -- guided search on a stand-in world --------------------------------------------------------
def run_live(
    case: Case,
    method: str,
    seed: int,
    budget: int,
    world: str = "default",
    explore_after: int = EXPLORE_AFTER,
) -> float:
    """Live trials until the pick (best measured, noisy) is truly within 2% of the world's
    optimum; ``inf`` if not within ``budget`` trials. ``world``: a
    :data:`benchmarks.standin_world.WORLDS` name (the harsh world's constants follow ``seed``).

    ``guided`` runs the product's flow (:class:`tuner.guided.GuidedQueue` over the default TPE
    sampler: the simulator's best predictions, refitted after each trial, with every
    ``SAMPLER_EVERY``-th trial left to the sampler); ``tpe`` and ``random`` are plain sampler
    runs. All explore as the study loop does (``explore_after``)."""
    live = StandInWorld(seed=seed, world=world)
    space = load_space(case.preset)
    truth = _world_truth(case, live)
    optimum = max(truth.values())
    picks: list[tuple[float, str]] = []
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sampler = "tpe" if method == "guided" else method
        candidates = sum(1 for _ in space.candidates(case.problem))
        study = optuna.create_study(
            direction="maximize",
            sampler=make_sampler(sampler, seed=seed, candidates=candidates, snapped=space.ordered_params()),
        )
        queue = None
        if method == "guided":
            guide = GuidedSearch(space, case.problem, case.sla, "sla")
            queue = GuidedQueue(guide, study, space, budget=10 * budget)
            queue.start([])

        def on_trial(outcome: TrialOutcome, _summary: Any) -> None:
            if outcome.state == "measured" and outcome.deployment is not None:
                values, violation = objective_values(list(outcome.points), case.sla, "sla")
                if violation == 0:
                    picks.append((values[0], outcome.deployment.key()))
            if queue is not None:
                measured, failed = outcome.state == "measured", outcome.state == "failed"
                queue.after_trial(outcome.deployment, outcome.points, measured, failed)

        explorer = explorer_for(explore_after, space, case.problem, live, seed=seed)
        for measured in range(1, budget + 1):
            run_trials(
                study,
                space=space,
                backend=live,
                problem=case.problem,
                sla=case.sla,
                objective="sla",
                n_trials=10 * budget,
                on_trial=on_trial,
                distinct=measured,
                explorer=explorer,
            )
            if picks and truth[max(picks)[1]] >= (1 - WITHIN) * optimum:
                return float(measured)
    return math.inf


_TRUTH: dict[tuple[str, tuple[tuple[str, float], ...]], dict[str, float]] = {}


def _world_truth(case: Case, world: StandInWorld) -> dict[str, float]:
    """Noiseless SLA value of every feasible deployment in ``world``, cached per hidden
    constants (the default world's are the same for every seed, the harsh world's are not)."""
    cache_key = (case.name, tuple(sorted(world.multipliers.items())))
    if cache_key not in _TRUTH:
        space = load_space(case.preset)
        out = {}
        for d in space.candidates(case.problem):
            if infeasible_reason(d, case.problem) or world.check(d, case.problem):
                continue
            values, violation = objective_values(world.true_points(d, case.problem), case.sla, "sla")
            out[d.key()] = values[0] if violation == 0 else 0.0
        _TRUTH[cache_key] = out
    return _TRUTH[cache_key]


def harshness(case: Case, world: str, seed: int) -> tuple[int, int, float]:
    """How far the simulator's prior ranking (packaged constants, the order
    :class:`GuidedSearch` proposes in before any refit) is from ``world``'s truth: the rank
    of the first deployment within 2% of the world's optimum, counted in deployments and in
    distinct topologies (labels), and the true value of the prior's top pick / optimum."""
    guide = GuidedSearch(load_space(case.preset), case.problem, case.sla, "sla")
    truth = _world_truth(case, StandInWorld(seed=seed, world=world))
    optimum = max(truth.values())
    labels: list[str] = []
    ranked = guide.propose(len(guide.feasible))
    for rank, d in enumerate(ranked, 1):
        if d.label() not in labels:
            labels.append(d.label())
        if truth[d.key()] >= (1 - WITHIN) * optimum:
            return rank, len(labels), truth[ranked[0].key()] / optimum
    raise AssertionError("the world's optimum is not in the prior ranking")


# -- driver -------------------------------------------------------------------------------------
_TABLES: dict[str, Table] = {}  # filled before the pool forks, read by the workers


_CASES: list[Case] = []  # the chosen problems, set before the pool forks
_EXPLORE_AFTER = [EXPLORE_AFTER]  # the study loop's exploration setting, set before the fork


def _task(args: tuple[int, str, int]) -> tuple[int, str, int, dict[str, float]]:
    index, sampler, seed = args
    case = _CASES[index]
    table = _TABLES[case.problem.arch.name]
    return index, sampler, seed, run_sampler(case, table, sampler, seed, _EXPLORE_AFTER[0])


def _live_task(args: tuple[int, str, int, int, str]) -> tuple[int, str, float]:
    index, method, seed, budget, world = args
    return index, method, run_live(_CASES[index], method, seed, budget, world, _EXPLORE_AFTER[0])


def _harshness_task(args: tuple[int, int, str]) -> tuple[int, tuple[int, int, float]]:
    index, seed, world = args
    return index, harshness(_CASES[index], world, seed)


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else math.nan


def _fmt_trials(value: float, budget: int) -> str:
    return f">{budget}" if math.isinf(value) else f"{value:.0f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="3 seeds, no GP (a few minutes)")
    parser.add_argument("--seeds", type=int, default=None, help="seeds per sampler (default 10, quick 3)")
    parser.add_argument("--jobs", type=int, default=2, help="worker processes (default 2)")
    parser.add_argument("--samplers", default="tpe,nsga2,gp,random,qmc")
    parser.add_argument(
        "--gp-seeds", type=int, default=1, help="seeds for the slow GP sampler (~4 min a MoE run)"
    )
    parser.add_argument(
        "--problems", default="", help="comma-separated parts of problem names to run (default: all)"
    )
    parser.add_argument("--no-live", action="store_true", help="skip the guided-search comparison")
    parser.add_argument(
        "--explore-after",
        type=int,
        default=EXPLORE_AFTER,
        help=f"the study loop's exploration (tuner/explore.py; default {EXPLORE_AFTER}, 0: off)",
    )
    parser.add_argument(
        "--world",
        choices=WORLDS,
        default="default",
        help="stand-in world of the guided-search comparison (harsh: per-seed constants)",
    )
    parser.add_argument(
        "--plot", default=None, help="chart path (default docs/search_efficiency.png; none with --problems)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    seeds = args.seeds or (3 if args.quick else 10)
    samplers = [s for s in args.samplers.split(",") if s]
    has_gp = importlib.util.find_spec("torch") is not None and importlib.util.find_spec("scipy") is not None
    if "gp" in samplers and (args.quick or not has_gp):
        samplers.remove("gp")
        print("GP skipped:", "--quick" if has_gp else "torch and scipy are not importable")
    wanted = [w for w in args.problems.split(",") if w]
    all_cases = [c for c in cases() if not wanted or any(w in c.name for w in wanted)]
    if not all_cases:
        parser.error(f"--problems {args.problems!r} matches none of: {', '.join(c.name for c in cases())}")
    _CASES[:] = all_cases
    _EXPLORE_AFTER[0] = args.explore_after
    sim = SimulatorBackend()
    started = time.perf_counter()
    for case in all_cases:
        if case.problem.arch.name not in _TABLES:
            _TABLES[case.problem.arch.name] = Table(load_space(case.preset), case.problem, sim)
    print(f"exhaustive pricing: {time.perf_counter() - started:.1f}s")
    tasks = [
        (i, s, seed)
        for i in range(len(all_cases))
        for s in samplers
        for seed in range(args.gp_seeds if s == "gp" else seeds)
    ]
    results: dict[tuple[int, str], list[dict[str, float]]] = {}
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(args.jobs) as pool:
        for index, sampler, _seed, out in pool.imap_unordered(_task, tasks):
            results.setdefault((index, sampler), []).append(out)
        live = "" if args.no_live else _live_results(pool, all_cases, seeds, args.world)
    print(f"\nsampler runs: {time.perf_counter() - started:.0f}s\n")
    if samplers:  # --samplers '' runs only the live comparison
        print(_table(all_cases, samplers, results))
    if live:
        print(live)
    plot = args.plot or (None if wanted else str(DOCS / "search_efficiency.png"))
    if plot and samplers:  # a subset of the problems does not overwrite the docs' chart unless asked
        _plot(all_cases, samplers, results, Path(plot))
        print(f"\nplot: {plot}")
    return 0


def _live_results(pool: Any, all_cases: list[Case], seeds: int, world: str) -> str:
    chosen = [i for i, c in enumerate(all_cases)]
    budgets = {
        i: min(60, math.ceil(0.2 * len(_TABLES[all_cases[i].problem.arch.name].points))) for i in chosen
    }
    lines = _harshness_table(pool, all_cases, seeds, world)
    tasks = [
        (i, m, seed, budgets[i], world)
        for i in chosen
        for m in ("guided", "tpe", "random")
        for seed in range(seeds)
    ]
    found: dict[tuple[int, str], list[float]] = {}
    for index, method, value in pool.imap_unordered(_live_task, tasks):
        found.setdefault((index, method), []).append(value)
    lines += [
        f"\nLive trials to within 2% of the stand-in world's optimum (median, range over "
        f"{seeds} seeds; world {world!r} = simulator with hidden constants + 3% noise)\n",
        "| problem | guided | TPE | random |",
        "|---|---|---|---|",
    ]
    for i in chosen:
        row = []
        for m in ("guided", "tpe", "random"):
            values = sorted(found[i, m])
            span = f"{_fmt_trials(values[0], budgets[i])}-{_fmt_trials(values[-1], budgets[i])}"
            row.append(f"{_fmt_trials(_median(values), budgets[i])} ({span})")
        lines.append(f"| {all_cases[i].name} | " + " | ".join(row) + " |")
    return "\n".join(lines)


def _harshness_table(pool: Any, all_cases: list[Case], seeds: int, world: str) -> list[str]:
    found: dict[int, list[tuple[int, int, float]]] = {}
    jobs = [(i, seed, world) for i in range(len(all_cases)) for seed in range(seeds)]
    for index, out in pool.imap_unordered(_harshness_task, jobs):
        found.setdefault(index, []).append(out)
    lines = [
        f"\nHow far the simulator's prior ranking is from the {world!r} world's truth "
        f"({seeds} seeds): rank in the prior of the first deployment within 2% of the "
        "world's optimum (median, range; in deployments and in distinct topologies), and "
        "the true value of the prior's top pick relative to the optimum (median, worst)\n",
        "| problem | rank (deployments) | rank (topologies) | prior top-1 within 2% | top-1 / optimum |",
        "|---|---|---|---|---|",
    ]
    for i, case in enumerate(all_cases):
        ranks, topo, top = (sorted(col) for col in zip(*found[i], strict=True))
        hits = sum(t >= 1 - WITHIN for t in top)
        lines.append(
            f"| {case.name} | {_median(ranks):g} ({ranks[0]}-{ranks[-1]}) | "
            f"{_median(topo):g} ({topo[0]}-{topo[-1]}) | {hits}/{len(top)} | "
            f"{_median(top):.1%} ({top[0]:.1%}) |"
        )
    return lines


def _table(
    all_cases: list[Case], samplers: list[str], results: dict[tuple[int, str], list[dict[str, float]]]
) -> str:
    lines = [
        "| problem (feasible) | sampler | trials to 2% (median, range) | HV@5% | HV@10% | HV@20% | s/run |",
        "|---|---|---|---|---|---|---|",
    ]
    for i, case in enumerate(all_cases):
        feasible = len(_TABLES[case.problem.arch.name].points)
        budget = math.ceil(max(FRACTIONS) * feasible)
        for s in samplers:
            runs = results.get((i, s), [])
            trials = sorted(r["trials"] for r in runs)
            span = f"{_fmt_trials(trials[0], budget)}-{_fmt_trials(trials[-1], budget)}" if trials else ""
            hv = [f"{_median([r[f'hv{round(f * 100)}'] for r in runs]):.1%}" for f in FRACTIONS]
            lines.append(
                f"| {case.name} ({feasible}) | {s} ({len(runs)} seeds) | "
                f"{_fmt_trials(_median(trials), budget)} ({span}) | "
                + " | ".join(hv)
                + f" | {_median([r['seconds'] for r in runs]):.1f} |"
            )
    return "\n".join(lines)


def _plot(
    all_cases: list[Case],
    samplers: list[str],
    results: dict[tuple[int, str], list[dict[str, float]]],
    path: Path,
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    x = np.arange(len(all_cases))
    width = 0.8 / max(1, len(samplers))
    for j, s in enumerate(samplers):
        fracs, hvs = [], []
        for i, case in enumerate(all_cases):
            feasible = len(_TABLES[case.problem.arch.name].points)
            runs = results.get((i, s), [])
            med = _median([r["trials"] for r in runs])
            fracs.append(min(med / feasible, 0.21) if runs else math.nan)
            hvs.append(_median([r["hv10"] for r in runs]))
        axes[0].bar(x + j * width, [100 * f for f in fracs], width, label=s)
        axes[1].bar(x + j * width, [100 * h for h in hvs], width, label=s)
    axes[0].axhline(5, color="k", ls="--", lw=0.8)
    axes[0].set_ylabel("median trials to 2% of optimum\n(% of the feasible space)")
    axes[1].axhline(98, color="k", ls="--", lw=0.8)
    axes[1].set_ylabel("median hypervolume after 10%\nof the space (% of exhaustive)")
    axes[1].set_ylim(50, 101)
    for ax in axes:
        ax.set_xticks(x + 0.4 - width / 2, [c.name for c in all_cases], rotation=30, ha="right", fontsize=8)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    sys.exit(main())
