"""``tuner validate POINTS.csv --out PREDICTIONS.csv``: score the simulator on measured points.

Writes one prediction row per input row (contract: ``shared/fidelity/README.md``) and prints
the error summary per metric and slice. Exit 0 when it ran (whatever the errors), 2 on a
missing file, missing columns or bad options.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..validate import Predictor, format_summary, read_points, summarize, write_predictions
from ._common import err, out

__all__ = ["register"]


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg,unused-ignore]
    p = sub.add_parser("validate", help="predict measured serving points and report the simulator's error")
    p.add_argument("points", type=Path, help="CSV of measured points (calibration.csv schema)")
    p.add_argument("--out", type=Path, required=True, help="predictions CSV to write")
    p.add_argument("--constants", help="alternative simulator constants YAML")
    p.add_argument(
        "--backend-options",
        default="",
        metavar="K=V[,K=V]",
        help="extra simulator options (e.g. engine=vllm to ignore the rows' engine column)",
    )
    p.set_defaults(func=run)


def _options(text: str) -> dict[str, Any]:
    options: dict[str, Any] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError("--backend-options", text, "expected comma-separated KEY=VALUE pairs")
        options[key.strip()] = value.strip()
    return options


def run(args: argparse.Namespace) -> int:
    rows = read_points(args.points)
    options = _options(args.backend_options)
    predictor = Predictor(constants=args.constants, options=options)
    predictor.backend("vllm")  # a bad constants file or option fails here, before any row
    start = time.perf_counter()
    predictions = [predictor.predict(row) for row in rows]
    elapsed = time.perf_counter() - start
    write_predictions(args.out, predictions)
    ok = sum(p.status == "ok" for p in predictions)
    err.print(
        f"{len(rows)} rows, {ok} priced, {len(rows) - ok} unsupported; "
        f"{elapsed / max(len(rows), 1) * 1e3:.2f} ms per row; wrote {args.out}",
        markup=False,
        highlight=False,
    )
    out.print(format_summary(summarize(rows, predictions)), markup=False, highlight=False, soft_wrap=True)
    return 0
