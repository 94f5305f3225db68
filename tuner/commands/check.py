"""``tuner check PICK``: measure a pick again and fail when it no longer holds (a CI gate).

Exit 0 when the SLA is still met and tok/s/GPU did not fall by more than the tolerance,
1 when either fails, 2 on bad input (raised as ConfigError, reported by ``tuner.cli``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from rich.table import Table

from ..check import (
    DEFAULT_TOLERANCE,
    CheckResult,
    junit_xml,
    load_request,
    parse_tolerance,
    run_check,
    summary,
)
from ..errors import ConfigError
from ._common import err, out

__all__ = ["register"]


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "check",
        help="measure a pick again; exit 1 when it misses its SLA or lost throughput",
        description="Measure the deployment of PICK again at its operating point. Exit 0 when it "
        "holds, 1 when the SLA is no longer met or tok/s/GPU fell by more than the tolerance, "
        "2 on bad input.",
    )
    p.add_argument("pick", help="pick.yaml written by tuner tune / tuner pick (or its run directory)")
    p.add_argument(
        "--backend",
        metavar="NAME",
        help="backend to measure with (default: the pick's), e.g. simulator or vllm",
    )
    p.add_argument(
        "--tolerance",
        default=DEFAULT_TOLERANCE,
        metavar="T",
        help=f"allowed tok/s/GPU drop, as 5%% or 0.05 (default: {DEFAULT_TOLERANCE.replace('%', '%%')})",
    )
    p.add_argument("--junit", metavar="PATH", help="write a JUnit XML report here")
    p.add_argument("--json", metavar="PATH", help="write a JSON summary here")
    p.set_defaults(func=run)


def _write(path: str, text: str, flag: str) -> None:
    target = Path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    except OSError as exc:
        raise ConfigError(flag, path, f"must be a writable file path ({exc.strerror})") from None


def _table(result: CheckResult) -> Table:
    req = result.request
    title = (
        f"tuner check: {req.label} ({req.deployment.gpus()} GPUs) at concurrency "
        f"{req.expected.concurrency} on {req.backend}, tolerance {req.tolerance:.1%}"
    )
    table = Table(title=title, title_justify="left")
    for i, col in enumerate(("check", "expected", "measured", "result")):
        table.add_column(col, justify="left" if i == 0 else "right", no_wrap=i == 0)
    for item in result.items:
        measured = "-" if item.measured is None else f"{item.measured:,.2f}"
        verdict = "[green]pass[/]" if item.passed else "[bold red]FAIL[/]"
        table.add_row(item.name, item.expected, measured, verdict)
    return table


def run(args: argparse.Namespace) -> int:
    tolerance = parse_tolerance(args.tolerance)
    request = load_request(args.pick, backend=args.backend, tolerance=tolerance)
    result = run_check(request)
    if args.junit:
        _write(args.junit, junit_xml(result), "--junit")
    if args.json:
        _write(args.json, json.dumps(summary(result), indent=2) + "\n", "--json")
    out.print(_table(result))
    if result.passed and result.measured is not None:
        tok_s_gpu = result.measured.tok_s_gpu
        text = f"check passed: {request.label} still meets the SLA at {tok_s_gpu:,.1f} tok/s/GPU"
        out.print(text, markup=False, highlight=False)
        return 0
    for reason in result.reasons:
        err.print(f"check failed: {reason}", markup=False, highlight=False)
    return 1
