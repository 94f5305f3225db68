"""Shared domain types of the tuner: models, GPUs, deployments, workloads, load points.

The lowest package: ``search_spaces``, ``backends`` and ``tuner`` all import it, and it
imports none of them.
"""

from .arch import ModelArch
from .catalog import load_gpu, load_model
from .deployment import Deployment, EngineKnobs, Parallelism, WorkerGroup
from .errors import CandidateFailed, ConfigError, TunerError
from .hardware import GPU
from .loadpoint import LoadPoint
from .problem import Problem
from .workload import Workload

__all__ = [
    "GPU",
    "CandidateFailed",
    "ConfigError",
    "Deployment",
    "EngineKnobs",
    "LoadPoint",
    "ModelArch",
    "Parallelism",
    "Problem",
    "TunerError",
    "WorkerGroup",
    "Workload",
    "load_gpu",
    "load_model",
]
