"""The disagg router and the load generator over real HTTP, against in-process fake workers.

The fakes speak just enough of vLLM's OpenAI API: a prefill worker that answers with
``kv_transfer_params``, a decode worker that streams one SSE chunk per token and a final
usage chunk. They record what they received, so the router's rewriting and round-robin and
the load generator's counting are checked end to end without starting vLLM.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

aiohttp = pytest.importorskip("aiohttp")
pytest.importorskip("httpx")
from aiohttp import web  # noqa: E402

from backends.live.loadgen import PromptSource, run_point, summarize  # noqa: E402
from backends.vllm.router import (  # noqa: E402
    RemoteDecode,
    build_app,
    build_balancer_app,
    decode_request,
    prefill_request,
)

TOKEN_DELAY_S = 0.004


def _kv_params(name: str) -> dict[str, Any]:
    return {
        "do_remote_prefill": True,
        "do_remote_decode": False,
        "remote_engine_id": name,
        "remote_block_ids": [1, 2],
        "remote_host": "127.0.0.1",
        "remote_port": 5600,
    }


def fake_prefill(name: str, seen: list[dict[str, Any]]) -> web.Application:
    async def completions(request: web.Request) -> web.Response:
        seen.append(await request.json())
        return web.json_response(
            {"choices": [{"text": "x", "token_ids": [7]}], "kv_transfer_params": _kv_params(name)}
        )

    app = web.Application()
    app.router.add_post("/v1/completions", completions)
    return app


def fake_decode(seen: list[dict[str, Any]]) -> web.Application:
    async def completions(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        seen.append(body)
        out = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await out.prepare(request)
        for i in range(body["max_tokens"]):
            await asyncio.sleep(TOKEN_DELAY_S)
            text = "" if i % 2 else "t"  # random weights: some tokens decode to ""
            chunk = {"choices": [{"index": 0, "text": text, "token_ids": [100 + i]}]}
            await out.write(f"data: {json.dumps(chunk)}\n\n".encode())
        usage = {"prompt_tokens": len(body["prompt"]), "completion_tokens": body["max_tokens"]}
        await out.write(f"data: {json.dumps({'choices': [], 'usage': usage})}\n\ndata: [DONE]\n\n".encode())
        await out.write_eof()
        return out

    app = web.Application()
    app.router.add_post("/v1/completions", completions)
    return app


@contextmanager
def serving() -> Iterator[Any]:
    """An event loop in a thread; ``start(app)`` serves an app on a free port, returns its URL."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    runners: list[web.AppRunner] = []

    async def _start(app: web.Application) -> str:
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        runners.append(runner)
        return f"http://127.0.0.1:{runner.addresses[0][1]}"

    def start(app: web.Application) -> str:
        return asyncio.run_coroutine_threadsafe(_start(app), loop).result(10)

    try:
        yield start
    finally:
        for runner in reversed(runners):
            asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def test_prefill_request_asks_for_one_token_and_remote_decode() -> None:
    body = {
        "model": "m",
        "prompt": [1, 2],
        "max_tokens": 50,
        "stream": True,
        "stream_options": {"include_usage": True},
        "ignore_eos": True,
    }
    out = prefill_request(body)
    assert out["max_tokens"] == 1 and out["stream"] is False and "stream_options" not in out
    assert out["kv_transfer_params"] == RemoteDecode and out["kv_transfer_params"]["do_remote_decode"] is True
    assert out["prompt"] == [1, 2] and out["ignore_eos"] is True
    assert body["max_tokens"] == 50 and "kv_transfer_params" not in body, "input left unchanged"
    chat = prefill_request({"messages": [], "max_completion_tokens": 9})
    assert chat["max_completion_tokens"] == 1


def test_decode_request_is_the_original_plus_the_prefill_answer() -> None:
    body = {"model": "m", "prompt": [1], "max_tokens": 5, "stream": True}
    out = decode_request(body, _kv_params("p0"))
    assert out == {**body, "kv_transfer_params": _kv_params("p0")}
    assert "kv_transfer_params" not in body


