"""Pieces shared by subcommands: the consoles, run-locating arguments, argument types."""

from __future__ import annotations

import argparse

from rich.console import Console

from ..rundir import ExportOptions, RunData, load_run

__all__ = [
    "add_export_args",
    "add_run_args",
    "err",
    "export_options",
    "load_from_args",
    "non_negative_float",
    "out",
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
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value
