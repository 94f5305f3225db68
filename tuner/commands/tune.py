"""``tuner tune SPEC``: run or resume a study and write the run directory."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from typing import Any

from serving.hardware_profile import entry_matches, load_profile, select_entry

from ..console import TrialProgress, front_table, near_table, pick_table, summary_line
from ..objectives import OBJECTIVES as OBJECTIVE_REGISTRY
from ..pick import closest_points
from ..runs import tune
from ..spec import OBJECTIVES, SAMPLERS, HardwareSpec, StudySpec, load_spec
from ..storage import redact
from ._common import err, int_in, non_negative_float, out

__all__ = ["register"]


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg,unused-ignore]
    p = sub.add_parser(
        "tune",
        help="run (or resume) a tuning study from a spec file",
        description="Run the study of SPEC; re-running the same command resumes it.",
    )
    p.add_argument("spec", help="study spec YAML (see examples/)")
    p.add_argument("--trials", type=int_in(1), help="total trials of the study (overrides study.trials)")
    p.add_argument("--sampler", choices=SAMPLERS, help="Optuna sampler (overrides study.sampler)")
    p.add_argument(
        "--objective",
        choices=OBJECTIVES,
        help="; ".join(f"{name}: {obj.help}" for name, obj in OBJECTIVE_REGISTRY.items()),
    )
    p.add_argument("--seed", type=int_in(0), help="sampler seed")
    p.add_argument("--storage", help="Optuna storage URL (default: sqlite in the run directory)")
    p.add_argument("--study", help="study name (default: the run directory's name)")
    p.add_argument("--out", help="run directory (default: output_dir of the spec)")
    p.add_argument("--backend", help="backend name (overrides backend.name)")
    p.add_argument(
        "--hardware-profile",
        metavar="PATH",
        help="price the GPUs measured by `tuner profile` (overrides hardware.profile)",
    )
    p.add_argument(
        "--require-tok-s-gpu",
        type=non_negative_float,
        metavar="X",
        help="exit 1 when the best SLA pick is below X tok/s/GPU (a CI gate)",
    )
    p.add_argument(
        "--workers",
        type=int_in(1),
        default=1,
        metavar="N",
        help="run N local worker processes on the study (more join with `tuner worker`)",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def _override(spec: StudySpec, args: argparse.Namespace) -> StudySpec:
    """Command-line flags win over the spec file."""
    flags = {
        "trials": args.trials,
        "sampler": args.sampler,
        "seed": args.seed,
        "storage": args.storage,
        "name": args.study,
        "objective": args.objective,
    }
    study = dataclasses.replace(spec.study, **{k: v for k, v in flags.items() if v is not None})
    changes: dict[str, Any] = {"study": study}
    if args.out:
        changes["output_dir"] = args.out
    if args.backend:
        changes["backend"] = dataclasses.replace(spec.backend, name=args.backend)
    if args.hardware_profile:
        changes["hardware"] = _with_profile(spec.hardware, args.hardware_profile)
    return dataclasses.replace(spec, **changes)


def _with_profile(hw: HardwareSpec, path: str) -> HardwareSpec:
    """The profile's GPU replaces the spec's: kept when the profile holds it, else the
    profile's only GPU type (the node measured is the hardware)."""
    profile = load_profile(path)
    gpu = hw.gpu
    if gpu is None or not any(entry_matches(entry, gpu) for entry in profile["gpus"]):
        gpu = str(select_entry(profile)["name"])
    return dataclasses.replace(hw, profile=path, gpu=gpu)


def _resume_command(argv: list[str], storage: str | None) -> str:
    """The command line that resumes the run, with the storage URL's password hidden."""
    if not storage or redact(storage) == storage:
        return " ".join(argv)
    shown = [
        redact(a) if a == storage else "--storage=" + redact(storage) if a == f"--storage={storage}" else a
        for a in argv
    ]
    return " ".join(shown) + " (password not shown)"


def run(args: argparse.Namespace) -> int:
    spec = _override(load_spec(args.spec), args)
    with TrialProgress(err, enabled=not args.quiet) as progress:
        try:
            result = tune(
                spec,
                on_trial=progress.update,
                on_start=progress.start,
                on_measured=progress.stop,
                workers=args.workers,
            )
        except KeyboardInterrupt:
            err.print(
                "interrupted: every finished trial and measured point is stored. "
                f"Resume with: tuner {_resume_command(sys.argv[1:], args.storage)}",
                markup=False,
                highlight=False,
            )
            return 130
    if not args.quiet:
        if result.screening is not None:
            sc = result.screening
            err.print(
                f"screened {sc.candidates} candidates: {sc.feasible} feasible priced, "
                f"{sum(sc.infeasible.values())} rejected statically",
                markup=False,
                highlight=False,
            )
        err.print(summary_line(result.summary), markup=False, highlight=False)
        if result.guidance is not None:
            err.print(result.guidance.summary(), markup=False, highlight=False)
    out.print(front_table(result.points))
    out.print(f"run directory: {spec.output_dir}")
    if result.pick is None:
        err.print(result.no_pick_reason or "no deployment meets the SLA", markup=False, highlight=False)
        out.print(near_table(closest_points(result.points, spec.sla)))
        return 1
    out.print(pick_table(result.pick))
    best = result.pick.chosen.point.tok_s_gpu
    if args.require_tok_s_gpu is not None and best < args.require_tok_s_gpu:
        err.print(f"check failed: best pick {best:,.1f} tok/s/GPU < required {args.require_tok_s_gpu:,.1f}")
        return 1
    return 0
