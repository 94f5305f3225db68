"""The load points one trial measures, in order: what each sends and how.

Closed loop: one step per ``workload.concurrency`` level, ``options.requests_at(c)`` prompts
of the workload's drawn lengths. Open loop: one step per rate of ``workload.rates`` (its
:attr:`~serving.Workload.load_keys`, so a measured point's ``load_key`` matches the ladder on
resume), ``options.requests_per_point`` requests each:

- ``poisson``: drawn lengths, sent on a gamma schedule (:func:`.arrivals.gamma_schedule`,
  shape ``workload.burstiness``);
- ``trace``: the dataset's first rows in file order with their own lengths, sent at their
  timestamps time-scaled to the step's rate (the trace's own rate when the spec gives no
  ``request_rates``: the timestamps as they are, for the whole file).

Seeded: the prompts by ``options.seed`` (through the :class:`~.prompts.PromptSource`), the
schedules by a generator of their own from the same seed, so a trial's requests are the
same every time.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from serving import Workload

from .arrivals import gamma_schedule, trace_schedule
from .prompts import Prompt, PromptSource

__all__ = ["LadderOptions", "Step", "ladder_steps"]

#: Second entropy word of the schedules' generator: independent of the prompts' stream.
_SCHEDULE_STREAM = 1


@dataclass(frozen=True)
class Step:
    """One load point: its prompts and either a concurrency or the send times."""

    label: str
    prompts: list[Prompt]
    concurrency: int | None = None
    send_at_s: tuple[float, ...] | None = None
    rate_rps: float = math.nan


class LadderOptions(Protocol):
    """What the ladder needs of a backend's options (e.g. the vllm backend's)."""

    @property
    def requests_per_point(self) -> int: ...

    @property
    def seed(self) -> int: ...

    def requests_at(self, concurrency: int) -> int:
        """Requests of a closed-loop point at ``concurrency``."""
        ...


def ladder_steps(workload: Workload, source: PromptSource, options: LadderOptions) -> Iterator[Step]:
    """The steps of ``workload``'s ladder (see the module doc); prompts drawn lazily."""
    if not workload.open_loop:
        for c in workload.concurrency:
            yield Step(f"concurrency {c}", source.take(options.requests_at(c)), concurrency=c)
        return
    count = max(1, options.requests_per_point)
    rng = np.random.default_rng((options.seed, _SCHEDULE_STREAM))
    for rate in workload.rates:
        label = f"{rate:g} req/s"
        if workload.arrivals == "trace":
            rows = workload.requests[:count]
            prompts = source.prompts_for([(r.input_tokens, r.output_tokens) for r in rows])
            times = [r.arrival_s or 0.0 for r in rows]
            spread = times[-1] > times[0]  # the first rows may share one timestamp
            at = trace_schedule(times, rate_rps=rate) if spread else (0.0,) * len(rows)
        else:
            prompts = source.take(count)
            at = gamma_schedule(count, rate_rps=rate, burstiness=workload.burstiness, rng=rng)
        yield Step(label, prompts, send_at_s=at, rate_rps=rate)
