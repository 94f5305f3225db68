"""A test backend: the real simulator, except that some candidates fail or are interrupted.

Not a mock of the simulator: it delegates every measurement to it and only injects the
failures a live backend produces (a crashed server, a Ctrl-C), to test how the study
records them.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from backends.base import Capabilities, MeasureContext, PointCallback
from backends.simulator import SimulatorBackend
from serving import CandidateFailed, Deployment, LoadPoint, Problem


class FlakyBackend:
    name = "flaky"
    capabilities = Capabilities()

    def __init__(self, interrupt_after: int = 0, interrupt_flag: str = "", fail_tp: int = 1) -> None:
        """``interrupt_after``: Ctrl-C during the N-th measurement, while the file
        ``interrupt_flag`` exists (it is removed then, so a resumed run goes through)."""
        self._sim = SimulatorBackend()
        self._calls = 0
        self._interrupt_after = interrupt_after
        self._flag = Path(interrupt_flag) if interrupt_flag else None
        self._fail_tp = fail_tp

    def check(self, deployment: Deployment, problem: Problem) -> str | None:
        return self._sim.check(deployment, problem)

    def measure(
        self, deployment: Deployment, problem: Problem, *, on_point: PointCallback | None = None
    ) -> list[LoadPoint]:
        self._calls += 1
        armed = self._flag is not None and self._flag.exists()
        if armed and self._interrupt_after and self._calls >= self._interrupt_after:
            assert self._flag is not None
            self._flag.unlink()
            # Deliver one point first: it must survive the interruption.
            first = self._sim.measure(deployment, problem)[0]
            if on_point is not None:
                on_point(first)
            raise KeyboardInterrupt
        group = deployment.agg or deployment.decode
        assert group is not None
        if group.parallel.tp == self._fail_tp:
            raise CandidateFailed("server exited during start-up: CUDA out of memory (injected)")
        return self._sim.measure(deployment, problem, on_point=on_point)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name}


class SlowBackend:
    """The simulator at a live backend's pace: ``sleep_s`` per load point, each delivered
    through ``on_point`` as it is "measured"; logs the GPUs each point ran on and when.

    Registered through the ``TUNER_TEST_BACKENDS`` entry in worker subprocesses (see
    tests/tuner/test_workers.py), or the ``slow_backend`` fixture in-process.
    """

    name = "slow"
    capabilities = Capabilities(placed=True)

    def __init__(self, sleep_s: float = 0.2, log: str = "") -> None:
        self._sim = SimulatorBackend()
        self._sleep_s = sleep_s
        self._log = Path(log) if log else None

    def check(self, deployment: Deployment, problem: Problem) -> str | None:
        return self._sim.check(deployment, problem)

    def measure(
        self,
        deployment: Deployment,
        problem: Problem,
        *,
        on_point: PointCallback | None = None,
        context: MeasureContext | None = None,
    ) -> list[LoadPoint]:
        out = []
        for point in self._sim.measure(deployment, problem):
            began = time.time()
            time.sleep(self._sleep_s)
            if self._log is not None:  # one line per measured point: what, where and when
                with self._log.open("a") as fh:
                    devices = list(context.devices) if context and context.devices else None
                    row = [os.getpid(), deployment.key(), point.concurrency, devices, began, time.time()]
                    fh.write(json.dumps(row) + "\n")
            if on_point is not None:
                on_point(point)
            out.append(point)
        return out

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "sleep_s": self._sleep_s}
