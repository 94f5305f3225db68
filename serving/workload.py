"""What the deployment is asked to serve: request lengths and how requests arrive.

Lengths: fixed (``isl`` / ``osl``), a named distribution per side (:mod:`serving.lengths`)
or a dataset file's rows (:mod:`serving.dataset`). ``isl`` and ``osl`` are always the *mean*
lengths, so every formula written for fixed lengths (throughput, KV per sequence) reads the
average request; :attr:`Workload.longest` is the longest request (max_model_len, the start
check).

Load: ``closed`` (today: ``concurrency`` requests in flight, one load point per level),
``poisson`` (open loop: requests arrive at ``R`` req/s with exponential gaps -- gamma gaps of
shape ``burstiness`` as ``vllm bench serve --request-rate R --burstiness b`` draws them --
one load point per rate of ``request_rates``), or ``trace`` (the dataset's ``arrival_s``
timestamps; with ``request_rates`` the trace is replayed time-scaled to each rate, without
them at its own rate).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, replace

from .dataset import Request
from .lengths import LengthDist

__all__ = ["ARRIVALS", "Workload"]

ARRIVALS = ("closed", "poisson", "trace")


@dataclass(frozen=True)
class Workload:
    """Lengths in tokens, the load ladder and the arrival process.

    ``range_ratio`` makes lengths uniform in ``[len * (1 - r), len * (1 + r)]`` as vLLM's
    random dataset does; 0 means fixed lengths. ``input_lengths`` / ``output_lengths``
    (None: from ``isl`` / ``osl`` and ``range_ratio``) give other distributions;
    ``requests`` holds a dataset file's rows (``file`` its path). ``shared_prefix`` is the
    share of every prompt that is one common prefix (a system prompt the prefix cache
    serves after the first request).
    """

    isl: int
    osl: int
    concurrency: tuple[int, ...]
    dataset: str = "random"
    range_ratio: float = 0.0
    input_lengths: LengthDist | None = None
    output_lengths: LengthDist | None = None
    file: str | None = None
    requests: tuple[Request, ...] = ()
    arrivals: str = "closed"
    request_rates: tuple[float, ...] = ()
    burstiness: float = 1.0
    shared_prefix: float = 0.0

    @property
    def seq_len(self) -> int:
        """Tokens the mean request holds in the KV cache when it finishes."""
        return self.isl + self.osl

    # -- lengths ------------------------------------------------------------------------
    @property
    def inputs(self) -> LengthDist:
        """The input-length distribution, whichever way the spec gave it."""
        if self.input_lengths is not None:
            return self.input_lengths
        if self.requests:
            return LengthDist.empirical([r.input_tokens for r in self.requests])
        return LengthDist.from_ratio(self.isl, self.range_ratio)

    @property
    def outputs(self) -> LengthDist:
        """The output-length distribution, whichever way the spec gave it."""
        if self.output_lengths is not None:
            return self.output_lengths
        if self.requests:
            return LengthDist.empirical([r.output_tokens for r in self.requests])
        return LengthDist.from_ratio(self.osl, self.range_ratio)

    @property
    def longest(self) -> int:
        """Tokens of the longest request (prompt + output) the workload can send."""
        if self.requests:
            return max(r.input_tokens + r.output_tokens for r in self.requests)
        return self.inputs.longest + self.outputs.longest

    @property
    def longest_input(self) -> int:
        if self.requests:
            return max(r.input_tokens for r in self.requests)
        return self.inputs.longest

    @property
    def fixed_lengths(self) -> bool:
        return self.inputs.distribution == "fixed" and self.outputs.distribution == "fixed"

    # -- load ---------------------------------------------------------------------------
    @property
    def open_loop(self) -> bool:
        return self.arrivals != "closed"

    @property
    def trace_rate_rps(self) -> float:
        """The dataset trace's own mean rate: requests after the first over its span."""
        times = [r.arrival_s for r in self.requests if r.arrival_s is not None]
        if len(times) < 2 or times[-1] <= times[0]:
            return float("nan")
        return (len(times) - 1) / (times[-1] - times[0])

    @property
    def rates(self) -> tuple[float, ...]:
        """The open-loop ladder in req/s (empty for a closed loop)."""
        if not self.open_loop:
            return ()
        if self.request_rates:
            return self.request_rates
        return (self.trace_rate_rps,)

    @property
    def load_keys(self) -> tuple[float, ...]:
        """The ladder as :attr:`serving.LoadPoint.load_key` values: rates or concurrencies."""
        return self.rates if self.open_loop else tuple(float(c) for c in self.concurrency)

    def with_load_keys(self, keys: tuple[float, ...]) -> Workload:
        """This workload with its ladder cut to ``keys`` (a subset of :attr:`load_keys`)."""
        if not self.open_loop:
            return replace(self, concurrency=tuple(int(k) for k in keys))
        if self.request_rates:
            return replace(self, request_rates=tuple(keys))
        return self  # a trace at its own rate: one level

    @property
    def arrival_cv2(self) -> float:
        """Squared coefficient of variation of the gaps between arrivals: 1 for Poisson,
        ``1 / burstiness`` for vLLM's gamma gaps, the trace's own for a trace."""
        if self.arrivals != "trace":
            return 1.0 / self.burstiness
        times = [r.arrival_s for r in self.requests if r.arrival_s is not None]
        gaps = [b - a for a, b in itertools.pairwise(times)]
        mean = sum(gaps) / len(gaps) if gaps else 0.0
        if mean <= 0:
            return 1.0
        return sum((g - mean) ** 2 for g in gaps) / len(gaps) / (mean * mean)

    def to_dict(self) -> dict[str, object]:
        """The spec's ``workload`` mapping (new keys only where they differ from today's)."""
        out: dict[str, object] = {
            "concurrency": list(self.concurrency),
            "dataset": self.dataset,
            "range_ratio": self.range_ratio,
        }
        if self.file is not None:
            out["file"] = self.file
        else:
            if self.input_lengths is None:
                out["isl"] = self.isl
            if self.output_lengths is None:
                out["osl"] = self.osl
            lengths = {
                side: dist.to_dict()
                for side, dist in (("input", self.input_lengths), ("output", self.output_lengths))
                if dist is not None
            }
            if lengths:
                out["lengths"] = lengths
        if self.arrivals != "closed":
            out["arrivals"] = self.arrivals
        if self.request_rates:
            out["request_rates"] = list(self.request_rates)
        if self.burstiness != 1.0:
            out["burstiness"] = self.burstiness
        if self.shared_prefix:
            out["shared_prefix"] = self.shared_prefix
        return out
