"""The study spec: one YAML file parsed and validated once, into frozen dataclasses.

Every error names the field (``workload.isl``), the value received and what is allowed.
Unknown keys are errors. Parsing does no I/O beyond reading the file and a workload's
dataset file (``workload.file``, whose rows give the mean lengths); resolving the model and
GPU (which may read a ``config.json``) happens in :func:`build_problem`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from serving import Problem, Workload, load_gpu, load_model
from serving.dataset import Request, read_dataset
from serving.hardware_profile import load_profile_gpu
from serving.inputs import read_yaml
from serving.lengths import DISTRIBUTIONS, LengthDist
from serving.precision import PRECISIONS
from serving.workload import ARRIVALS

from .confidence import parse_confidence
from .errors import ConfigError
from .explore import EXPLORE_AFTER
from .objectives import OBJECTIVES as _OBJECTIVES
from .sla import SLA

__all__ = [
    "OBJECTIVES",
    "SAMPLERS",
    "BackendSpec",
    "HardwareSpec",
    "PlanSpec",
    "SearchSpaceSpec",
    "StudyOptions",
    "StudySpec",
    "build_problem",
    "load_spec",
    "parse_spec",
    "plan_headroom",
    "plan_rate",
    "price_per_gpu_hour",
    "read_yaml",
]

SAMPLERS = ("tpe", "nsga2", "gp", "random", "grid")
OBJECTIVES = tuple(_OBJECTIVES)
DEFAULT_LADDER = (1, 2, 4, 8, 16, 32, 64, 128, 256)
#: The largest fleet a spec may describe: above the biggest clusters announced (xAI's
#: Colossus, ~200k GPUs). Far larger counts only break the arithmetic (a billion agg workers
#: at concurrency 1 leave each rank 1e-9 users, and the simulator's square roots go negative).
MAX_GPUS = 1_000_000
#: The longest request length a distribution may reach: above every model's context window
#: in the catalog (10M tokens, Llama 4 Scout), so that only the model's own limit binds.
MAX_LENGTH = 10_000_000


@dataclass(frozen=True)
class HardwareSpec:
    """The GPUs of the study. ``gpu`` names a catalog GPU; with ``profile`` (a ``tuner
    profile`` YAML) the GPU comes from that measured profile instead, and ``gpu``, when
    given, chooses among the profile's GPU types."""

    gpu: str | None
    gpus: int
    gpus_per_node: int
    profile: str | None = None
    #: The rental price of one GPU for one hour; None: the catalog default
    #: (serving/data/gpu_prices.yaml). Gives $/Mtok per point and the cost of a plan.
    usd_per_gpu_hour: float | None = None


#: Default spare capacity of a plan: 20% above the rate (a common provisioning margin for
#: traffic peaks and a replica lost to maintenance; set 0 for the bare count).
DEFAULT_HEADROOM = 0.2
#: The largest headroom a plan accepts: 10 = eleven times the rate. A larger value is most
#: likely a percentage typed as a number (``headroom: 20`` meaning 20%).
MAX_HEADROOM = 10.0
#: The highest request rate a plan accepts: ten million requests/s, far above the largest
#: public LLM services (OpenAI reported ~2.5 billion prompts a day in 2025, ~30k/s).
MAX_RATE_RPS = 10_000_000.0


@dataclass(frozen=True)
class PlanSpec:
    """Capacity plan of a run (``tuner plan``): replicas serving ``rate_rps`` requests/s
    within the SLA with ``headroom`` spare capacity (0.2 = 20% above the rate); ``export``
    also writes the planned replicas' deployment artifacts (``deploy-plan/``)."""

    rate_rps: float
    headroom: float = DEFAULT_HEADROOM
    export: bool = False


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
    plan: PlanSpec | None = None

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
            "workload": self.workload.to_dict(),
            "sla": vars(self.sla).copy(),
            "search_space": {
                "preset": self.search_space.preset,
                "overrides": dict(self.search_space.overrides),
            },
            "backend": {"name": self.backend.name, "options": dict(self.backend.options)},
            "study": vars(self.study).copy(),
            "output_dir": self.output_dir,
            "plan": None if self.plan is None else vars(self.plan).copy(),
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
    d = _section(data, "hardware", ("gpu", "gpus", "gpus_per_node", "profile", "usd_per_gpu_hour"))
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
    price = d.get("usd_per_gpu_hour")
    return HardwareSpec(
        gpu=gpu,
        gpus=gpus,
        gpus_per_node=per_node,
        profile=profile,
        usd_per_gpu_hour=None if price is None else price_per_gpu_hour(price, "hardware.usd_per_gpu_hour"),
    )


_WORKLOAD_KEYS = (
    "isl",
    "osl",
    "concurrency",
    "dataset",
    "range_ratio",
    "lengths",
    "file",
    "arrivals",
    "request_rates",
    "burstiness",
    "shared_prefix",
)


