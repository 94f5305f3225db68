"""The ``simulator`` backend: analytical predictions of load points, no GPU needed.

Prices every step of every worker from the model's FLOPs and bytes, the GPU's datasheet
peaks and a small set of global efficiency constants (``constants.yaml``), then runs a fluid
closed-loop model of aggregated or disaggregated serving over the concurrency ladder.
Deterministic and fast (tens of microseconds per load point), so a study can price thousands
of candidates.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from serving import CandidateFailed, ConfigError, Deployment, LoadPoint, Problem
from serving.memory import start_reason
from serving.precision import bytes_per_param, kv_bytes_per_element

from ..base import Capabilities, PointCallback
from .agg import agg_point
from .constants import ENGINES, Constants, load_constants
from .costs import WorkerCost
from .disagg import disagg_point, kv_transfer_s
from .intervals import IntervalModel, PointContext, load_intervals, load_ratio
from .openloop import agg_open_point, disagg_open_point, spread_lengths
from .power import PowerModel

__all__ = ["OPTIONS", "VERSION", "SimulatorBackend"]

logger = logging.getLogger(__name__)

#: Bumped whenever predictions change for the same inputs and constants.
VERSION = "4"  # 4: estimated energy (power.py) on every point
#: Options ``SimulatorBackend`` accepts (the spec's ``backend.options``).
OPTIONS = ("constants", "engine", "spec_decode")
#: Speculative decoding the simulator models: none, or one multi-token-prediction draft.
SPEC_DECODE = ("none", "mtp")


class SimulatorBackend:
    """Analytical backend.

    Options: ``constants`` = path of an alternative constants YAML; ``engine`` = the engine
    family whose kernel speed and step overhead apply (``vllm`` default, ``sglang``,
    ``trtllm``); ``spec_decode`` = ``none`` (default) or ``mtp`` (one draft token per step,
    accepted with the ``mtp_acceptance`` probability).
    """

    name = "simulator"
    #: Prices a candidate in well under a millisecond: the study may buffer its writes. Its
    #: intervals and energy are estimates a screening may skip (``measure(estimates=False)``).
    capabilities = Capabilities(instant=True, estimates=True)

    def __init__(self, **options: Any) -> None:
        for key, value in options.items():
            if key not in OPTIONS:
                raise ConfigError(f"backend.options.{key}", value, f"allowed: {', '.join(OPTIONS)}")
        path = options.get("constants")
        if path is not None and not isinstance(path, str):
            raise ConfigError("backend.options.constants", path, "must be a path to a YAML file")
        self._constants_path = path
        self.constants: Constants = load_constants(path)
        #: Calibrated interval model attached to every point; None leaves the intervals NaN
        #: (``tuner validate`` scores the point predictions only).
        self.intervals: IntervalModel | None = load_intervals()
        self.engine = str(options.get("engine", "vllm"))
        if self.engine not in ENGINES:
            raise ConfigError("backend.options.engine", self.engine, f"allowed: {', '.join(ENGINES)}")
        self.spec_decode = str(options.get("spec_decode", "none"))
        if self.spec_decode not in SPEC_DECODE:
            raise ConfigError(
                "backend.options.spec_decode", self.spec_decode, f"allowed: {', '.join(SPEC_DECODE)}"
            )

    def check(self, deployment: Deployment, problem: Problem) -> str | None:
        """Why this deployment cannot be priced or could not start (weights + reserve + KV
        for one full-length sequence per rank: :func:`serving.memory.start_reason`), or None.
        A deployment with room for fewer sequences than its batch runs smaller batches."""
        reason = self._unsupported(deployment, problem)
        return reason if reason is not None else start_reason(deployment, problem)

    def measure(
        self,
        deployment: Deployment,
        problem: Problem,
        *,
        on_point: PointCallback | None = None,
        estimates: bool = True,
    ) -> list[LoadPoint]:
        """One predicted LoadPoint per level of the ladder (concurrency, or arrival rate for
        an open loop: :mod:`.openloop`), in order, each with its calibrated intervals and
        estimated energy (:mod:`.power`); ``estimates=False`` leaves both out (the
        screening ranks on the predictions alone, at half the cost)."""
        reason = self.check(deployment, problem)
        if reason is not None:
            raise CandidateFailed(reason)
        consts, workload = self.constants, problem.workload
        points: list[LoadPoint] = []
        if deployment.mode == "agg":
            assert deployment.agg is not None
            cost = WorkerCost(deployment.agg, problem, consts, engine=self.engine, mtp=self._mtp)
            agg, gpus = deployment.agg, deployment.gpus()
            est_cost, est_group = cost, agg

            def predict(level: float) -> LoadPoint:
                if workload.open_loop:
                    return agg_open_point(cost, agg, workload, rate_rps=level, gpus=gpus)
                return agg_point(cost, agg, workload, concurrency=int(level), gpus=gpus)

        else:
            assert deployment.prefill is not None and deployment.decode is not None
            pcost = WorkerCost(deployment.prefill, problem, consts, engine=self.engine)
            dcost = WorkerCost(deployment.decode, problem, consts, engine=self.engine, mtp=self._mtp)
            xfer = kv_transfer_s(deployment, problem, pcost, consts)

            def predict(level: float) -> LoadPoint:
                if workload.open_loop:
                    return disagg_open_point(pcost, dcost, deployment, workload, rate_rps=level, xfer_s=xfer)
                return disagg_point(pcost, dcost, deployment, workload, concurrency=int(level), xfer_s=xfer)

            est_cost, est_group = dcost, deployment.decode  # saturation: the decode pool

        power = PowerModel(deployment, problem, draft_tokens=1 if self._mtp else 0) if estimates else None
        for level in workload.load_keys:
            point = spread_lengths(predict(level), workload)
            if power is not None:
                point = self._estimate(
                    point, deployment, problem, est_cost, est_group, max(1, point.concurrency)
                )
                point = power.attach(point)
            points.append(point)
            if on_point is not None:
                on_point(point)
        logger.debug("simulated %s: %d points", deployment.label(), len(points))
        return points

    def describe(self) -> dict[str, Any]:
        """Name, version and the constants in use (provenance for pick.yaml)."""
        out: dict[str, Any] = {
            "name": self.name,
            "version": VERSION,
            "engine": self.engine,
            "spec_decode": self.spec_decode,
            "constants": self.constants.to_dict(),
        }
        if self._constants_path is not None:
            out["constants_file"] = self._constants_path
        return out

    def _estimate(
        self,
        point: LoadPoint,
        deployment: Deployment,
        problem: Problem,
        cost: WorkerCost,
        group: Any,
        conc: int,
    ) -> LoadPoint:
        """``point`` with its calibrated intervals (``intervals.yaml``), when that file exists;
        saturation is judged on the decode pool for disagg."""
        model = self.intervals
        if model is None:
            return point
        c_rank, ratio = load_ratio(cost, group, problem.workload, conc)
        ctx = PointContext.of(problem, deployment, engine=self.engine, c_rank=c_rank, ratio=ratio)
        return model.attach(point, ctx)

    @property
    def _mtp(self) -> float:
        """Expected accepted draft tokens per decode step (0 without speculative decoding)."""
        return self.constants.mtp_acceptance if self.spec_decode == "mtp" else 0.0

    @staticmethod
    def _unsupported(deployment: Deployment, problem: Problem) -> str | None:
        """Inputs the model cannot price (as opposed to deployments that do not fit)."""
        arch, workload = problem.arch, problem.workload
        try:
            bytes_per_param(problem.precision)
            for group in deployment.groups().values():
                kv_bytes_per_element(group.knobs.kv_cache_dtype, problem.precision)
        except ConfigError as err:
            return f"unsupported: {err}"
        if workload.isl < 1 or workload.osl < 1:
            return f"unsupported: isl and osl must be >= 1 (got {workload.isl}, {workload.osl})"
        if not workload.concurrency or min(workload.concurrency) < 1:
            return f"unsupported: concurrency levels must be >= 1 (got {workload.concurrency})"
        if workload.open_loop and not all(r > 0 and math.isfinite(r) for r in workload.rates):
            return f"unsupported: request rates must be finite and > 0 (got {workload.rates})"
        if arch.is_moe and not (0 < arch.active_experts <= arch.experts):
            return f"unsupported: MoE model {arch.name} has active_experts={arch.active_experts}"
        for role, group in deployment.groups().items():
            if group.parallel.pp > arch.layers:
                return f"unsupported: {role} pp={group.parallel.pp} exceeds {arch.layers} layers"
        return None
