"""The backend interface: how a candidate deployment is measured.

A backend turns (deployment, problem) into load points, one per concurrency of the
workload's ladder. The study calls :meth:`Backend.check` first for every candidate and only
calls :meth:`Backend.measure` when it returned ``None``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol, runtime_checkable

from serving import Deployment, LoadPoint, Problem
from serving.launch import LaunchPlan

__all__ = ["Backend", "Capabilities", "ExportsPlan", "MeasureContext", "PointCallback"]

#: Called with each load point as soon as it is measured (so a killed run loses nothing).
PointCallback = Callable[[LoadPoint], None]


@dataclass(frozen=True)
class Capabilities:
    """What a backend declares it can do; the study reads these, it never probes for them.

    ``instant``: a measurement takes microseconds, so the study may buffer storage writes
    instead of persisting each load point as it arrives (which a live backend needs, where
    a point costs minutes), and may screen the whole space before sampling.
    ``placed``: ``measure`` takes the keyword ``context`` (a :class:`MeasureContext`) with
    the GPUs the worker's slot packer assigned to the trial, so the study may give it
    several candidates at once on disjoint GPUs; without it the backend is called one
    candidate at a time and never receives ``context``.
    ``estimates``: ``measure`` takes the keyword ``estimates``; ``estimates=False`` returns
    the point predictions only, without the estimated interval bounds and energy (those
    fields keep :class:`~serving.LoadPoint`'s defaults), at about half the cost: what a
    screening that ranks every candidate on throughput and latency needs. Every other
    field is the same as with ``estimates=True``.
    """

    instant: bool = False
    placed: bool = False
    estimates: bool = False


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

    - ``capabilities``: what the study may do with it (:class:`Capabilities`), declared on
      the class.
    """

    name: str
    capabilities: ClassVar[Capabilities]

    def check(self, deployment: Deployment, problem: Problem) -> str | None: ...

    def measure(
        self,
        deployment: Deployment,
        problem: Problem,
        *,
        on_point: PointCallback | None = None,
    ) -> list[LoadPoint]: ...

    def describe(self) -> dict[str, Any]: ...


@runtime_checkable
class ExportsPlan(Protocol):
    """Optional capability of a backend that starts real servers: the launch plan of what its
    ``measure`` runs, in the portable form the exporters render (the planned ports and
    devices, not the free ones of one trial), with the backend's own flags, environment and
    command. Exports of a run made with such a backend start what was measured; without it
    they render :func:`serving.launch.plan_launch`'s defaults (the simulator's case)."""

    def export_plan(
        self,
        deployment: Deployment,
        problem: Problem,
        *,
        model: str | None = None,
        served_model_name: str | None = None,
        base_port: int = 8000,
        node_hosts: tuple[str, ...] | None = None,
    ) -> LaunchPlan: ...


@dataclass(frozen=True)
class MeasureContext:
    """Where a measurement runs and what it belongs to.

    ``devices``: the global GPU ids assigned to the trial (node * GPUs per node + index; the
    backend maps them to ``CUDA_VISIBLE_DEVICES``), or None when the tuner did not place it
    (sequential runs: all GPUs of the node are the backend's). ``trial``: the study's trial
    number; ``log_dir``: the run directory's log folder, where a backend that keeps logs
    writes ``trial-<trial>/`` (None: the backend's own choice).
    """

    devices: tuple[int, ...] | None = None
    trial: int | None = None
    log_dir: str | None = None
