"""The ``tuner`` command line: thin subcommands that wire spec, study, backends and outputs.

Expected failures (bad input, no SLA-feasible deployment) print one line and exit non-zero:
2 for bad input, 1 when no deployment meets the SLA, 130 when interrupted.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console

from . import __version__
from .console import TrialProgress, front_table, pick_table, point_dict, summary_line
from .errors import ConfigError, NoFeasiblePick, TunerError
from .pick import closest_points, pick_best
from .runs import RunData, finalize, load_run, tune
from .sla import SLA
from .spec import OBJECTIVES, SAMPLERS, StudySpec, load_spec

__all__ = ["build_parser", "main"]

out = Console()
err = Console(stderr=True)


def _override(spec: StudySpec, args: argparse.Namespace) -> StudySpec:
    """Apply command-line overrides on top of the spec (flags win)."""
    study = dataclasses.replace(
        spec.study,
        **{k: v for k, v in {"trials": args.trials, "sampler": args.sampler, "seed": args.seed,
                             "storage": args.storage, "name": args.study,
                             "objective": args.objective}.items() if v is not None},
    )
    changes: dict[str, object] = {"study": study}
    if args.out:
        changes["output_dir"] = args.out
    if args.backend:
        changes["backend"] = dataclasses.replace(spec.backend, name=args.backend)
    return dataclasses.replace(spec, **changes)


def cmd_tune(args: argparse.Namespace) -> int:
    spec = _override(load_spec(args.spec), args)
    progress = TrialProgress(err, enabled=not args.quiet)
    with progress:
        try:
            result = tune(spec, on_trial=progress.update, on_start=progress.start)
        except KeyboardInterrupt:
            err.print(f"interrupted; measured points are stored. Resume with: tuner tune {' '.join(sys.argv[2:])}")
            return 130
    if not args.quiet:
        err.print(summary_line(result.summary))
    out.print(front_table(result.points))
    out.print(f"run directory: {spec.output_dir}")
    if result.pick is None:
        return _no_pick(RunData(spec, result.study, result.points), spec.sla, result.no_pick_reason or "")
    out.print(pick_table(result.pick))
    if args.require_tok_s_gpu is not None and result.pick.chosen.point.tok_s_gpu < args.require_tok_s_gpu:
        err.print(f"check failed: best pick {result.pick.chosen.point.tok_s_gpu:,.1f} tok/s/GPU "
                  f"< required {args.require_tok_s_gpu:,.1f}")
        return 1
    return 0


def _no_pick(run: RunData, sla: SLA, reason: str) -> int:
    err.print(f"[bold red]{reason}[/]")
    near = closest_points(run.points, sla)
    if near:
        from .console import _table

        out.print(_table("closest points to the SLA", near))
    return 1


def _load(args: argparse.Namespace) -> RunData:
    return load_run(args.run, storage=args.storage, study_name=args.study)


def cmd_show(args: argparse.Namespace) -> int:
    run = _load(args)
    try:
        pick = pick_best(run.points, run.spec.sla)
    except NoFeasiblePick:
        pick = None
    if args.json:
        from .front import pareto_front

        doc = {"study": run.study.study_name, "points": len(run.points),
               "front": [point_dict(m) for m in pareto_front(run.points)],
               "pick": point_dict(pick.chosen) if pick else None, "sla": dataclasses.asdict(run.spec.sla)}
        print(json.dumps(doc, indent=2))
        return 0
    out.print(front_table(run.points, limit=args.top))
    if pick is not None:
        out.print(pick_table(pick))
    else:
        out.print(f"no point meets the SLA ({run.spec.sla.describe()})")
    return 0


def cmd_pick(args: argparse.Namespace) -> int:
    run = _load(args)
    base = run.spec.sla
    sla = SLA(
        min_tok_s_user=base.min_tok_s_user if args.min_tok_s_user is None else args.min_tok_s_user,
        max_ttft_ms=base.max_ttft_ms if args.max_ttft_ms is None else args.max_ttft_ms,
        max_tpot_ms=base.max_tpot_ms if args.max_tpot_ms is None else args.max_tpot_ms,
        percentile=base.percentile if args.percentile is None else args.percentile,
    )
    target = Path(args.out or args.run or run.spec.output_dir)
    pick, reason = finalize(run, sla, target)
    if pick is None:
        return _no_pick(run, sla, reason or "")
    if args.json:
        print(json.dumps(point_dict(pick.chosen), indent=2))
    else:
        out.print(pick_table(pick))
        out.print(f"wrote {target / 'pick.yaml'} and {target / 'deploy'}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from .export import write_exports
    from .spec import build_problem

    run = _load(args)
    pick = pick_best(run.points, run.spec.sla)
    target = Path(args.out or Path(args.run or run.spec.output_dir) / "deploy")
    files = write_exports(pick.chosen.deployment, build_problem(run.spec), target, formats=tuple(args.format or ("vllm", "kubernetes")))
    for f in files:
        out.print(str(f))
    return 0


def _run_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", nargs="?", help="run directory (holds study.db)")
    p.add_argument("--storage", help="Optuna storage URL instead of RUN/study.db")
    p.add_argument("--study", help="study name (needed when the storage holds several)")


def _positive_float(text: str) -> float:
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tuner", description="Find the LLM-serving deployment with the most tokens/s per GPU at your SLA.")
    parser.add_argument("--version", action="version", version=f"tuner {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("tune", help="run (or resume) a tuning study from a spec file",
                       description="Run the study of SPEC; re-running the same command resumes it.")
    p.add_argument("spec", help="study spec YAML (see examples/)")
    p.add_argument("--trials", type=int, help="total trials of the study (overrides study.trials)")
    p.add_argument("--sampler", choices=SAMPLERS, help="Optuna sampler (overrides study.sampler)")
    p.add_argument("--objective", choices=OBJECTIVES, help="sla: best tok/s/GPU at the SLA; front: both axes")
    p.add_argument("--seed", type=int, help="sampler seed")
    p.add_argument("--storage", help="Optuna storage URL (default: sqlite in the run directory)")
    p.add_argument("--study", help="study name (default: the run directory's name)")
    p.add_argument("--out", help="run directory (default: output_dir of the spec)")
    p.add_argument("--backend", help="backend name (overrides backend.name)")
    p.add_argument("--require-tok-s-gpu", type=_positive_float, metavar="X",
                   help="exit 1 when the best SLA pick is below X tok/s/GPU (CI gate)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_tune)

    p = sub.add_parser("show", help="print the Pareto front and the SLA pick of a run")
    _run_args(p)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--top", type=int, default=20, help="front rows to show")
    p.set_defaults(func=cmd_show)

    p = sub.add_parser("pick", help="re-pick a run at another SLA without measuring again")
    _run_args(p)
    p.add_argument("--min-tok-s-user", type=_positive_float, metavar="X")
    p.add_argument("--max-ttft-ms", type=_positive_float, metavar="MS")
    p.add_argument("--max-tpot-ms", type=_positive_float, metavar="MS")
    p.add_argument("--percentile", type=int, choices=(50, 90, 99))
    p.add_argument("--out", help="where to write pick.yaml and deploy/ (default: RUN)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_pick)

    p = sub.add_parser("export", help="export a run's pick as deployment artifacts")
    _run_args(p)
    p.add_argument("--format", action="append", default=None, help="vllm, kubernetes, dynamo, llm-d (repeatable)")
    p.add_argument("--out", help="output directory (default: RUN/deploy)")
    p.set_defaults(func=cmd_export)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        code: int = args.func(args)
    except ConfigError as exc:
        err.print(f"error: {exc}", markup=False, highlight=False)
        return 2
    except NoFeasiblePick as exc:
        err.print(f"{exc}", markup=False, highlight=False)
        return 1
    except TunerError as exc:
        err.print(f"error: {exc}", markup=False, highlight=False)
        return 2
    return code


if __name__ == "__main__":
    sys.exit(main())
