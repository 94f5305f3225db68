"""The study spec: one YAML file parsed and validated once, into frozen dataclasses.

Every error names the field (``workload.isl``), the value received and what is allowed.
Unknown keys are errors. Parsing does no I/O beyond reading the file; resolving the model
and GPU (which may read a ``config.json``) happens in :func:`build_problem`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from serving import Problem, Workload, load_gpu, load_model
from serving.hardware_profile import load_profile_gpu
from serving.inputs import read_yaml
from serving.precision import PRECISIONS

from .confidence import parse_confidence
from .errors import ConfigError
from .explore import EXPLORE_AFTER
from .sla import SLA

__all__ = [
    "OBJECTIVES",
    "SAMPLERS",
    "BackendSpec",
    "HardwareSpec",
    "SearchSpaceSpec",
    "StudyOptions",
    "StudySpec",
    "build_problem",
    "load_spec",
    "parse_spec",
    "read_yaml",
]

SAMPLERS = ("tpe", "nsga2", "gp", "random", "grid")
OBJECTIVES = ("sla", "front")
DEFAULT_LADDER = (1, 2, 4, 8, 16, 32, 64, 128, 256)
#: The largest fleet a spec may describe: above the biggest clusters announced (xAI's
#: Colossus, ~200k GPUs). Far larger counts only break the arithmetic (a billion agg workers
#: at concurrency 1 leave each rank 1e-9 users, and the simulator's square roots go negative).
MAX_GPUS = 1_000_000


@dataclass(frozen=True)
class HardwareSpec:
    """The GPUs of the study. ``gpu`` names a catalog GPU; with ``profile`` (a ``tuner
    profile`` YAML) the GPU comes from that measured profile instead, and ``gpu``, when
    given, chooses among the profile's GPU types."""

    gpu: str | None
    gpus: int
    gpus_per_node: int
    profile: str | None = None


@dataclass(frozen=True)
class SearchSpaceSpec:
    preset: str | None = None  # None: chosen from the model (dense or MoE)
    overrides: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class BackendSpec:
    name: str = "simulator"
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class StudyOptions:
    name: str | None = None
    sampler: str = "tpe"
    trials: int = 100
    seed: int = 0
    objective: str = "sla"
    storage: str | None = None  # None: sqlite:///<output_dir>/study.db
    #: With a live backend: the simulator ranks the feasible space first and most trials
    #: measure its best predictions, refitting it after each (see tuner/guided.py).
    guided: bool = True
    #: After this many re-proposals of measured deployments in a row, the next trial measures
    #: an unmeasured deployment of the least-measured topology family (tuner/explore.py);
    #: 0 turns it off.
    explore_after: int = EXPLORE_AFTER


@dataclass(frozen=True)
class StudySpec:
    model: str
    hardware: HardwareSpec
    workload: Workload
    sla: SLA
    precision: str = "bf16"
    search_space: SearchSpaceSpec = SearchSpaceSpec()
    backend: BackendSpec = BackendSpec()
    study: StudyOptions = StudyOptions()
    output_dir: str = "runs/study"

    def storage_url(self) -> str:
        """The Optuna storage URL: the spec's, or a SQLite file in the run directory."""
        if self.study.storage:
            return self.study.storage
        return f"sqlite:///{Path(self.output_dir).resolve() / 'study.db'}"

    def study_name(self) -> str:
        return self.study.name or Path(self.output_dir).name

    def to_dict(self) -> dict[str, Any]:
        """Plain data for YAML/JSON (provenance, resume checks)."""
        return {
            "model": self.model,
            "precision": self.precision,
            "hardware": vars(self.hardware).copy(),
            "workload": {
                "isl": self.workload.isl,
                "osl": self.workload.osl,
                "concurrency": list(self.workload.concurrency),
                "dataset": self.workload.dataset,
                "range_ratio": self.workload.range_ratio,
            },
            "sla": vars(self.sla).copy(),
            "search_space": {
                "preset": self.search_space.preset,
                "overrides": dict(self.search_space.overrides),
            },
            "backend": {"name": self.backend.name, "options": dict(self.backend.options)},
            "study": vars(self.study).copy(),
            "output_dir": self.output_dir,
        }