def _workload(data: Any) -> Workload:
    d = _section(data, "workload", _WORKLOAD_KEYS)
    ladder = d.get("concurrency", list(DEFAULT_LADDER))
    if not isinstance(ladder, list) or not ladder:
        raise ConfigError("workload.concurrency", ladder, "must be a non-empty list of positive integers")
    levels = [_int(c, "workload.concurrency") for c in ladder]
    if levels != sorted(set(levels)):
        raise ConfigError("workload.concurrency", ladder, "must be strictly increasing")
    ratio = _float(d.get("range_ratio", 0.0), "workload.range_ratio")
    if ratio >= 1.0:
        raise ConfigError("workload.range_ratio", ratio, "must be in [0, 1)")
    file = None if d.get("file") is None else _str(d["file"], "workload.file")
    lengths = _section(d.get("lengths"), "workload.lengths", ("input", "output"))
    requests: tuple[Request, ...] = ()
    if file is not None:
        for key in ("isl", "osl", "lengths"):
            if d.get(key) is not None:
                raise ConfigError(f"workload.{key}", d[key], "give either workload.file or lengths, not both")
        requests = read_dataset(file)  # the one read of the parse: the mean lengths come from it
    if ratio and lengths:
        raise ConfigError(
            "workload.range_ratio", ratio, "give either workload.range_ratio or workload.lengths"
        )
    dists = {side: _length_dist(lengths[side], f"workload.lengths.{side}") for side in lengths}
    for side, key in (("input", "isl"), ("output", "osl")):
        if side in dists and d.get(key) is not None:
            raise ConfigError(
                f"workload.{key}", d[key], f"give either workload.{key} or workload.lengths.{side}"
            )
    if requests:
        isl = round(sum(r.input_tokens for r in requests) / len(requests))
        osl = round(sum(r.output_tokens for r in requests) / len(requests))
    else:
        isl = _mean_len(dists.get("input")) or _int(_required(d, "isl", "workload"), "workload.isl")
        osl = _mean_len(dists.get("output")) or _int(_required(d, "osl", "workload"), "workload.osl")
    arrivals, rates = _arrivals(d, requests)
    return Workload(
        isl=isl,
        osl=osl,
        concurrency=tuple(levels),
        dataset=_choice(d.get("dataset", "random"), "workload.dataset", ("random",)),
        range_ratio=ratio,
        input_lengths=dists.get("input"),
        output_lengths=dists.get("output"),
        file=file,
        requests=requests,
        arrivals=arrivals,
        request_rates=rates,
        burstiness=_float(d.get("burstiness", 1.0), "workload.burstiness", strict=True),
        shared_prefix=_fraction(d.get("shared_prefix", 0.0), "workload.shared_prefix"),
    )


def _mean_len(dist: LengthDist | None) -> int:
    return 0 if dist is None else max(1, round(dist.mean_tokens))


def _fraction(value: Any, path: str) -> float:
    out = _float(value, path)
    if out >= 1.0:
        raise ConfigError(path, value, "must be in [0, 1)")
    return out


def _length_dist(data: Any, path: str) -> LengthDist:
    """One side's ``{distribution, mean, std, min, max}`` (see serving/lengths.py)."""
    if not isinstance(data, Mapping):
        raise ConfigError(path, data, "must be a mapping with distribution: " + ", ".join(DISTRIBUTIONS))
    kind = _choice(data.get("distribution"), f"{path}.distribution", DISTRIBUTIONS)
    keys = {
        "fixed": ("distribution", "mean"),
        "uniform": ("distribution", "min", "max"),
        "normal": ("distribution", "mean", "std", "min", "max"),
        "lognormal": ("distribution", "mean", "std", "min", "max"),
    }[kind]
    d = _section(data, path, keys)
    if kind == "fixed":
        return LengthDist.fixed(_int(_required(d, "mean", path), f"{path}.mean"))
    if kind == "uniform":
        low = _int(_required(d, "min", path), f"{path}.min")
        high = _int(_required(d, "max", path), f"{path}.max", minimum=low)
        return LengthDist("uniform", (low + high) / 2.0, 0.0, low, high)
    mean = _float(_required(d, "mean", path), f"{path}.mean", minimum=1.0)
    std = _float(_required(d, "std", path), f"{path}.std")
    low = _int(d.get("min", 1), f"{path}.min")
    high = _int(d.get("max", max(low, math.ceil(mean + 4.0 * std))), f"{path}.max", minimum=low)
    if high > MAX_LENGTH:
        raise ConfigError(f"{path}.max", high, f"must be at most {MAX_LENGTH:,} tokens")
    return LengthDist(kind, mean, std, low, high)


