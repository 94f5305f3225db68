"""What one trial of the vllm backend leaves on disk, beside the servers' logs.

``trial.json``: the label, every command and environment, start / measure / stop seconds and
the failure reason; ``points.jsonl``: per load point the client figures, token totals, each
server's ``/metrics`` deltas and (on GPUs) energy. Written as the trial goes, so a killed run
keeps what it measured.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

from serving import LoadPoint
from serving.launch import LaunchPlan

from ..live.loadgen import PointRun
from ..live.metrics import ServerMetrics
from .launcher import RunningDeployment

__all__ = ["TrialRecord"]


class TrialRecord:
    """What a trial leaves on disk: ``trial.json`` and ``points.jsonl`` in its log directory."""

    def __init__(self, path: Path, plan: LaunchPlan) -> None:
        self.dir, self.plan = path, plan
        self.points: list[LoadPoint] = []
        self.reason = ""
        self.t0 = time.monotonic()
        self.times: dict[str, float] = {}
        self.t_measure = self.t_stop = math.nan

    def ready(self, running: RunningDeployment) -> None:
        self.times["start_s"] = running.ready_s
        self.t_measure = time.monotonic()

    def stopping(self) -> None:
        self.times["measure_s"] = time.monotonic() - self.t_measure
        self.t_stop = time.monotonic()

    def add(self, point: LoadPoint, run: PointRun, server: dict[str, ServerMetrics], joules: float) -> None:
        self.points.append(point)
        record = {
            "client": point.to_dict(),
            "duration_s": run.duration_s,
            "prompt_tokens": sum(r.prompt_tokens for r in run.records if r.ok),
            "output_tokens": sum(r.output_tokens for r in run.records if r.ok),
            "server": {url: m.to_dict() for url, m in server.items()},
            "energy_j": None if math.isnan(joules) else joules,  # tok_per_j etc.: in "client"
        }
        with (self.dir / "points.jsonl").open("a") as fh:
            fh.write(json.dumps(record) + "\n")

    def fail(self, reason: str) -> None:
        self.reason = reason

    def write(self) -> None:
        if not math.isnan(self.t_stop):
            self.times["stop_s"] = time.monotonic() - self.t_stop
        self.times["total_s"] = time.monotonic() - self.t0
        doc = {
            "label": self.plan.label,
            "commands": [{"argv": list(w.argv), "env": dict(w.env)} for w in self.plan.workers],
            "router": list(self.plan.router.argv) if self.plan.router else None,
            "points": len(self.points),
            "failed": self.reason or None,
            **self.times,
        }
        (self.dir / "trial.json").write_text(json.dumps(doc, indent=2) + "\n")