# -- field readers -----------------------------------------------------------------------
def _section(data: Any, path: str, allowed: tuple[str, ...]) -> dict[str, Any]:
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise ConfigError(path or "spec", data, "must be a mapping")
    unknown = [k for k in data if k not in allowed]
    if unknown:
        raise ConfigError(
            f"{path}.{unknown[0]}" if path else str(unknown[0]),
            data[unknown[0]],
            f"unknown key; allowed: {', '.join(allowed)}",
        )
    return dict(data)


def _int(value: Any, path: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(path, value, f"must be an integer >= {minimum}")
    return value


def _float(value: Any, path: str, minimum: float = 0.0, *, strict: bool = False) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < minimum or (strict and value == minimum):
        op = ">" if strict else ">="
        raise ConfigError(path, value, f"must be a number {op} {minimum:g}")
    return float(value)


def _choice(value: Any, path: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ConfigError(path, value, f"allowed: {', '.join(choices)}")
    return str(value)


def _str(value: Any, path: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(path, value, "must be a non-empty string")
    return value


def _required(data: dict[str, Any], key: str, path: str) -> Any:
    if key not in data or data[key] is None:
        raise ConfigError(f"{path}.{key}" if path else key, None, "required")
    return data[key]


# -- sections -----------------------------------------------------------------------------
def _hardware(data: Any) -> HardwareSpec:
    d = _section(data, "hardware", ("gpu", "gpus", "gpus_per_node", "profile"))
    profile = d.get("profile")
    if profile is not None:
        # The profile file is read in build_problem (parsing does no I/O); there ``gpu``
        # selects one of its GPU types, which need not be in the catalog.
        profile = _str(profile, "hardware.profile")
        gpu = None if d.get("gpu") is None else _str(d["gpu"], "hardware.gpu")
    else:
        gpu = _str(_required(d, "gpu", "hardware"), "hardware.gpu")
        load_gpu(gpu)  # catalog lookup only: fails early with the list of known GPUs
    gpus = _int(_required(d, "gpus", "hardware"), "hardware.gpus")
    if gpus > MAX_GPUS:
        raise ConfigError("hardware.gpus", gpus, f"must be an integer in [1, {MAX_GPUS:,}]")
    per_node = _int(d.get("gpus_per_node", min(gpus, 8)), "hardware.gpus_per_node")
    if gpus > per_node and gpus % per_node:
        raise ConfigError(
            "hardware.gpus",
            gpus,
            f"must be a multiple of hardware.gpus_per_node ({per_node}) or at most one node's GPUs",
        )
    return HardwareSpec(gpu=gpu, gpus=gpus, gpus_per_node=per_node, profile=profile)


def _workload(data: Any) -> Workload:
    d = _section(data, "workload", ("isl", "osl", "concurrency", "dataset", "range_ratio"))
    ladder = d.get("concurrency", list(DEFAULT_LADDER))
    if not isinstance(ladder, list) or not ladder:
        raise ConfigError("workload.concurrency", ladder, "must be a non-empty list of positive integers")
    levels = [_int(c, "workload.concurrency") for c in ladder]
    if levels != sorted(set(levels)):
        raise ConfigError("workload.concurrency", ladder, "must be strictly increasing")
    ratio = _float(d.get("range_ratio", 0.0), "workload.range_ratio")
    if ratio >= 1.0:
        raise ConfigError("workload.range_ratio", ratio, "must be in [0, 1)")
    return Workload(
        isl=_int(_required(d, "isl", "workload"), "workload.isl"),
        osl=_int(_required(d, "osl", "workload"), "workload.osl"),
        concurrency=tuple(levels),
        dataset=_choice(d.get("dataset", "random"), "workload.dataset", ("random",)),
        range_ratio=ratio,
    )


def _sla(data: Any) -> SLA:
    d = _section(data, "sla", ("min_tok_s_user", "max_ttft_ms", "max_tpot_ms", "percentile", "confidence"))
    pct = d.get("percentile", 50)
    if pct not in (50, 90, 99):
        raise ConfigError("sla.percentile", pct, "allowed: 50, 90, 99")
    ttft, tpot = d.get("max_ttft_ms"), d.get("max_tpot_ms")
    return SLA(
        min_tok_s_user=_float(d.get("min_tok_s_user", 0.0), "sla.min_tok_s_user"),
        max_ttft_ms=None if ttft is None else _float(ttft, "sla.max_ttft_ms", strict=True),
        max_tpot_ms=None if tpot is None else _float(tpot, "sla.max_tpot_ms", strict=True),
        percentile=int(pct),
        confidence=None if d.get("confidence") is None else parse_confidence(d["confidence"]),
    )


def _search_space(data: Any) -> SearchSpaceSpec:
    d = _section(data, "search_space", ("preset", "overrides"))
    preset = d.get("preset")
    overrides = d.get("overrides") or {}
    if not isinstance(overrides, Mapping):
        raise ConfigError("search_space.overrides", overrides, "must be a mapping")
    return SearchSpaceSpec(
        preset=None if preset is None else _str(preset, "search_space.preset"), overrides=dict(overrides)
    )


def _backend(data: Any) -> BackendSpec:
    if isinstance(data, str):
        data = {"name": data}
    d = _section(data, "backend", ("name", "options"))
    options = d.get("options") or {}
    if not isinstance(options, Mapping):
        raise ConfigError("backend.options", options, "must be a mapping")
    return BackendSpec(name=_str(d.get("name", "simulator"), "backend.name"), options=dict(options))


def _study(data: Any) -> StudyOptions:
    d = _section(
        data,
        "study",
        ("name", "sampler", "trials", "seed", "objective", "storage", "guided", "explore_after"),
    )
    name, storage = d.get("name"), d.get("storage")
    guided = d.get("guided", True)
    if not isinstance(guided, bool):
        raise ConfigError("study.guided", guided, "allowed: true, false")
    return StudyOptions(
        name=None if name is None else _str(name, "study.name"),
        sampler=_choice(d.get("sampler", "tpe"), "study.sampler", SAMPLERS),
        trials=_int(d.get("trials", 100), "study.trials"),
        seed=_int(d.get("seed", 0), "study.seed", minimum=0),
        objective=_choice(d.get("objective", "sla"), "study.objective", OBJECTIVES),
        storage=None if storage is None else _str(storage, "study.storage"),
        guided=guided,
        explore_after=_int(d.get("explore_after", EXPLORE_AFTER), "study.explore_after", minimum=0),
    )


_TOP = ("model", "precision", "hardware", "workload", "sla", "search_space", "backend", "study", "output_dir")


def parse_spec(data: Any, *, default_output_dir: str = "runs/study") -> StudySpec:
    """Validate a spec mapping (the parsed YAML) into a :class:`StudySpec`."""
    d = _section(data, "", _TOP)
    model = _str(_required(d, "model", ""), "model")
    return StudySpec(
        model=model,
        precision=_choice(d.get("precision", "bf16"), "precision", PRECISIONS),
        hardware=_hardware(_required(d, "hardware", "")),
        workload=_workload(_required(d, "workload", "")),
        sla=_sla(d.get("sla")),
        search_space=_search_space(d.get("search_space")),
        backend=_backend(d.get("backend")),
        study=_study(d.get("study")),
        output_dir=_str(d.get("output_dir", default_output_dir), "output_dir"),
    )


def load_spec(path: str | Path) -> StudySpec:
    """Read and validate a spec file; the default run directory is ``runs/<file stem>``."""
    p = Path(path)
    data = read_yaml(p, "spec", "must be an existing YAML file")
    return parse_spec(data, default_output_dir=f"runs/{p.stem}")


def build_problem(spec: StudySpec) -> Problem:
    """Resolve the model and GPU of a spec into the problem every candidate shares."""
    hw = spec.hardware
    if hw.profile is not None:
        gpu = load_profile_gpu(hw.profile, hw.gpu)  # measured figures (tuner profile)
    else:
        assert hw.gpu is not None  # _hardware requires it without a profile
        gpu = load_gpu(hw.gpu)
    return Problem(
        arch=load_model(spec.model),
        gpu=gpu,
        precision=spec.precision,
        workload=spec.workload,
        gpus=hw.gpus,
        gpus_per_node=hw.gpus_per_node,
    )
