"""CPU the load generator's HTTP client spends per request, against a fake SSE server.

No vLLM: a child process serves ``/v1/completions`` with aiohttp and streams, per request,
``max_tokens`` SSE chunks shaped as vLLM's (``{"choices": [{"text": .., "token_ids": [..]}]}``),
one chunk every ``--token-delay-ms`` (so that chunks arrive one by one, as vLLM sends them,
instead of coalescing into one read), then the usage chunk and ``data: [DONE]``. This process
runs :func:`backends.live.loadgen.run_point` (closed loop at ``--concurrency``, or open loop at
``--rate``), and the client's CPU is this process's user + system time (getrusage; the server
is another process), printed as CPU seconds per 1000 requests of ``--tokens`` tokens and as
microseconds per streamed token.

Run it at two commits to compare client implementations (the figures in the issue's closing
note came from the httpx client and the aiohttp one)::

    PYTHONPATH=$PWD python benchmarks/loadgen_client_cpu.py [--requests 1000] [--tokens 32]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import resource
import sys
import time
from multiprocessing.connection import Connection
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from backends.live.loadgen import PromptSource, run_point  # noqa: E402


def _serve(conn: Connection, token_delay_s: float) -> None:
    """The fake server (child process): sends its port through ``conn``, serves until killed."""
    from aiohttp import web

    async def completions(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        out = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await out.prepare(request)
        for i in range(body["max_tokens"]):
            await asyncio.sleep(token_delay_s)
            chunk = {"id": "cmpl-1", "choices": [{"index": 0, "text": " t", "token_ids": [100 + i]}]}
            await out.write(f"data: {json.dumps(chunk)}\n\n".encode())
        usage = {"prompt_tokens": len(body["prompt"]), "completion_tokens": body["max_tokens"]}
        await out.write(f"data: {json.dumps({'choices': [], 'usage': usage})}\n\ndata: [DONE]\n\n".encode())
        await out.write_eof()
        return out

    async def main() -> None:
        app = web.Application()
        app.router.add_post("/v1/completions", completions)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        conn.send(runner.addresses[0][1])
        await asyncio.Event().wait()

    asyncio.run(main())


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--tokens", type=int, default=32, help="output tokens per request")
    parser.add_argument("--isl", type=int, default=128, help="prompt token IDs per request")
    parser.add_argument("--concurrency", type=int, default=16, help="closed loop (default)")
    parser.add_argument("--rate", type=float, default=0.0, help="open loop at this many req/s instead")
    parser.add_argument("--token-delay-ms", type=float, default=1.0)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    parent, child = multiprocessing.Pipe()
    server = multiprocessing.get_context("spawn").Process(
        target=_serve, args=(child, args.token_delay_ms / 1000), daemon=True
    )
    server.start()
    try:
        url = f"http://127.0.0.1:{parent.recv()}"
        prompts = PromptSource(isl=args.isl, osl=args.tokens, vocab_size=500).take(args.requests)
        load = (
            {"send_at_s": [i / args.rate for i in range(args.requests)], "rate_rps": args.rate}
            if args.rate > 0
            else {"concurrency": args.concurrency}
        )
        run_point([url], "m", prompts[:20], concurrency=4)  # warm-up: imports, first connections
        mode = f"open loop {args.rate:g} req/s" if args.rate > 0 else f"closed loop c={args.concurrency}"
        print(f"{args.requests} requests x {args.tokens} tokens, {mode}, {args.token_delay_ms:g} ms/token")
        for _ in range(args.repeats):
            cpu, wall = _cpu_s(), time.perf_counter()
            run = run_point([url], "m", prompts, **load)
            cpu, wall = _cpu_s() - cpu, time.perf_counter() - wall
            tokens = sum(r.output_tokens for r in run.records)
            assert not run.errors and tokens == args.requests * args.tokens, (run.errors[:3], tokens)
            per_1000 = cpu / args.requests * 1000
            print(
                f"  client CPU {cpu:6.2f} s in {wall:6.2f} s wall: {per_1000:6.2f} CPU s / 1000 requests,"
                f" {cpu / tokens * 1e6:5.1f} us / token"
            )
    finally:
        server.kill()
        server.join(5)


if __name__ == "__main__":
    main()
