"""LoadPoint: one measured (or predicted) operating point of a deployment."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

from .scalars import scalar_dict

__all__ = ["ENERGY_SOURCES", "INTERVAL_FIELDS", "PERCENTILES", "LoadPoint"]

PERCENTILES = (50, 90, 99)
#: Where a point's energy comes from: GPU counters (NVML), the simulator's power model, or
#: nowhere (``energy_missing_reason`` says why).
ENERGY_SOURCES = ("measured", "estimated", "missing")
#: The bounds of an estimated point's calibrated interval (NaN on a measured point).
INTERVAL_FIELDS = frozenset(
    f"{m}_{end}" for m in ("ttft_ms", "tpot_ms", "tok_s_gpu") for end in ("low", "high")
)
#: The reason stored points written before energy was recorded read back with.
NOT_RECORDED = "not recorded"


@dataclass(frozen=True)
class LoadPoint:
    """A deployment at one load: a closed-loop concurrency or an open-loop arrival rate.

    ``tok_s_user`` = 1000 / median TPOT; ``tok_s_gpu`` = (input + output) tokens/s over all
    GPUs of the deployment (prefill + decode); ``output_tok_s_gpu`` counts output tokens only.
    ``request_rate_rps`` is the open-loop arrival rate (NaN for a closed loop, where
    ``concurrency`` is the load; open loop, ``concurrency`` is the mean number of requests in
    flight). ``utilization`` is the arrival rate over the deployment's capacity (NaN when not
    known): at 1 or more the queue grows without bound and the latencies only say how long
    the benchmark ran, so no SLA accepts such a point.

    Energy: ``energy_j`` = joules all GPUs of the deployment drew over the point's window;
    ``tok_per_j`` = **output** tokens per joule over that window (the convention of
    :mod:`tuner.cost`: the whole bill is charged to the generated tokens, so tok/J and
    $/Mtok count the same tokens). ``energy_source`` is ``measured`` (NVML counters),
    ``estimated`` (the simulator's power model) or ``missing``, with
    ``energy_missing_reason`` saying why (e.g. no NVML on this machine). Set them with
    :meth:`with_energy` / :meth:`without_energy`, which hold the metric's definition.
    """

    concurrency: int
    gpus: int
    ttft_ms_p50: float
    ttft_ms_p90: float
    ttft_ms_p99: float
    tpot_ms_p50: float
    tpot_ms_p90: float
    tpot_ms_p99: float
    tok_s_user: float
    tok_s_gpu: float
    output_tok_s_gpu: float
    requests_s: float
    itl_ms_p50: float = float("nan")
    itl_ms_p90: float = float("nan")
    itl_ms_p99: float = float("nan")
    e2e_ms_p50: float = float("nan")
    e2e_ms_p90: float = float("nan")
    e2e_ms_p99: float = float("nan")
    num_requests: int = 0
    request_rate_rps: float = float("nan")
    utilization: float = float("nan")

    # Estimated points (the simulator) carry a calibrated 80% interval of the measured value
    # per metric (backends/simulator/intervals.py); measured points leave them NaN.
    ttft_ms_low: float = float("nan")
    ttft_ms_high: float = float("nan")
    tpot_ms_low: float = float("nan")
    tpot_ms_high: float = float("nan")
    tok_s_gpu_low: float = float("nan")
    tok_s_gpu_high: float = float("nan")

    energy_j: float = float("nan")
    tok_per_j: float = float("nan")
    energy_source: str = "missing"
    energy_missing_reason: str = NOT_RECORDED

    @property
    def open_loop(self) -> bool:
        return math.isfinite(self.request_rate_rps)

    @property
    def load_key(self) -> float:
        """The load this point was measured at: the arrival rate (open loop) or the
        concurrency (closed loop); what a ladder is matched on (resume, guided, check)."""
        return self.request_rate_rps if self.open_loop else float(self.concurrency)

    @property
    def past_capacity(self) -> bool:
        """Open-loop arrivals faster than the deployment serves: an unbounded queue."""
        return self.utilization >= 1.0

    @classmethod
    def from_percentiles(
        cls,
        *,
        concurrency: int,
        gpus: int,
        ttft_ms: Sequence[float],
        tpot_ms: Sequence[float],
        itl_ms: Sequence[float],
        e2e_ms: Sequence[float],
        tokens_s: float,
        output_tokens_s: float,
        requests_s: float,
        num_requests: int,
    ) -> LoadPoint:
        """A point from (p50, p90, p99) latency triples and whole-deployment throughputs.

        The metric definitions live here, once: tok/s/user = 1000 / median TPOT (NaN when
        TPOT is 0, i.e. one-token outputs), per-GPU figures divide by all ``gpus``.
        """
        return cls(
            concurrency=concurrency,
            gpus=gpus,
            ttft_ms_p50=ttft_ms[0],
            ttft_ms_p90=ttft_ms[1],
            ttft_ms_p99=ttft_ms[2],
            tpot_ms_p50=tpot_ms[0],
            tpot_ms_p90=tpot_ms[1],
            tpot_ms_p99=tpot_ms[2],
            itl_ms_p50=itl_ms[0],
            itl_ms_p90=itl_ms[1],
            itl_ms_p99=itl_ms[2],
            e2e_ms_p50=e2e_ms[0],
            e2e_ms_p90=e2e_ms[1],
            e2e_ms_p99=e2e_ms[2],
            tok_s_user=1000.0 / tpot_ms[0] if tpot_ms[0] > 0 else float("nan"),
            tok_s_gpu=tokens_s / gpus,
            output_tok_s_gpu=output_tokens_s / gpus,
            requests_s=requests_s,
            num_requests=num_requests,
        )

    def with_energy(self, energy_j: float, *, seconds: float, source: str) -> LoadPoint:
        """This point with ``energy_j`` joules drawn over ``seconds`` by all its GPUs;
        ``tok_per_j`` = output tokens in that window (output tok/s/GPU x GPUs x seconds)
        over the joules. A non-positive or non-finite reading makes the energy missing."""
        if source not in ENERGY_SOURCES[:2]:
            raise ValueError(f"energy source must be one of {ENERGY_SOURCES[:2]}, got {source!r}")
        if not (math.isfinite(energy_j) and energy_j > 0 and math.isfinite(seconds) and seconds > 0):
            return self.without_energy(f"no usable reading ({energy_j} J over {seconds} s)")
        tokens = self.output_tok_s_gpu * self.gpus * seconds
        return self._with_energy_fields(
            energy_j=energy_j,
            tok_per_j=tokens / energy_j if math.isfinite(tokens) else float("nan"),
            energy_source=source,
            energy_missing_reason="",
        )

    def without_energy(self, reason: str) -> LoadPoint:
        """This point with no energy, and why (shown in ``points.csv``)."""
        nan = float("nan")
        return self._with_energy_fields(
            energy_j=nan, tok_per_j=nan, energy_source="missing", energy_missing_reason=reason
        )

    def with_intervals(self, bounds: Mapping[str, float]) -> LoadPoint:
        """This point with its interval bounds (``<metric>_low`` / ``<metric>_high`` of
        :data:`INTERVAL_FIELDS`) set; the simulator attaches them to every point it prices."""
        unknown = set(bounds) - INTERVAL_FIELDS
        if unknown:
            raise ValueError(f"not interval fields: {sorted(unknown)}")
        return self._with_energy_fields(**{k: float(v) for k, v in bounds.items()})

    def _with_energy_fields(self, **values: Any) -> LoadPoint:
        """``dataclasses.replace(self, **values)`` for the energy and interval fields, at a
        fifth of its cost: the simulator attaches both to every point it prices, and
        ``replace`` runs the 40-field ``__init__`` again. Equivalent because the record is
        frozen, plain (no ``__post_init__``) and the values are checked by the methods above."""
        out = object.__new__(LoadPoint)
        out.__dict__.update(self.__dict__, **values)
        return out

    def metric(self, name: str, percentile: int = 50) -> float:
        """``metric("ttft_ms", 90)`` -> ``ttft_ms_p90``; plain names pass through."""
        if name in ("ttft_ms", "tpot_ms", "itl_ms", "e2e_ms"):
            return float(getattr(self, f"{name}_p{percentile}"))
        return float(getattr(self, name))

    def to_dict(self) -> dict[str, Any]:
        return scalar_dict(self)  # every field is an int, float or str

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LoadPoint:
        kinds = {f.name: f.type for f in fields(cls)}
        out: dict[str, Any] = {}
        for name, kind in kinds.items():
            if name in data and data[name] not in (None, ""):
                if kind in ("str", str):
                    out[name] = str(data[name])
                else:
                    out[name] = int(float(data[name])) if kind in ("int", int) else float(data[name])
        if out.get("energy_source", "missing") != "missing":
            out["energy_missing_reason"] = ""  # a stored reading: the blank reason read as absent
        return cls(**out)
