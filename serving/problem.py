"""The fixed part of a tuning question: model, GPUs, precision, workload."""

from __future__ import annotations

from dataclasses import dataclass

from .arch import ModelArch
from .hardware import GPU
from .workload import Workload

__all__ = ["Problem"]


@dataclass(frozen=True)
class Problem:
    """What every candidate of one study shares. ``gpus`` is the GPU budget of the study;
    ``gpus_per_node`` bounds a worker that must stay inside one NVLink domain."""

    arch: ModelArch
    gpu: GPU
    precision: str
    workload: Workload
    gpus: int
    gpus_per_node: int
