"""Estimated energy of a simulated load point: each GPU's board power, scaled by how busy it is.

A GPU serving a model draws a floor of power whatever it does (HBM refresh, clocks, leakage,
an engine spinning on an empty queue) and, above it, power that grows with the work its
kernels do. How busy a GPU is comes from the point's share of its speed of light
(:mod:`serving.roofline`, the ``sol_frac`` column of ``points.csv``): the larger of its HBM
and its FLOP time at the datasheet peaks, per role (prefill and decode pools are busy to
different degrees). Per GPU::

    activity = min(1, sol_frac / FULL_POWER_SOL_FRAC)
    power_w  = board_power_w x (IDLE_POWER_FRAC + (1 - IDLE_POWER_FRAC) x activity)

and the point's energy is the sum over its GPUs times its window, ``num_requests /
requests_s`` seconds (the time the benchmark the point stands for would take). The board
power is the catalog's (``serving/data/gpus.yaml``, with its sources), or the power limit a
hardware profile read. Every such point is marked ``energy_source: estimated``; a GPU with no
known board power leaves the energy missing, with that reason.

The two constants are global (one pair for every GPU; no engine or model dependence), kept
here rather than in ``constants.yaml`` because the fidelity fit does not fit them (no
calibration point has a power reading) and a constants file written before them must still
load:

- ``FULL_POWER_SOL_FRAC = 0.67``: on one H200, power-capped bf16 GEMMs sustain 665 of 989
  TFLOPS (67% of peak) while the card sits at its 700 W cap (shared/fidelity/kernels/h200.md,
  "Power state" and takeaway 1): work at that share of the roofline already draws the board
  power, so more cannot draw more.
- ``IDLE_POWER_FRAC = 0.15``: estimate. H100/H200 SXM cards with a model loaded and no
  requests read about 70-120 W of 700 W in NVML (vendor idle figures are not published);
  0.15 x 700 = 105 W. Not measured on this project's machines; ``tuner profile`` records the
  power limit, not the idle draw.

A shape, not a calibrated model: memory-bound decode draws somewhat less than a GEMM at the
same share, so points of small batches are estimated a little high. The ranking it gives
(more GPUs for the same tokens cost more joules; a busier GPU yields more tokens per joule)
is what the ``energy`` objective needs.
"""

from __future__ import annotations

import math

from serving import Deployment, LoadPoint, Problem
from serving.hardware import GPU
from serving.roofline import Roofline

__all__ = ["FULL_POWER_SOL_FRAC", "IDLE_POWER_FRAC", "PowerModel", "gpu_power_w"]

#: Share of its speed of light at which a GPU draws its full board power (h200.md).
FULL_POWER_SOL_FRAC = 0.67
#: Power of a GPU with a model loaded and no work, as a share of its board power (estimate).
IDLE_POWER_FRAC = 0.15


def gpu_power_w(gpu: GPU, sol_frac: float) -> float:
    """Mean power of one GPU busy at ``sol_frac`` of its speed of light, watts."""
    share = sol_frac if math.isfinite(sol_frac) else 0.0
    activity = min(1.0, max(0.0, share) / FULL_POWER_SOL_FRAC)
    return gpu.board_power_w * (IDLE_POWER_FRAC + (1.0 - IDLE_POWER_FRAC) * activity)


class PowerModel:
    """The power of one deployment's GPUs for one problem, priced once (its roofline), then
    applied to any number of its load points (:meth:`attach`)."""

    def __init__(self, deployment: Deployment, problem: Problem, *, draft_tokens: int = 0) -> None:
        self._gpu = problem.gpu
        self._gpus = {role: group.gpus for role, group in deployment.groups().items()}
        self._roofline = Roofline(deployment, problem, draft_tokens=draft_tokens)

    def power_w(self, point: LoadPoint) -> float:
        """Mean power of all the deployment's GPUs at ``point``, watts."""
        shares = self._roofline.share(point).per_role
        return sum(self._gpus[role] * gpu_power_w(self._gpu, frac) for role, frac in shares)

    def attach(self, point: LoadPoint) -> LoadPoint:
        """``point`` with its estimated energy over its window (see the module docstring)."""
        if self._gpu.board_power_w <= 0:
            return point.without_energy(f"no board power known for GPU {self._gpu.name}")
        if not (point.requests_s > 0 and math.isfinite(point.requests_s) and point.num_requests > 0):
            return point.without_energy("no requests served: no window to charge power to")
        seconds = point.num_requests / point.requests_s
        return point.with_energy(self.power_w(point) * seconds, seconds=seconds, source="estimated")