def test_router_round_robin_end_to_end_with_the_load_generator() -> None:
    prefill_seen: list[list[dict[str, Any]]] = [[], []]
    decode_seen: list[list[dict[str, Any]]] = [[], []]
    with serving() as start:
        prefill = [start(fake_prefill(f"p{i}", prefill_seen[i])) for i in range(2)]
        decode = [start(fake_decode(decode_seen[i])) for i in range(2)]
        router = start(build_app(prefill, decode))
        prompts = PromptSource(isl=24, osl=6, vocab_size=500, seed=1).take(8)
        run = run_point([router], "m", prompts, concurrency=2, token_timeout_s=10)
    assert not run.errors and len(run.records) == 8
    assert [len(s) for s in prefill_seen] == [4, 4] and [len(s) for s in decode_seen] == [4, 4]
    for body in prefill_seen[0] + prefill_seen[1]:
        assert body["max_tokens"] == 1 and body["stream"] is False
        assert body["kv_transfer_params"]["do_remote_decode"] is True and len(body["prompt"]) == 24
    engines = {body["kv_transfer_params"]["remote_engine_id"] for body in decode_seen[0] + decode_seen[1]}
    assert engines == {"p0", "p1"}
    for body in decode_seen[0] + decode_seen[1]:
        assert body["stream"] is True and body["ignore_eos"] is True and body["max_tokens"] == 6
        assert body["stream_options"] == {"include_usage": True}
    for record in run.records:
        assert record.prompt_tokens == 24 and record.output_tokens == 6, "counted from usage, not text"
        assert len(record.itl_s) == 5 and 0 < record.ttft_s < record.e2e_s
    point = summarize(run, gpus=2)
    assert point.tpot_ms_p50 >= TOKEN_DELAY_S * 1000 * 0.9
    assert point.tok_s_gpu == pytest.approx(8 * 30 / run.duration_s / 2)


def test_balancer_spreads_agg_replicas_and_passes_requests_unchanged() -> None:
    seen: list[list[dict[str, Any]]] = [[], [], []]
    with serving() as start:
        workers = [start(fake_decode(seen[i])) for i in range(3)]
        balancer = start(build_balancer_app(workers))
        prompts = PromptSource(isl=16, osl=4, vocab_size=500, seed=2).take(9)
        run = run_point([balancer], "m", prompts, concurrency=3, token_timeout_s=10)
    assert not run.errors and len(run.records) == 9
    assert [len(s) for s in seen] == [3, 3, 3]
    for body in seen[0] + seen[1] + seen[2]:
        assert "kv_transfer_params" not in body and body["max_tokens"] == 4 and body["stream"] is True
    assert all(r.output_tokens == 4 and len(r.itl_s) == 3 for r in run.records), "streamed through"


def test_router_passes_worker_errors_through() -> None:
    async def refuse(request: web.Request) -> web.Response:
        return web.json_response({"error": "bad request"}, status=400)

    bad = web.Application()
    bad.router.add_post("/v1/completions", refuse)
    with serving() as start:
        url = start(bad)
        router = start(build_app([url], [url]))
        run = run_point([router], "m", PromptSource(isl=4, osl=2, vocab_size=50).take(1), concurrency=1)
    assert run.errors and run.errors[0].startswith("HTTP 400")


def test_hang_becomes_a_request_error() -> None:
    async def silent(request: web.Request) -> web.StreamResponse:
        out = web.StreamResponse()
        await out.prepare(request)
        await asyncio.sleep(3)
        return out

    app = web.Application()
    app.router.add_post("/v1/completions", silent)
    with serving() as start:
        url = start(app)
        run = run_point(
            [url], "m", PromptSource(isl=4, osl=2, vocab_size=50).take(1), concurrency=1, token_timeout_s=0.5
        )
    assert run.errors == ["hang: no token within 0.5 s"]


def test_a_dropped_stream_becomes_a_connection_error() -> None:
    async def drop(request: web.Request) -> web.StreamResponse:
        out = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await out.prepare(request)
        await out.write(b'data: {"choices": [{"text": "", "token_ids": [5]}]}\n\n')
        assert request.transport is not None
        request.transport.close()  # mid-stream, before the end of the chunked body
        return out

    app = web.Application()
    app.router.add_post("/v1/completions", drop)
    with serving() as start:
        url = start(app)
        run = run_point([url], "m", PromptSource(isl=4, osl=3, vocab_size=50).take(1), concurrency=1)
    (error,) = run.errors
    assert error.startswith("connection: ClientPayloadError"), error
    assert run.records[0].output_tokens == 1, "the tokens streamed before the drop"
