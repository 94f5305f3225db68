"""Our load generator: streamed OpenAI ``/v1/completions`` against live servers.

Each request's prompt is a list of token IDs of an exact length (:mod:`.prompts`: the
workload's fixed, distributed or dataset lengths, and its shared prefix; no tokenizer round
trip can change the count), ``ignore_eos`` makes every request run to ``max_tokens``, and
tokens are counted from the streamed ``token_ids`` and the final usage chunk
(``stream_options.include_usage``), never from text: a random-weight model may decode a
token to an empty string.

Two ways to load the server:

- closed loop (``concurrency``): that many requests in flight at all times; each of
  ``concurrency`` workers sends its next request as soon as its previous one finished;
- open loop (``send_at_s``, from :mod:`.arrivals`): request ``i`` is sent at its time from
  the point's start whatever is in flight, as ``vllm bench serve --request-rate`` does
  (no ``--max-concurrency`` cap). The point's ``concurrency`` is then the measured mean
  number in flight (the sum of the requests' E2E over the duration: Little's law, as the
  simulator reports it) and ``request_rate_rps`` the offered rate.

The client is aiohttp, as ``vllm bench serve``'s: one session per point (closed loop: at most
``concurrency`` connections; open loop: no cap), :data:`CONNECT_TIMEOUT_S` to connect and
``token_timeout_s`` between any two reads of a response; the stream is split into lines per
read and each ``data:`` line is parsed once.

Definitions follow ``vllm bench serve`` (vllm/benchmarks/serve.py):
- TTFT: request sent -> first streamed token; E2E: request sent -> last byte.
- TPOT per request: (E2E - TTFT) / (output tokens - 1); ITL: every gap between streamed
  chunks, pooled over requests (one chunk is one token here, as vLLM streams per token).
- Throughput: tokens of completed requests / point duration (closed loop: first send ->
  last finish; open loop: the schedule's start, before the first gap, -> last finish).
Percentiles are numpy's linear interpolation, as in vLLM. Where we differ: tok/s/user is
1000 / median TPOT (the chart's x axis), tok/s/GPU divides (input + output) tok/s by every GPU
of the deployment; a failed request fails the point instead of being left out.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import json
import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from serving import LoadPoint

from .deps import require
from .prompts import LOWEST_TOKEN_ID, Prompt, PromptSource

__all__ = ["LOWEST_TOKEN_ID", "PointRun", "PromptSource", "RequestRecord", "run_point", "summarize"]


@dataclass(frozen=True)
class RequestRecord:
    """What one request did; times in seconds from the moment it was sent."""

    prompt_tokens: int
    output_tokens: int
    ttft_s: float
    e2e_s: float
    itl_s: tuple[float, ...] = ()
    error: str = ""

    @property
    def ok(self) -> bool:
        return not self.error

    @property
    def tpot_s(self) -> float:
        if self.output_tokens < 2:
            return float("nan")
        return (self.e2e_s - self.ttft_s) / (self.output_tokens - 1)


@dataclass(frozen=True)
class PointRun:
    """The records of one load point and its wall time (see the module doc). Open loop:
    ``request_rate_rps`` is the offered rate and ``concurrency`` the mean in flight."""

    concurrency: int
    records: tuple[RequestRecord, ...]
    duration_s: float
    request_rate_rps: float = math.nan

    @property
    def errors(self) -> list[str]:
        return [r.error for r in self.records if r.error]


def _body(model: str, prompt: list[int], max_tokens: int) -> dict[str, Any]:
    return {
        "model": model,
        "prompt": prompt,
        "max_tokens": max_tokens,
        "temperature": 0.0,
        "ignore_eos": True,
        "stream": True,
        "stream_options": {"include_usage": True},
        "return_token_ids": True,
    }


#: Seconds to open a TCP connection to a server (the wait for a byte is ``token_timeout_s``).
CONNECT_TIMEOUT_S = 10.0


def _session(max_connections: int, token_timeout_s: float) -> Any:
    """One aiohttp session for one load point: at most ``max_connections`` (0: no cap), a
    connect timeout, and ``token_timeout_s`` between any two reads of a response."""
    aiohttp = require("aiohttp")
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=CONNECT_TIMEOUT_S, sock_read=token_timeout_s)
    connector = aiohttp.TCPConnector(limit=max_connections, limit_per_host=0)
    return aiohttp.ClientSession(connector=connector, timeout=timeout)


class _Stream:
    """The SSE lines of one response as they arrive: each ``data:`` line is parsed once, and
    every choice in it is one arrival of ``len(token_ids)`` tokens (1 without them)."""

    __slots__ = ("arrivals", "counted", "start", "usage")

    def __init__(self, start: float) -> None:
        self.start = start
        self.arrivals: list[float] = []
        self.counted = 0
        self.usage: dict[str, int] = {}

    def line(self, line: bytes) -> None:
        if not line.startswith(b"data: ") or line.startswith(b"[DONE]", 6):
            return
        chunk = json.loads(line[6:])
        if usage := chunk.get("usage"):
            self.usage = usage
        for choice in chunk.get("choices") or ():
            self.arrivals.append(time.perf_counter() - self.start)
            self.counted += len(choice.get("token_ids") or ()) or 1


async def _one(session: Any, url: str, body: dict[str, Any], token_timeout_s: float) -> RequestRecord:
    """Send one streamed completion and time its chunks."""
    aiohttp = require("aiohttp")
    start = time.perf_counter()
    stream = _Stream(start)
    try:
        async with session.post(f"{url}/v1/completions", json=body) as response:
            if response.status != 200:
                text = (await response.read()).decode(errors="replace")
                return RequestRecord(0, 0, math.nan, math.nan, error=f"HTTP {response.status}: {text[:200]}")
            pending = b""
            async for data in response.content.iter_any():  # what one read brought, often one event
                lines = (pending + data).split(b"\n")
                pending = lines.pop()  # an incomplete line, or b"" after a newline
                for line in lines:
                    if line:  # not the blank line that ends each event
                        stream.line(line)
            stream.line(pending)
    except TimeoutError:  # aiohttp's connect and read timeouts are TimeoutErrors
        return RequestRecord(
            0, stream.counted, math.nan, math.nan, error=f"hang: no token within {token_timeout_s:g} s"
        )
    except aiohttp.ClientError as exc:
        return RequestRecord(
            0, stream.counted, math.nan, math.nan, error=f"connection: {type(exc).__name__}: {exc}"
        )
    e2e = time.perf_counter() - start
    arrivals, usage = stream.arrivals, stream.usage
    if not arrivals:
        return RequestRecord(0, 0, math.nan, e2e, error="no token streamed")
    output = int(usage.get("completion_tokens", stream.counted))
    gaps = tuple(float(b - a) for a, b in itertools.pairwise(arrivals))
    prompt = int(usage.get("prompt_tokens", len(body["prompt"])))
    return RequestRecord(prompt, output, arrivals[0], e2e, gaps)


async def _closed_loop(
    urls: Sequence[str],
    model: str,
    prompts: Sequence[Prompt],
    concurrency: int,
    token_timeout_s: float,
) -> PointRun:
    work: Iterator[tuple[int, Prompt]] = iter(enumerate(prompts))
    records: list[RequestRecord | None] = [None] * len(prompts)

    async def worker(session: Any) -> None:
        for i, (prompt, max_tokens) in work:  # shared iterator: next request when one ends
            url = urls[i % len(urls)].rstrip("/")
            records[i] = await _one(session, url, _body(model, prompt, max_tokens), token_timeout_s)

    async with _session(concurrency, token_timeout_s) as session:
        start = time.perf_counter()
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
        duration = time.perf_counter() - start
    return PointRun(concurrency, tuple(r for r in records if r is not None), duration)


async def _open_loop(
    urls: Sequence[str],
    model: str,
    prompts: Sequence[Prompt],
    send_at_s: Sequence[float],
    *,
    rate_rps: float,
    token_timeout_s: float,
) -> PointRun:
    async with _session(0, token_timeout_s) as session:  # no cap: every request when it is due
        tasks = []
        start = time.perf_counter()
        for i, ((prompt, max_tokens), at) in enumerate(zip(prompts, send_at_s, strict=True)):
            delay = start + at - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            url = urls[i % len(urls)].rstrip("/")
            body = _body(model, prompt, max_tokens)
            tasks.append(asyncio.create_task(_one(session, url, body, token_timeout_s)))
        records = tuple(await asyncio.gather(*tasks))
        duration = time.perf_counter() - start
    busy = sum(r.e2e_s for r in records if math.isfinite(r.e2e_s))
    in_flight = max(1, round(busy / duration)) if duration > 0 else 1
    return PointRun(in_flight, records, duration, request_rate_rps=rate_rps)


def run_point(
    urls: Sequence[str],
    model: str,
    prompts: Sequence[Prompt],
    *,
    concurrency: int | None = None,
    send_at_s: Sequence[float] | None = None,
    rate_rps: float = math.nan,
    token_timeout_s: float = 120.0,
) -> PointRun:
    """Send ``prompts`` round-robin over ``urls``: ``concurrency`` in flight (closed loop),
    or each at its ``send_at_s`` seconds from the start (open loop at ``rate_rps``).

    ``token_timeout_s`` bounds the wait for any byte of a response (a hang fails the request);
    opening a connection has :data:`CONNECT_TIMEOUT_S`.
    """
    if (concurrency is None) == (send_at_s is None):
        raise ValueError("give either concurrency (closed loop) or send_at_s (open loop)")
    if send_at_s is not None:
        if len(send_at_s) != len(prompts):
            raise ValueError(f"{len(send_at_s)} send times for {len(prompts)} prompts")
        return asyncio.run(
            _open_loop(
                list(urls), model, prompts, send_at_s, rate_rps=rate_rps, token_timeout_s=token_timeout_s
            )
        )
    assert concurrency is not None
    if concurrency < 1:
        raise ValueError(f"concurrency must be >= 1, got {concurrency}")
    return asyncio.run(_closed_loop(list(urls), model, prompts, concurrency, token_timeout_s))


def _pct(values: Sequence[float]) -> tuple[float, float, float]:
    """p50, p90, p99 in milliseconds (NaN for no values)."""
    data = np.asarray([v for v in values if math.isfinite(v)], dtype=float)
    if data.size == 0:
        return (math.nan, math.nan, math.nan)
    p50, p90, p99 = np.percentile(data * 1000.0, [50, 90, 99])
    return float(p50), float(p90), float(p99)


def summarize(run: PointRun, *, gpus: int) -> LoadPoint:
    """One :class:`~serving.LoadPoint` from a point's successful requests."""
    done = [r for r in run.records if r.ok]
    if not done:
        raise ValueError("no successful request in this load point")
    duration = max(run.duration_s, 1e-9)
    prompt = sum(r.prompt_tokens for r in done)
    output = sum(r.output_tokens for r in done)
    ttft, tpot = _pct([r.ttft_s for r in done]), _pct([r.tpot_s for r in done])
    itl = _pct([gap for r in done for gap in r.itl_s])
    e2e = _pct([r.e2e_s for r in done])
    point = LoadPoint.from_percentiles(
        concurrency=run.concurrency,
        gpus=gpus,
        ttft_ms=ttft,
        tpot_ms=tpot,
        itl_ms=itl,
        e2e_ms=e2e,
        tokens_s=(prompt + output) / duration,
        output_tokens_s=output / duration,
        requests_s=len(done) / duration,
        num_requests=len(done),
    )
    if math.isnan(run.request_rate_rps):
        return point
    return dataclasses.replace(point, request_rate_rps=run.request_rate_rps)
