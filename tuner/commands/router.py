"""``tuner router``: the disaggregated prefill/decode proxy in front of vLLM workers.

Only parses flags; the server is :func:`backends.vllm.router.run_router`. The launch plan's
router argv (serving/launch.py) and the exported deploy scripts call this command.
"""

from __future__ import annotations

import argparse

from ._common import int_in

__all__ = ["register"]


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "router",
        help="run the disagg router (prefill, then decode) or a balancer over agg replicas",
        description="With --prefill and --decode: send each OpenAI completion request to a "
        "prefill worker (one token, KV kept), then to a decode worker with the KV-transfer "
        "parameters, streaming its answer back. With --workers: pass each request to the "
        "next aggregated replica. Workers of each role are used round-robin.",
        allow_abbrev=False,
    )
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="bind address (default 127.0.0.1, this machine only; 0.0.0.0 opens it to the network)",
    )
    p.add_argument("--port", type=int_in(1, 65535), required=True, help="port to listen on")
    p.add_argument("--prefill", nargs="+", metavar="URL", help="prefill workers' base URLs (disagg)")
    p.add_argument("--decode", nargs="+", metavar="URL", help="decode workers' base URLs (disagg)")
    p.add_argument("--workers", nargs="+", metavar="URL", help="aggregated replicas' base URLs (balancer)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import logging

    from backends.vllm.router import run_balancer, run_router
    from serving import ConfigError

    if args.workers and (args.prefill or args.decode):
        raise ConfigError("--workers", args.workers, "give either --workers or --prefill and --decode")
    if not args.workers and not (args.prefill and args.decode):
        raise ConfigError("--prefill/--decode", None, "both required (or --workers for agg replicas)")
    logging.getLogger("backends").setLevel(logging.INFO)
    if args.workers:
        run_balancer(host=args.host, port=args.port, workers=args.workers)
    else:
        run_router(host=args.host, port=args.port, prefill=args.prefill, decode=args.decode)
    return 0
