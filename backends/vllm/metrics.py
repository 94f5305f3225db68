"""vLLM's Prometheus metric names, for the engine-neutral reader in :mod:`backends.live.metrics`.

Names as vLLM's V1 engine exports them (``vllm:`` prefix); ``prompt_tokens_by_source_total``
with ``source="external_kv_transfer"`` counts the prompt tokens whose KV cache a
disaggregated decode worker received from its prefill worker.
"""

from __future__ import annotations

from ..live.metrics import MetricNames, ServerMetrics
from ..live.metrics import scrape as scrape_with

__all__ = ["VLLM_METRICS", "scrape"]

VLLM_METRICS = MetricNames(
    counters={
        "vllm:num_preemptions_total": "preemptions",
        "vllm:prompt_tokens_total": "prompt_tokens",
        "vllm:generation_tokens_total": "generation_tokens",
        "vllm:time_to_first_token_seconds_sum": "ttft_sum_s",
        "vllm:time_to_first_token_seconds_count": "ttft_count",
        "vllm:inter_token_latency_seconds_sum": "itl_sum_s",
        "vllm:inter_token_latency_seconds_count": "itl_count",
    },
    kv_cache_usage="vllm:kv_cache_usage_perc",
    prompt_tokens_by_source="vllm:prompt_tokens_by_source_total",
    requests_by_engine="vllm:request_success_total",
)


def scrape(url: str, *, timeout_s: float = 10.0) -> ServerMetrics:
    """One scrape of a vLLM server's ``/metrics``."""
    return scrape_with(url, VLLM_METRICS, timeout_s=timeout_s)
