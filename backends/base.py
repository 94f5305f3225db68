"""The backend interface: how a candidate deployment is measured.

A backend turns (deployment, problem) into load points, one per concurrency of the
workload's ladder. The study calls :meth:`Backend.check` first for every candidate and only
calls :meth:`Backend.measure` when it returned ``None``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

from serving import Deployment, LoadPoint, Problem

__all__ = ["Backend", "PointCallback"]

#: Called with each load point as soon as it is measured (so a killed run loses nothing).
PointCallback = Callable[[LoadPoint], None]


@runtime_checkable
class Backend(Protocol):
    """Contract every backend meets.

    - ``name``: the registry name (``simulator``, ``vllm``).
    - ``check``: static, cheap, no side effects; returns why the deployment cannot run on
      this backend for this problem (e.g. memory, unsupported layout), or ``None``.
    - ``measure``: returns one :class:`~serving.LoadPoint` per concurrency level of
      ``problem.workload``, in ladder order, calling ``on_point`` after each. A candidate
      that crashes or runs out of memory raises :class:`~serving.CandidateFailed` with the
      reason; every process it started is stopped before it returns or raises.
    - ``describe``: name, version and settings, recorded as provenance in ``pick.yaml``.

    Optional attribute: ``instant`` (default False). True means a measurement takes
    microseconds, so the study may buffer storage writes instead of persisting each load
    point as it arrives (which a live backend needs, where a point costs minutes).
    """

    name: str

    def check(self, deployment: Deployment, problem: Problem) -> str | None: ...

    def measure(
        self,
        deployment: Deployment,
        problem: Problem,
        *,
        on_point: PointCallback | None = None,
    ) -> list[LoadPoint]: ...

    def describe(self) -> dict[str, Any]: ...
