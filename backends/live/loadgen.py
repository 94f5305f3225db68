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


async def _one(client: Any, url: str, body: dict[str, Any], token_timeout_s: float) -> RequestRecord:
    """Send one streamed completion and time its chunks."""
    httpx = require("httpx")
    start = time.perf_counter()
    arrivals: list[float] = []
    usage: dict[str, int] = {}
    counted = 0
    try:
        async with client.stream("POST", f"{url}/v1/completions", json=body) as response:
            if response.status_code != 200:
                text = (await response.aread()).decode(errors="replace")
                return RequestRecord(
                    0, 0, math.nan, math.nan, error=f"HTTP {response.status_code}: {text[:200]}"
                )
            async for line in response.aiter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                chunk = json.loads(line[6:])
                if chunk.get("usage"):
                    usage = chunk["usage"]
                for choice in chunk.get("choices") or ():
                    arrivals.append(time.perf_counter() - start)
                    counted += len(choice.get("token_ids") or ()) or 1
    except httpx.TimeoutException:
        return RequestRecord(
            0, counted, math.nan, math.nan, error=f"hang: no token within {token_timeout_s:g} s"
        )
    except httpx.TransportError as exc:
        return RequestRecord(0, counted, math.nan, math.nan, error=f"connection: {type(exc).__name__}: {exc}")
    e2e = time.perf_counter() - start
    if not arrivals:
        return RequestRecord(0, 0, math.nan, e2e, error="no token streamed")
    output = int(usage.get("completion_tokens", counted))
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
    httpx = require("httpx")
    timeout = httpx.Timeout(token_timeout_s, connect=10.0)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    work: Iterator[tuple[int, Prompt]] = iter(enumerate(prompts))
    records: list[RequestRecord | None] = [None] * len(prompts)

    async def worker(client: Any) -> None:
        for i, (prompt, max_tokens) in work:  # shared iterator: next request when one ends
            url = urls[i % len(urls)].rstrip("/")
            records[i] = await _one(client, url, _body(model, prompt, max_tokens), token_timeout_s)

    async with httpx.AsyncClient(timeout=timeout, limits=limits) as client:
        start = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
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
    httpx = require("httpx")
    timeout = httpx.Timeout(token_timeout_s, connect=10.0)
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
    async with httpx.AsyncClient(timeout=timeout, limits=limits) as client:
        tasks = []
        start = time.perf_counter()
        for i, ((prompt, max_tokens), at) in enumerate(zip(prompts, send_at_s, strict=True)):
            delay = start + at - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            url = urls[i % len(urls)].rstrip("/")
            body = _body(model, prompt, max_tokens)
            tasks.append(asyncio.create_task(_one(client, url, body, token_timeout_s)))
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

    ``token_timeout_s`` bounds the wait for any byte of a response (a hang fails the request).
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
