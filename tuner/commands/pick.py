"""``tuner pick RUN``: re-pick at another SLA from stored points, without measuring again."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from serving import ConfigError

from ..confidence import parse_confidence
from ..console import near_table, pick_table, point_dict
from ..pick import closest_points
from ..rundir import finalize
from ..sla import SLA
from ._common import (
    add_export_args,
    add_run_args,
    err,
    export_options,
    load_from_args,
    non_negative_float,
    out,
)

__all__ = ["register"]


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg,unused-ignore]
    p = sub.add_parser(
        "pick",
        help="re-pick a run at another SLA without measuring again",
        description="Flags not given keep the run's SLA values.",
    )
    add_run_args(p)
    p.add_argument("--min-tok-s-user", type=non_negative_float, metavar="X")
    p.add_argument("--max-ttft-ms", type=non_negative_float, metavar="MS")
    p.add_argument("--max-tpot-ms", type=non_negative_float, metavar="MS")
    p.add_argument("--percentile", type=int, choices=(50, 90, 99))
    p.add_argument("--max-e2e-ms", type=non_negative_float, metavar="MS")
    p.add_argument("--min-goodput", type=share, metavar="SHARE", help="e.g. 0.99")
    p.add_argument(
        "--confidence",
        type=_confidence,
        metavar="C",
        help="robust pick: a point meets the SLA only when its one-sided C bound does "
        "(0.5-0.99; 0.5 = no margin; default 0.6 for simulator points)",
    )
    p.add_argument("--out", help="where to write pick.yaml and deploy/ (default: RUN)")
    p.add_argument("--json", action="store_true", help="the pick as JSON on stdout")
    add_export_args(p)
    p.set_defaults(func=run)


def _confidence(text: str) -> float:
    try:
        return parse_confidence(text, "--confidence")
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(exc.allowed.join(["got " + repr(text[:40]) + "; ", ""])) from None


def _sla(base: SLA, args: argparse.Namespace) -> SLA:
    def given(name: str, default: object) -> object:
        value = getattr(args, name)
        return default if value is None else value

    return SLA(
        min_tok_s_user=float(given("min_tok_s_user", base.min_tok_s_user)),  # type: ignore[arg-type]
        max_ttft_ms=given("max_ttft_ms", base.max_ttft_ms),  # type: ignore[arg-type]
        max_tpot_ms=given("max_tpot_ms", base.max_tpot_ms),  # type: ignore[arg-type]
        percentile=int(given("percentile", base.percentile)),  # type: ignore[call-overload]
        max_e2e_ms=given("max_e2e_ms", base.max_e2e_ms),  # type: ignore[arg-type]
        min_goodput=given("min_goodput", base.min_goodput),  # type: ignore[arg-type]
        confidence=given("confidence", base.confidence),  # type: ignore[arg-type]
    )


def share(text: str) -> float:
    """A share in (0, 1] (``--min-goodput``)."""
    value = non_negative_float(text)
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be a share in (0, 1], e.g. 0.99 (got {text})")
    return value


def run(args: argparse.Namespace) -> int:
    data = load_from_args(args)
    sla = _sla(data.spec.sla, args)
    target = Path(args.out or args.run or data.spec.output_dir)
    pick, reason = finalize(data, sla, target, export_options=export_options(args))
    if pick is None:
        err.print(reason or "no deployment meets the SLA", markup=False, highlight=False)
        out.print(near_table(closest_points(data.points, sla)))
        return 1
    if args.json:
        print(json.dumps(point_dict(pick.chosen), indent=2))
    else:
        out.print(pick_table(pick))
        out.print(f"wrote {target / 'pick.yaml'} and {target / 'deploy'}/")
    return 0
