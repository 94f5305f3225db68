"""``tuner worker --storage URL --study NAME``: run trials of a shared study until its budget.

The URL may come from the environment instead (``TUNER_STORAGE``), which keeps a password
off the command line; it is never printed with its password.
"""

from __future__ import annotations

import argparse
import os

from ..console import summary_line
from ..errors import ConfigError
from ..outages import OUTAGE_S
from ..shared_slots import SLOTS_ENV
from ..storage import HEARTBEAT_S, redact
from ..workers import STORAGE_ENV, work
from ._common import err, int_in, non_negative_float

__all__ = ["register"]


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg,unused-ignore]
    p = sub.add_parser(
        "worker",
        help="join a shared study and run its trials (start one per node)",
        description="Pull trials from the study in --storage until its trial budget is finished. "
        "The spec comes from the study; a worker of another tuner version refuses to join.",
    )
    p.add_argument(
        "--storage",
        help="Optuna storage URL (postgresql://..., sqlite:///..., grpc://...); "
        f"default: ${STORAGE_ENV}, which keeps a password out of `ps`",
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
    p.add_argument(
        "--storage-outage",
        type=non_negative_float,
        default=OUTAGE_S,
        metavar="S",
        help=f"retry storage calls for up to S seconds while the database is unreachable "
        f"(default {OUTAGE_S:.0f}: a database restart), then exit 2",
    )
    p.add_argument(
        "--slots",
        metavar="FILE",
        help="share GPU slots through FILE with the other workers of this machine that name it "
        f"(default: ${SLOTS_ENV}, which `tuner tune --workers N` sets); without it this worker "
        "owns every GPU of --gpus",
    )
    p.add_argument("--seed", type=int_in(0), help="sampler seed (default: differs per worker)")
    p.add_argument("-q", "--quiet", action="store_true", help="no summary line")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    url = args.storage or os.environ.get(STORAGE_ENV)
    if not url:
        raise ConfigError("--storage", "", f"give the storage URL with --storage or in ${STORAGE_ENV}")
    try:
        summary = work(
            url,
            args.study,
            trials=args.trials,
            gpus=args.gpus,
            heartbeat_s=args.heartbeat,
            outage_s=args.storage_outage,
            seed=args.seed,
            slots_file=args.slots or os.environ.get(SLOTS_ENV) or None,
        )
    except KeyboardInterrupt:
        where = f"--storage {redact(url)} " if args.storage else ""
        err.print(
            f"interrupted: the running trial is recorded as interrupted. Resume with: "
            f"tuner worker {where}--study {args.study}"
            + (" (password not shown)" if redact(url) != url else ""),
            markup=False,
            highlight=False,
        )
        return 130
    if not args.quiet:
        err.print(f"worker: {summary_line(summary)}", markup=False, highlight=False)
    return 0
