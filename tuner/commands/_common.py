"""Pieces shared by subcommands: the consoles, run-locating arguments, argument types."""

from __future__ import annotations

import argparse

from rich.console import Console

from ..rundir import RunData, load_run

__all__ = ["add_run_args", "err", "load_from_args", "non_negative_float", "out"]

#: Results go to stdout; progress, warnings and errors to stderr.
out = Console()
err = Console(stderr=True, soft_wrap=True)


def add_run_args(p: argparse.ArgumentParser) -> None:
    """RUN directory, or a storage URL and study name (a shared study)."""
    p.add_argument("run", nargs="?", help="run directory (holds study.db)")
    p.add_argument("--storage", help="Optuna storage URL instead of RUN/study.db")
    p.add_argument("--study", help="study name (needed when the storage holds several)")


def load_from_args(args: argparse.Namespace) -> RunData:
    return load_run(args.run, storage=args.storage, study_name=args.study)


def non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value