def _arrivals(d: dict[str, Any], requests: tuple[Request, ...]) -> tuple[str, tuple[float, ...]]:
    """(arrival process, request-rate ladder) of the workload section."""
    given = d.get("request_rates")
    rates: tuple[float, ...] = ()
    if given is not None:
        if not isinstance(given, list) or not given:
            raise ConfigError("workload.request_rates", given, "must be a non-empty list of req/s > 0")
        rates = tuple(_float(r, "workload.request_rates", strict=True) for r in given)
        if list(rates) != sorted(set(rates)):
            raise ConfigError("workload.request_rates", given, "must be strictly increasing")
    arrivals = _choice(d.get("arrivals", "poisson" if rates else "closed"), "workload.arrivals", ARRIVALS)
    if arrivals == "poisson" and not rates:
        raise ConfigError("workload.request_rates", None, "required with workload.arrivals: poisson")
    if arrivals == "closed" and rates:
        raise ConfigError(
            "workload.arrivals", "closed", "must be poisson or trace with workload.request_rates"
        )
    if arrivals == "trace":
        if not requests or requests[0].arrival_s is None:
            raise ConfigError("workload.arrivals", "trace", "needs a workload.file with an arrival_s column")
        span = (requests[-1].arrival_s or 0.0) - requests[0].arrival_s
        if len(requests) < 2 or span <= 0:
            raise ConfigError("workload.file", "trace", "needs at least two distinct arrival_s times")
    return arrivals, rates


def _sla(data: Any) -> SLA:
    d = _section(
        data,
        "sla",
        (
            "min_tok_s_user",
            "max_ttft_ms",
            "max_tpot_ms",
            "percentile",
            "max_e2e_ms",
            "min_goodput",
            "confidence",
        ),
    )
    pct = d.get("percentile", 50)
    if pct not in (50, 90, 99):
        raise ConfigError("sla.percentile", pct, "allowed: 50, 90, 99")
    ttft, tpot, e2e = d.get("max_ttft_ms"), d.get("max_tpot_ms"), d.get("max_e2e_ms")
    good = d.get("min_goodput")
    if good is not None:
        good = _float(good, "sla.min_goodput", strict=True)
        if good > 1.0:
            raise ConfigError("sla.min_goodput", good, "must be a share in (0, 1], e.g. 0.99")
        if ttft is None and tpot is None and e2e is None:
            raise ConfigError(
                "sla.min_goodput", good, "needs a latency limit: sla.max_ttft_ms, max_tpot_ms or max_e2e_ms"
            )
    return SLA(
        min_tok_s_user=_float(d.get("min_tok_s_user", 0.0), "sla.min_tok_s_user"),
        max_ttft_ms=None if ttft is None else _float(ttft, "sla.max_ttft_ms", strict=True),
        max_tpot_ms=None if tpot is None else _float(tpot, "sla.max_tpot_ms", strict=True),
        percentile=int(pct),
        max_e2e_ms=None if e2e is None else _float(e2e, "sla.max_e2e_ms", strict=True),
        min_goodput=good,
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


def plan_rate(value: Any, path: str) -> float:
    """A plan's request rate: requests/s in (0, MAX_RATE_RPS]."""
    rate = _float(value, path, strict=True)
    if rate > MAX_RATE_RPS:
        raise ConfigError(path, value, f"must be a number of requests/s in (0, {MAX_RATE_RPS:,.0f}]")
    return rate


def price_per_gpu_hour(value: Any, path: str) -> float:
    """A price of one GPU-hour: USD > 0."""
    return _float(value, path, strict=True)


def plan_headroom(value: Any, path: str) -> float:
    """A plan's headroom: a fraction in [0, MAX_HEADROOM] (0.2 = 20% spare capacity)."""
    headroom = _float(value, path)
    if headroom > MAX_HEADROOM:
        raise ConfigError(path, value, f"must be a fraction in [0, {MAX_HEADROOM:g}] (0.2 = 20% spare)")
    return headroom


def _plan(data: Any) -> PlanSpec | None:
    if data is None:
        return None
    d = _section(data, "plan", ("rate_rps", "headroom", "export"))
    export = d.get("export", False)
    if not isinstance(export, bool):
        raise ConfigError("plan.export", export, "allowed: true, false")
    return PlanSpec(
        rate_rps=plan_rate(_required(d, "rate_rps", "plan"), "plan.rate_rps"),
        headroom=plan_headroom(d.get("headroom", DEFAULT_HEADROOM), "plan.headroom"),
        export=export,
    )


_TOP = (
    "model",
    "precision",
    "hardware",
    "workload",
    "sla",
    "search_space",
    "backend",
    "study",
    "output_dir",
    "plan",
)


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
        plan=_plan(d.get("plan")),
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
    arch = load_model(spec.model)
    _check_context(spec.workload, arch.max_position, spec.model)
    return Problem(
        arch=arch,
        gpu=gpu,
        precision=spec.precision,
        workload=spec.workload,
        gpus=hw.gpus,
        gpus_per_node=hw.gpus_per_node,
    )


def _check_context(workload: Workload, limit: int, model: str) -> None:
    """A request longer than the model's context window fits no deployment: one line at the
    edge (naming the field that sets it) instead of every candidate failing."""
    longest = workload.longest
    if longest <= limit:
        return
    field = "workload.isl"
    if workload.file:
        field = "workload.file"
    elif workload.input_lengths or workload.output_lengths:
        field = "workload.lengths"
    raise ConfigError(
        field,
        longest,
        f"the longest request (input + output tokens) must fit {model}'s context of {limit:,} tokens",
    )
