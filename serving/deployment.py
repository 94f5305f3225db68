"""Deployments: how many workers of which parallelism, with which engine knobs.

A :class:`Deployment` is the single description of a candidate that every part of the tool
shares: the search space proposes it, a backend measures it, the front counts its GPUs, an
exporter renders it. Its GPU count comes from :meth:`Deployment.gpus` and nowhere else.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from typing import Any, Literal

from .errors import ConfigError
from .scalars import scalar_dict

__all__ = ["ROLES", "Deployment", "EngineKnobs", "Mode", "Parallelism", "WorkerGroup"]

Mode = Literal["agg", "disagg"]
#: Worker roles: an aggregated worker serves prefill and decode; disagg splits them.
ROLES = ("agg", "prefill", "decode")


@dataclass(frozen=True)
class Parallelism:
    """One worker's parallel layout.

    ``tp`` attention tensor parallel, ``dp`` attention data parallel (the worker spans
    ``tp * dp * pp`` GPUs), ``ep`` expert parallel: routed experts are split over ``ep``
    groups and MoE tensor parallelism is ``tp * dp / ep``. ``pp`` pipeline stages.
    """

    tp: int = 1
    dp: int = 1
    pp: int = 1
    ep: int = 1

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f.name, value, "must be a positive integer")
        if (self.tp * self.dp) % self.ep:
            raise ConfigError("ep", self.ep, f"must divide tp*dp = {self.tp * self.dp}")

    @property
    def gpus(self) -> int:
        """GPUs one worker of this layout occupies."""
        return self.tp * self.dp * self.pp

    @property
    def moe_tp(self) -> int:
        """Tensor-parallel degree inside each expert."""
        return self.tp * self.dp // self.ep

    def label(self) -> str:
        """InferenceX-style label: TP8, TEP8, DEP8, DPATP8, or a generic TP4xEP2."""
        tp, dp, ep = self.tp, self.dp, self.ep
        if dp == 1 and ep == 1:
            base = f"TP{tp}"
        elif dp == 1 and ep == tp:
            base = f"TEP{tp}"
        elif tp == 1 and ep == dp:
            base = f"DEP{dp}"
        elif tp == 1 and ep == 1:
            base = f"DPATP{dp}"
        else:
            base = f"TP{tp}" + (f"xDP{dp}" if dp > 1 else "") + (f"xEP{ep}" if ep > 1 else "")
        return base + (f"xPP{self.pp}" if self.pp > 1 else "")


@dataclass(frozen=True)
class EngineKnobs:
    """Serving-engine settings of one role, named after vLLM's ``vllm serve`` flags."""

    max_num_seqs: int = 256
    max_num_batched_tokens: int = 8192
    enable_chunked_prefill: bool = True
    gpu_memory_utilization: float = 0.9
    kv_cache_dtype: str = "auto"

    def __post_init__(self) -> None:
        for name in ("max_num_seqs", "max_num_batched_tokens"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(name, value, "must be a positive integer")
        if not 0.05 <= float(self.gpu_memory_utilization) <= 1.0:
            raise ConfigError("gpu_memory_utilization", self.gpu_memory_utilization, "must be in [0.05, 1.0]")


@dataclass(frozen=True)
class WorkerGroup:
    """``count`` identical workers of one role."""

    parallel: Parallelism
    count: int = 1
    knobs: EngineKnobs = EngineKnobs()

    @property
    def gpus(self) -> int:
        return self.count * self.parallel.gpus

    def to_dict(self) -> dict[str, Any]:
        return {"count": self.count, **scalar_dict(self.parallel), **scalar_dict(self.knobs)}

    @classmethod
    def from_dict(cls, data: dict[str, Any], role: str = "worker") -> WorkerGroup:
        par_names = {f.name for f in fields(Parallelism)}
        knob_names = {f.name for f in fields(EngineKnobs)}
        unknown = set(data) - par_names - knob_names - {"count"}
        if unknown:
            allowed = ", ".join(sorted(par_names | knob_names | {"count"}))
            raise ConfigError(f"{role}.{sorted(unknown)[0]}", data, f"unknown key; allowed: {allowed}")
        return cls(
            parallel=Parallelism(**{k: v for k, v in data.items() if k in par_names}),
            count=int(data.get("count", 1)),
            knobs=EngineKnobs(**{k: v for k, v in data.items() if k in knob_names}),
        )


@dataclass(frozen=True)
class Deployment:
    """A complete candidate: aggregated workers, or prefill and decode pools."""

    mode: Mode
    agg: WorkerGroup | None = None
    prefill: WorkerGroup | None = None
    decode: WorkerGroup | None = None

    def __post_init__(self) -> None:
        if self.mode == "agg":
            if self.agg is None or self.prefill or self.decode:
                raise ConfigError("mode", self.mode, "agg needs exactly the 'agg' worker group")
        elif self.mode == "disagg":
            if self.prefill is None or self.decode is None or self.agg:
                raise ConfigError("mode", self.mode, "disagg needs 'prefill' and 'decode' groups")
        else:
            raise ConfigError("mode", self.mode, "allowed: agg, disagg")

    def groups(self) -> dict[str, WorkerGroup]:
        """Worker groups by role, in launch order (prefill before decode)."""
        out = {"agg": self.agg, "prefill": self.prefill, "decode": self.decode}
        return {role: g for role, g in out.items() if g is not None}

    def gpus(self) -> int:
        """All GPUs of the deployment: prefill + decode (or the aggregated workers)."""
        return sum(g.gpus for g in self.groups().values())

    def label(self) -> str:
        """Topology label: ``TP8`` (one agg worker), ``2xTP4``, ``1xDEP4+1xDEP8``."""
        if self.mode == "agg":
            assert self.agg is not None
            lab = self.agg.parallel.label()
            return lab if self.agg.count == 1 else f"{self.agg.count}x{lab}"
        assert self.prefill is not None and self.decode is not None
        return (
            f"{self.prefill.count}x{self.prefill.parallel.label()}"
            f"+{self.decode.count}x{self.decode.parallel.label()}"
        )

    def family(self) -> str:
        """The label without worker counts: the layouts (``TP8``, ``TEP8+DEP32``)."""
        return "+".join(g.parallel.label() for g in self.groups().values())

    def to_dict(self) -> dict[str, Any]:
        return {"mode": self.mode, **{role: g.to_dict() for role, g in self.groups().items()}}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Deployment:
        unknown = set(data) - {"mode", *ROLES}
        if unknown:
            raise ConfigError(
                f"deployment.{sorted(unknown)[0]}", data, "allowed keys: mode, agg, prefill, decode"
            )
        groups = {role: WorkerGroup.from_dict(data[role], role) for role in ROLES if data.get(role)}
        return cls(mode=data.get("mode", "agg"), **groups)

    def key(self) -> str:
        """Canonical text of the deployment: equal keys mean the same candidate."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
