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
        help="run the disagg router: prefill on one worker, decode on another",
        description="Send each OpenAI completion request to a prefill worker (one token, "
        "KV kept), then to a decode worker with the KV-transfer parameters, streaming its "
        "answer back. Workers of each role are used round-robin.",
    )
    p.add_argument("--host", default="0.0.0.0", help="bind address (default 0.0.0.0)")
    p.add_argument("--port", type=int_in(1, 65535), required=True, help="port to listen on")
    p.add_argument("--prefill", nargs="+", required=True, metavar="URL", help="prefill workers' base URLs")
    p.add_argument("--decode", nargs="+", required=True, metavar="URL", help="decode workers' base URLs")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import logging

    from backends.vllm.router import run_router

    logging.getLogger("backends").setLevel(logging.INFO)
    run_router(host=args.host, port=args.port, prefill=args.prefill, decode=args.decode)
    return 0
