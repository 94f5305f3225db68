"""``tuner worker --storage URL --study NAME``: run trials of a shared study until its budget."""

from __future__ import annotations

import argparse

from ..console import summary_line
from ..storage import HEARTBEAT_S
from ..workers import work
from ._common import err, int_in, redact_urls

__all__ = ["register"]


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg,unused-ignore]
    p = sub.add_parser(
        "worker",
        help="join a shared study and run its trials (start one per node)",
        description="Pull trials from the study in --storage until its trial budget is finished. "
        "The spec comes from the study; a worker of another tuner version refuses to join.",
    )
    p.add_argument(
        "--storage", required=True, help="Optuna storage URL (postgresql://..., sqlite:///..., grpc://...)"
    )
    p.add_argument("--study", required=True, help="study name")
    p.add_argument(
        "--trials", type=int_in(1), help="run up to this many finished trials (default: the study's budget)"
    )
    p.add_argument(
        "--gpus", type=int_in(1), help="GPUs this worker places candidates on (default: the spec's fleet)"
    )
    p.add_argument(
        "--heartbeat",
        type=int_in(1),
        default=HEARTBEAT_S,
        metavar="S",
        help=f"heartbeat interval of running trials in seconds (default {HEARTBEAT_S}); "
        "a trial silent for 3 intervals is failed and retried once",
    )
    p.add_argument("--seed", type=int_in(0), help="sampler seed (default: differs per worker)")
    p.add_argument("-q", "--quiet", action="store_true", help="no summary line")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        summary = work(
            args.storage,
            args.study,
            trials=args.trials,
            gpus=args.gpus,
            heartbeat_s=args.heartbeat,
            seed=args.seed,
        )
    except KeyboardInterrupt:
        err.print(
            f"interrupted: the running trial is recorded as interrupted. Resume with: "
            f"tuner worker --storage {redact_urls(args.storage)} --study {args.study}",
            markup=False,
            highlight=False,
        )
        return 130
    if not args.quiet:
        err.print(f"worker: {summary_line(summary)}", markup=False, highlight=False)
    return 0
