"""Pieces shared by subcommands: the consoles, run-locating arguments, argument types."""

from __future__ import annotations

import argparse
import math
import re
from collections.abc import Callable

from rich.console import Console

from ..rundir import ExportOptions, RunData, load_run

__all__ = [
    "add_export_args",
    "add_run_args",
    "err",
    "export_options",
    "int_in",
    "load_from_args",
    "non_negative_float",
    "out",
    "redact_urls",
]

#: Results go to stdout; progress, warnings and errors to stderr.
out = Console()
err = Console(stderr=True, soft_wrap=True)


def add_run_args(p: argparse.ArgumentParser) -> None:
    """RUN directory, or a storage URL and study name (a shared study)."""
    p.add_argument("run", nargs="?", help="run directory (holds study.db)")
    p.add_argument("--storage", help="Optuna storage URL instead of RUN/study.db")
    p.add_argument("--study", help="study name (needed when the storage holds several)")


def add_export_args(p: argparse.ArgumentParser) -> None:
    """Options of the exported artifacts: images and the nodes' real host names."""
    p.add_argument("--image", help="vLLM container image for the manifests (default: vllm/vllm-openai)")
    p.add_argument(
        "--router-image",
        help="image with this tool installed, for the router (see deploy/kubernetes/README.md)",
    )
    p.add_argument(
        "--node-hosts",
        metavar="HOST,HOST,...",
        help="host names of the nodes, in node order, as the other nodes reach them (multi-node scripts)",
    )


def export_options(args: argparse.Namespace) -> ExportOptions:
    hosts = tuple(h.strip() for h in args.node_hosts.split(",")) if args.node_hosts else None
    if hosts is not None and not all(hosts):
        from ..errors import ConfigError

        raise ConfigError("--node-hosts", args.node_hosts, "comma-separated host names, none empty")
    return ExportOptions(image=args.image, router_image=args.router_image, node_hosts=hosts)


def load_from_args(args: argparse.Namespace) -> RunData:
    return load_run(args.run, storage=args.storage, study_name=args.study)


def non_negative_float(text: str) -> float:
    """An argparse type: a finite number >= 0 (``nan`` and ``inf`` refused, as in a spec)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"got {text[:40]!r}; must be a finite number >= 0")
    return value


def int_in(minimum: int, maximum: int | None = None) -> Callable[[str], int]:
    """An argparse type: an integer in [minimum, maximum], refused with the same words as
    the spec field it overrides (``--trials 0`` reads like ``study.trials: 0``)."""
    allowed = (
        f"must be an integer >= {minimum}"
        if maximum is None
        else f"must be an integer in [{minimum}, {maximum}]"
    )

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < minimum or (maximum is not None and value > maximum):
            raise argparse.ArgumentTypeError(f"got {text[:40]!r}; {allowed}")
        return value

    parse.__name__ = "integer"  # argparse names the type in some messages
    return parse


_URL_PASSWORD = re.compile(r"(\b[a-zA-Z][\w+.-]*://[^:/@\s]*):[^@\s]+@")


def redact_urls(text: str) -> str:
    """``text`` with the password of every ``scheme://user:password@host`` URL starred, for
    messages that echo a command line (argparse errors, "Resume with:" hints)."""
    return _URL_PASSWORD.sub(r"\1:***@", text)
