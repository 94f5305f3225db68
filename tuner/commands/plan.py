"""``tuner plan RUN --rate R``: replicas, GPUs, nodes and cost to serve R requests/s within
the SLA, for the pick and each front deployment, from stored points (nothing is measured)."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..planning import plan_rows, plan_table, plans_for, run_price
from ..rundir import ExportOptions, write_plan
from ..spec import DEFAULT_HEADROOM, PlanSpec, plan_headroom, plan_rate, price_per_gpu_hour
from ._common import add_export_args, add_run_args, export_options, load_from_args, out

__all__ = ["register"]


def _arg(check: Callable[[Any, str], float], flag: str) -> Callable[[str], float]:
    """An argparse type refusing a value with the words of the spec field it overrides."""

    def parse(text: str) -> float:
        try:
            value: Any = float(text)
        except ValueError:
            value = text[:40]
        try:
            return check(value, flag)
        except ConfigError as exc:
            raise argparse.ArgumentTypeError(f"got {text[:40]!r}; {exc.allowed}") from None

    parse.__name__ = "number"
    return parse


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg,unused-ignore]
    p = sub.add_parser(
        "plan",
        help="replicas, GPUs, nodes and $/Mtok to serve a request rate within the SLA",
        description="Flags not given keep the run's plan block (plan.rate_rps, plan.headroom) "
        "and price (hardware.usd_per_gpu_hour, else the catalog's default).",
    )
    add_run_args(p)
    p.add_argument(
        "--rate", type=_arg(plan_rate, "--rate"), metavar="RPS", help="requests per second to serve"
    )
    p.add_argument(
        "--headroom",
        type=_arg(plan_headroom, "--headroom"),
        metavar="F",
        help=f"spare capacity above the rate, a fraction (default {DEFAULT_HEADROOM}: 20%%)",
    )
    p.add_argument(
        "--usd-per-gpu-hour",
        type=_arg(price_per_gpu_hour, "--usd-per-gpu-hour"),
        metavar="USD",
        help="price of one GPU for one hour (overrides hardware.usd_per_gpu_hour)",
    )
    p.add_argument(
        "--export", action="store_true", help="also write the planned replicas' artifacts to deploy-plan/"
    )
    p.add_argument("--out", help="where to write plan.csv (and deploy-plan/) (default: RUN)")
    p.add_argument("--json", action="store_true", help="the plan rows as JSON on stdout")
    add_export_args(p)
    p.set_defaults(func=run)


def _plan(args: argparse.Namespace, base: PlanSpec | None) -> PlanSpec:
    rate = args.rate if args.rate is not None else base.rate_rps if base else None
    if rate is None:
        raise ConfigError("--rate", None, "required: the run's spec has no plan.rate_rps")
    headroom = args.headroom if args.headroom is not None else base.headroom if base else DEFAULT_HEADROOM
    return PlanSpec(rate_rps=rate, headroom=headroom, export=args.export or bool(base and base.export))


def run(args: argparse.Namespace) -> int:
    data = load_from_args(args)
    plan = _plan(args, data.spec.plan)
    price = args.usd_per_gpu_hour if args.usd_per_gpu_hour is not None else run_price(data.spec)
    plans = plans_for(data.points, data.spec, data.spec.sla, plan, usd_per_gpu_hour=price)
    target = Path(args.out or args.run or data.spec.output_dir)
    options: ExportOptions = export_options(args)
    try:
        target.mkdir(parents=True, exist_ok=True)
        deploy = write_plan(data, plans, target, export=plan.export, options=options)
    except OSError as exc:
        raise ConfigError("--out", str(target), f"must be a writable directory ({exc.strerror})") from None
    if args.json:
        print(json.dumps(plan_rows(plans), indent=2))
        return 0
    out.print(plan_table(plans))
    written = f"wrote {target / 'plan.csv'}" + (f" and {deploy}/" if deploy else "")
    out.print(written, markup=False, highlight=False)
    return 0
