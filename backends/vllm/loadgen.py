"""Our closed-loop load generator: streamed OpenAI ``/v1/completions`` against live servers.

Each request's prompt is a list of token IDs of an exact length drawn from a seeded generator
(no tokenizer round trip can change the count), ``ignore_eos`` makes every request run to
``max_tokens``, and tokens are counted from the streamed ``token_ids`` and the final usage
chunk (``stream_options.include_usage``), never from text: a random-weight model may decode a
token to an empty string.

``concurrency`` requests are in flight at all times (closed loop): each of ``concurrency``
workers sends its next request as soon as its previous one finished, until the point's
``num_requests`` have been sent.

Definitions follow ``vllm bench serve`` (vllm/benchmarks/serve.py):
- TTFT: request sent -> first streamed token; E2E: request sent -> last byte.
- TPOT per request: (E2E - TTFT) / (output tokens - 1); ITL: every gap between streamed
  chunks, pooled over requests (one chunk is one token here, as vLLM streams per token).
- Throughput: tokens of completed requests / point duration (first send -> last finish).
Percentiles are numpy's linear interpolation, as in vLLM. Where we differ: tok/s/user is
1000 / median TPOT (the chart's x axis), tok/s/GPU divides (input + output) tok/s by every GPU
of the deployment; a failed request fails the point instead of being left out.
"""

from __future__ import annotations

import asyncio
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

__all__ = ["PointRun", "PromptSource", "RequestRecord", "run_point", "summarize"]

#: Lowest token ID drawn for prompts: skips the special tokens most tokenizers put first.
LOWEST_TOKEN_ID = 10


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
    """The records of one load point and its wall time (first send -> last finish)."""

    concurrency: int
    records: tuple[RequestRecord, ...]
    duration_s: float

    @property
    def errors(self) -> list[str]:
        return [r.error for r in self.records if r.error]


class PromptSource:
    """Seeded prompts: token-ID lists of exact lengths, and output lengths.

    With ``range_ratio`` r the lengths are uniform in ``[len*(1-r), len*(1+r)]`` as in vLLM's
    random dataset; r = 0 gives fixed lengths.
    """

    def __init__(
        self, *, isl: int, osl: int, vocab_size: int, seed: int = 0, range_ratio: float = 0.0
    ) -> None:
        if vocab_size <= LOWEST_TOKEN_ID:
            raise ValueError(f"vocab_size must exceed {LOWEST_TOKEN_ID}, got {vocab_size}")
        self.isl, self.osl, self.vocab_size, self.range_ratio = isl, osl, vocab_size, range_ratio
        self._rng = np.random.default_rng(seed)

    def _length(self, mean: int) -> int:
        if not self.range_ratio:
            return mean
        low = max(1, math.floor(mean * (1 - self.range_ratio)))
        high = max(low, math.ceil(mean * (1 + self.range_ratio)))
        return int(self._rng.integers(low, high + 1))

    def take(self, count: int) -> list[tuple[list[int], int]]:
        """``count`` (prompt token IDs, max_tokens) pairs."""
        out = []
        for _ in range(count):
            ids = self._rng.integers(LOWEST_TOKEN_ID, self.vocab_size, size=self._length(self.isl))
            out.append(([int(i) for i in ids], self._length(self.osl)))
        return out


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
    prompts: list[tuple[list[int], int]],
    concurrency: int,
    token_timeout_s: float,
) -> PointRun:
    httpx = require("httpx")
    timeout = httpx.Timeout(token_timeout_s, connect=10.0)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    work: Iterator[tuple[int, tuple[list[int], int]]] = iter(enumerate(prompts))
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


def run_point(
    urls: Sequence[str],
    model: str,
    prompts: list[tuple[list[int], int]],
    *,
    concurrency: int,
    token_timeout_s: float = 120.0,
) -> PointRun:
    """Send ``prompts`` with ``concurrency`` in flight, round-robin over ``urls``.

    ``token_timeout_s`` bounds the wait for any byte of a response (a hang fails the request).
    """
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
    return LoadPoint.from_percentiles(
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
