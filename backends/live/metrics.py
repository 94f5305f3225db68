"""Server-side figures from an engine's Prometheus ``/metrics``, parsed with prometheus_client.

Each engine names its metrics its own way; a :class:`MetricNames` maps them onto the
fields of :class:`ServerMetrics` (vLLM's: :data:`backends.vllm.metrics.VLLM_METRICS`).

The load generator's client-side timings are the measurement; these counters are stored
beside them as a cross-check (a warning when the mean TTFT disagrees) and as evidence:
preemptions and KV-cache usage explain a bad point, and on a disaggregated decode worker
vLLM's ``vllm:prompt_tokens_by_source_total{source="external_kv_transfer"}`` proves the prompt's
KV cache really arrived from the prefill worker instead of being recomputed.

Counters are cumulative since the server started, so a load point's figures are the
difference of two snapshots (:meth:`ServerMetrics.minus`). Several engines (data parallel)
report separate label sets; they are summed, and per-engine request counts are kept.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .deps import require

__all__ = ["MetricNames", "ServerMetrics", "parse_metrics", "scrape"]


@dataclass(frozen=True)
class MetricNames:
    """An engine's Prometheus sample names for the fields of :class:`ServerMetrics`.

    ``counters``: sample name -> counter field (summed over label sets); ``kv_cache_usage``:
    the gauge (0-1, the largest over engines); ``prompt_tokens_by_source``: a counter with a
    ``source`` label; ``requests_by_engine``: a counter with an ``engine`` label. An empty
    name: the engine does not report it (the field stays 0 or empty).
    """

    counters: Mapping[str, str]
    kv_cache_usage: str = ""
    prompt_tokens_by_source: str = ""
    requests_by_engine: str = ""


@dataclass(frozen=True)
class ServerMetrics:
    """One scrape of one server (or the difference of two scrapes). Token counts are tokens,
    times are seconds, ``kv_cache_usage`` is the largest fraction (0-1) over the engines."""

    preemptions: float = 0.0
    prompt_tokens: float = 0.0
    generation_tokens: float = 0.0
    ttft_sum_s: float = 0.0
    ttft_count: float = 0.0
    itl_sum_s: float = 0.0
    itl_count: float = 0.0
    kv_cache_usage: float = 0.0
    prompt_tokens_by_source: dict[str, float] = field(default_factory=dict)
    requests_by_engine: dict[str, float] = field(default_factory=dict)

    @property
    def external_kv_tokens(self) -> float:
        """Prompt tokens whose KV cache came from another worker (disagg decode)."""
        return self.prompt_tokens_by_source.get("external_kv_transfer", 0.0)

    @property
    def mean_ttft_ms(self) -> float:
        return 1000.0 * self.ttft_sum_s / self.ttft_count if self.ttft_count else float("nan")

    def minus(self, before: ServerMetrics) -> ServerMetrics:
        """Counters since ``before``; the gauge (KV-cache usage) is the later reading."""
        values: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            now, then = getattr(self, f.name), getattr(before, f.name)
            if isinstance(now, dict):
                values[f.name] = {k: v - then.get(k, 0.0) for k, v in now.items()}
            elif f.name == "kv_cache_usage":
                values[f.name] = now
            else:
                values[f.name] = now - then
        return ServerMetrics(**values)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def parse_metrics(text: str, names: MetricNames) -> ServerMetrics:
    """Parse Prometheus text exposition from a server whose engine names its metrics ``names``."""
    parser = require("prometheus_client.parser")
    sums: dict[str, float] = dict.fromkeys(names.counters.values(), 0.0)
    by_source: dict[str, float] = {}
    by_engine: dict[str, float] = {}
    kv_usage = 0.0
    for family in parser.text_string_to_metric_families(text):
        for sample in family.samples:
            name, labels, value = sample.name, sample.labels, float(sample.value)
            if name in names.counters:
                sums[names.counters[name]] += value
            elif name and name == names.kv_cache_usage:
                kv_usage = max(kv_usage, value)
            elif name and name == names.prompt_tokens_by_source:
                source = labels.get("source", "")
                by_source[source] = by_source.get(source, 0.0) + value
            elif name and name == names.requests_by_engine:
                engine = labels.get("engine", "0")
                by_engine[engine] = by_engine.get(engine, 0.0) + value
    return ServerMetrics(
        **sums, kv_cache_usage=kv_usage, prompt_tokens_by_source=by_source, requests_by_engine=by_engine
    )


def scrape(url: str, names: MetricNames, *, timeout_s: float = 10.0) -> ServerMetrics:
    """GET ``{url}/metrics`` and parse it."""
    httpx = require("httpx")
    response = httpx.get(f"{url.rstrip('/')}/metrics", timeout=timeout_s)
    response.raise_for_status()
    return parse_metrics(response.text, names)
