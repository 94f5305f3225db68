"""``tuner export RUN --format NAME``: deployment artifacts of a run's pick."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import ConfigError
from ..export import exporter_names, write_exports
from ..pick import pick_best
from ..rundir import export_context
from ..spec import build_problem
from ._common import add_export_args, add_run_args, export_options, load_from_args, out

__all__ = ["register"]


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg,unused-ignore]
    p = sub.add_parser("export", help="export a run's pick as deployment artifacts")
    add_run_args(p)
    p.add_argument(
        "--format",
        action="append",
        choices=exporter_names(),
        help="artifact format (repeatable; default: vllm and kubernetes)",
    )
    p.add_argument("--out", help="output directory (default: RUN/deploy)")
    add_export_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    data = load_from_args(args)
    pick = pick_best(data.points, data.spec.sla)
    target = Path(args.out) if args.out else Path(args.run or data.spec.output_dir) / "deploy"
    formats = tuple(args.format or ("vllm", "kubernetes"))
    deployment, problem = pick.chosen.deployment, build_problem(data.spec)
    context = export_context(data.spec, deployment, problem, export_options(args))
    try:
        paths = write_exports(deployment, problem, target, formats=formats, context=context)
    except OSError as exc:
        raise ConfigError("--out", str(target), f"must be a writable directory ({exc.strerror})") from None
    for path in paths:
        out.print(str(path), markup=False, highlight=False)
    return 0
