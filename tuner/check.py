"""``tuner check``: re-measure a pick and say whether it still holds (a CI gate).

A pick (``pick.yaml``) records a deployment, the operating point it was chosen at and the
SLA. The check measures the same deployment again at that point's concurrency only, with a
backend chosen by name (by default the pick's own), and holds when

- every SLA constraint is still met by the new measurement, and
- tok/s/GPU is not below the recorded value times ``1 - tolerance``.

Reading and validating the pick is :func:`load_request` (names the field on bad input, no
measuring); measuring and judging is :func:`run_check`; :func:`junit_xml` and
:func:`summary` turn a :class:`CheckResult` into a JUnit XML report and a JSON summary.
"""

from __future__ import annotations

import dataclasses
import math
import time
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import backends
import search_spaces
from serving import CandidateFailed, Deployment, LoadPoint, Problem

from .errors import ConfigError
from .sla import SLA
from .spec import StudySpec, build_problem, parse_spec, read_yaml

__all__ = [
    "DEFAULT_TOLERANCE",
    "CheckItem",
    "CheckRequest",
    "CheckResult",
    "junit_xml",
    "load_request",
    "parse_tolerance",
    "request_from_document",
    "run_check",
    "summary",
]

#: Default allowed drop of tok/s/GPU: live measurements of one deployment vary by a few
#: percent run to run (see ``tuner.pick.TIE_TOLERANCE``), so 5% flags real regressions only.
DEFAULT_TOLERANCE = "5%"

#: LoadPoint fields a pick's operating point must carry (those without a default).
_REQUIRED_POINT = tuple(f.name for f in fields(LoadPoint) if f.default is dataclasses.MISSING)


@dataclass(frozen=True)
class CheckRequest:
    """A validated pick and how to check it."""

    source: str
    deployment: Deployment
    expected: LoadPoint
    sla: SLA
    spec: StudySpec
    backend: str
    backend_options: Mapping[str, Any] = field(default_factory=dict)
    tolerance: float = 0.05

    @property
    def label(self) -> str:
        return self.deployment.label()

    @property
    def min_tok_s_gpu(self) -> float:
        """The lowest tok/s/GPU that still passes."""
        return self.expected.tok_s_gpu * (1.0 - self.tolerance)

    def problem(self) -> Problem:
        """The study's problem with the workload reduced to the operating point's concurrency."""
        problem = build_problem(self.spec)
        workload = problem.workload.with_load_keys((self.expected.load_key,))
        return dataclasses.replace(problem, workload=workload)


@dataclass(frozen=True)
class CheckItem:
    """One judged condition: an SLA constraint, the throughput floor, or the measurement."""

    name: str
    expected: str
    measured: float | None
    passed: bool
    message: str


@dataclass(frozen=True)
class CheckResult:
    """What was measured and how every condition came out."""

    request: CheckRequest
    measured: LoadPoint | None
    items: tuple[CheckItem, ...]
    elapsed_s: float
    backend_info: Mapping[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return all(item.passed for item in self.items)

    @property
    def verdict(self) -> str:
        return "pass" if self.passed else "fail"

    @property
    def reasons(self) -> list[str]:
        return [item.message for item in self.items if not item.passed]


# -- reading ----------------------------------------------------------------------------
def parse_tolerance(text: str | float) -> float:
    """``"5%"`` or ``"0.05"`` -> 0.05; must be in [0, 1) (a drop of 100% always passes)."""
    raw = str(text).strip()
    scale = 100.0 if raw.endswith("%") else 1.0
    try:
        value = float(raw.removesuffix("%")) / scale
    except ValueError:
        value = math.nan
    if not 0.0 <= value < 1.0:  # also false for nan
        allowed = "must be a percentage in [0%, 100%) like 5%, or a fraction in [0, 1) like 0.05"
        raise ConfigError("--tolerance", text, allowed)
    return value


def _mapping(data: Any, name: str) -> dict[str, Any]:
    if not isinstance(data, Mapping):
        raise ConfigError(name, data, "required: a mapping")
    return dict(data)


def _operating_point(data: Any) -> LoadPoint:
    d = _mapping(data, "operating_point")
    for name in _REQUIRED_POINT:
        value = d.get(name)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ConfigError(f"operating_point.{name}", value, "required: a finite number")
    if d["concurrency"] < 1 or d["concurrency"] != int(d["concurrency"]):
        raise ConfigError("operating_point.concurrency", d["concurrency"], "must be an integer >= 1")
    if not d["tok_s_gpu"] > 0:
        raise ConfigError("operating_point.tok_s_gpu", d["tok_s_gpu"], "must be > 0")
    try:
        return LoadPoint.from_dict(d)
    except (TypeError, ValueError) as exc:
        raise ConfigError("operating_point", d, f"must be a load point ({exc})") from None


def _deployment(data: Any) -> Deployment:
    d = _mapping(data, "deployment")
    label, gpus = d.pop("label", None), d.pop("gpus", None)
    try:
        dep = Deployment.from_dict(d)
    except ConfigError as exc:
        name = exc.field.removeprefix("deployment.")
        raise ConfigError(f"deployment.{name}", exc.value, exc.allowed) from None
    except (TypeError, ValueError) as exc:
        raise ConfigError("deployment", d, f"must describe a deployment ({exc})") from None
    if gpus is not None and gpus != dep.gpus():
        raise ConfigError("deployment.gpus", gpus, f"must equal the GPUs of the worker groups ({dep.gpus()})")
    if label is not None and label != dep.label():
        raise ConfigError("deployment.label", label, f"must match the worker groups ({dep.label()})")
    return dep


def _spec_and_sla(spec_data: Any, sla_data: Any) -> tuple[StudySpec, SLA]:
    """The study spec (errors named ``spec.*``) and the pick's SLA (``sla.*``), which may
    differ from the spec's when the run was re-picked with ``tuner pick``."""
    raw = _mapping(spec_data, "spec")
    try:
        spec = parse_spec(raw)
    except ConfigError as exc:
        raise ConfigError(f"spec.{exc.field}", exc.value, exc.allowed) from None
    sla = parse_spec({**raw, "sla": _mapping(sla_data, "sla")}).sla
    return spec, sla


def _fits(deployment: Deployment, spec: StudySpec) -> None:
    """Refuse a deployment the spec's hardware cannot hold (more GPUs than the fleet, a
    worker that cannot be placed on its nodes): measuring it would measure something the
    study could never have picked. Memory fit is left to the backend, whose refusal is a
    failed check (exit 1): knobs edited into a pick may stop fitting."""
    reason = search_spaces.infeasible_reason(deployment, build_problem(spec))
    if reason is not None and not reason.startswith("memory:"):
        hw = spec.hardware
        allowed = f"must fit the spec's hardware ({hw.gpus} x {hw.gpu or hw.profile}): {reason}"
        raise ConfigError("deployment", deployment.label(), allowed)


def _backend(doc: dict[str, Any], spec: StudySpec, override: str | None) -> tuple[str, dict[str, Any]]:
    recorded = doc.get("backend")
    name: Any = override
    if name is None:
        name = recorded.get("name") if isinstance(recorded, Mapping) else spec.backend.name
        where = "backend.name"
    else:
        where = "--backend"
    if name not in backends.available():
        raise ConfigError(where, name, f"allowed: {', '.join(backends.available())}")
    # The spec's options (e.g. a simulator constants file) belong to the spec's backend only.
    options = dict(spec.backend.options) if name == spec.backend.name else {}
    return str(name), options


def request_from_document(
    doc: Any, *, source: str = "pick.yaml", backend: str | None = None, tolerance: float = 0.05
) -> CheckRequest:
    """Validate a parsed pick document. Raises :class:`ConfigError` naming the field."""
    d = _mapping(doc, "pick")
    if d.get("kind", "TunerPick") != "TunerPick":
        raise ConfigError("kind", d.get("kind"), "must be TunerPick (a pick.yaml written by tuner tune/pick)")
    for key in ("deployment", "operating_point", "sla", "spec"):
        if d.get(key) is None:
            raise ConfigError(key, None, "required")
    deployment = _deployment(d["deployment"])
    expected = _operating_point(d["operating_point"])
    if expected.gpus != deployment.gpus():
        allowed = f"must equal the deployment's GPUs ({deployment.gpus()})"
        raise ConfigError("operating_point.gpus", expected.gpus, allowed)
    spec, sla = _spec_and_sla(d["spec"], d["sla"])
    _fits(deployment, spec)
    name, options = _backend(d, spec, backend)
    return CheckRequest(
        source=source,
        deployment=deployment,
        expected=expected,
        sla=sla,
        spec=spec,
        backend=name,
        backend_options=options,
        tolerance=tolerance,
    )


def load_request(path: str | Path, *, backend: str | None = None, tolerance: float = 0.05) -> CheckRequest:
    """Read ``pick.yaml`` (or a run directory holding one) into a :class:`CheckRequest`."""
    p = Path(path)
    if p.is_dir() and (p / "pick.yaml").is_file():
        p = p / "pick.yaml"
    doc = read_yaml(p, "pick", "must be an existing pick.yaml (or a run directory holding one)")
    return request_from_document(doc, source=str(p), backend=backend, tolerance=tolerance)


# -- measuring and judging -----------------------------------------------------------------
def _sla_items(sla: SLA, point: LoadPoint) -> list[CheckItem]:
    """One item per constraint the SLA sets; pass/fail comes from :meth:`SLA.check`."""
    violated = sla.check(point)
    pct = sla.percentile
    ttft, tpot = point.metric("ttft_ms", pct), point.metric("tpot_ms", pct)
    wanted: list[tuple[str, str, float, str]] = []
    if sla.min_tok_s_user:
        wanted.append(("min_tok_s_user", f">= {sla.min_tok_s_user:g}", point.tok_s_user, "tok/s/user"))
    if sla.max_ttft_ms is not None:
        wanted.append(("max_ttft_ms", f"<= {sla.max_ttft_ms:g}", ttft, f"TTFT p{pct} ms"))
    if sla.max_tpot_ms is not None:
        wanted.append(("max_tpot_ms", f"<= {sla.max_tpot_ms:g}", tpot, f"TPOT p{pct} ms"))
    items = []
    for name, expected, measured, what in wanted:
        ok = name not in violated
        verdict = "met" if ok else "violated"
        message = f"SLA {name} {verdict}: {what} measured {measured:,.2f}, expected {expected}"
        items.append(CheckItem(f"sla.{name}", expected, measured, ok, message))
    return items


def _throughput_item(request: CheckRequest, point: LoadPoint) -> CheckItem:
    floor = request.min_tok_s_gpu
    recorded = request.expected.tok_s_gpu
    ok = point.tok_s_gpu >= floor
    change = point.tok_s_gpu / recorded - 1.0
    message = (
        f"tok_s_gpu {'held' if ok else 'fell'}: measured {point.tok_s_gpu:,.1f} "
        f"({change:+.1%}) vs recorded {recorded:,.1f}, minimum {floor:,.1f} "
        f"(tolerance {request.tolerance:.1%})"
    )
    return CheckItem("throughput.tok_s_gpu", f">= {floor:.1f}", point.tok_s_gpu, ok, message)


def run_check(request: CheckRequest, backend: backends.Backend | None = None) -> CheckResult:
    """Measure the pick's deployment at its concurrency and judge it.

    ``backend`` defaults to ``backends.create(request.backend, request.backend_options)``.
    A deployment the backend refuses or that fails while measured is a failed check (one
    ``measure`` item with the reason), not an error.
    """
    backend = backend or backends.create(request.backend, dict(request.backend_options))
    problem = request.problem()
    started = time.perf_counter()
    measured: LoadPoint | None = None
    reason = backend.check(request.deployment, problem)
    if reason is None:
        try:
            points = backend.measure(request.deployment, problem)
            measured = next((p for p in points if p.load_key == request.expected.load_key), None)
            if measured is None:
                reason = f"backend returned no point at concurrency {request.expected.concurrency}"
        except CandidateFailed as exc:
            reason = exc.reason
    elapsed = time.perf_counter() - started
    if measured is None:
        item = CheckItem(
            "measure",
            "a load point",
            None,
            False,
            f"{request.label} could not be measured on {backend.name}: {reason}",
        )
        return CheckResult(request, None, (item,), elapsed, backend.describe())
    items = (*_sla_items(request.sla, measured), _throughput_item(request, measured))
    return CheckResult(request, measured, items, elapsed, backend.describe())


# -- reports -----------------------------------------------------------------------------
def _number(value: Any) -> Any:
    """JSON has no NaN: unmeasured metrics become null."""
    if isinstance(value, float):
        return None if math.isnan(value) else round(value, 4)
    return value


def _point(point: LoadPoint | None) -> dict[str, Any] | None:
    return None if point is None else {k: _number(v) for k, v in point.to_dict().items()}


def summary(result: CheckResult) -> dict[str, Any]:
    """The JSON summary: what was expected, what was measured, the verdict and why."""
    req = result.request
    return {
        "kind": "TunerCheck",
        "version": 1,
        "pick": req.source,
        "verdict": result.verdict,
        "reasons": result.reasons,
        "tolerance": req.tolerance,
        "backend": {"name": req.backend, **dict(result.backend_info)},
        "deployment": {"label": req.label, "gpus": req.deployment.gpus(), **req.deployment.to_dict()},
        "expected": {
            "sla": {k: v for k, v in dataclasses.asdict(req.sla).items() if v is not None},
            "min_tok_s_gpu": round(req.min_tok_s_gpu, 4),
            "operating_point": _point(req.expected),
        },
        "measured": _point(result.measured),
        "checks": [
            {
                "name": i.name,
                "expected": i.expected,
                "measured": _number(i.measured),
                "passed": i.passed,
                "message": i.message,
            }
            for i in result.items
        ],
        "elapsed_s": round(result.elapsed_s, 6),
    }


#: JUnit ``failure`` types by check family (the part of the item name before the dot).
_FAILURE_TYPES = {"sla": "SLAViolation", "throughput": "ThroughputRegression", "measure": "MeasurementFailed"}


def junit_xml(result: CheckResult) -> str:
    """A JUnit XML report: one ``testsuite``, one ``testcase`` per check item; a failed item
    carries a ``failure`` element whose message says expected vs measured."""
    req = result.request
    failures = sum(not i.passed for i in result.items)
    counts = {
        "tests": str(len(result.items)),
        "failures": str(failures),
        "errors": "0",
        "skipped": "0",
        "time": f"{result.elapsed_s:.6f}",
    }
    root = ET.Element("testsuites", {"name": "tuner check", **counts})
    suite_name = f"tuner check {req.label} @ concurrency {req.expected.concurrency}"
    suite = ET.SubElement(
        root, "testsuite", {"name": suite_name, **counts, "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S")}
    )
    props = ET.SubElement(suite, "properties")
    for name, value in (
        ("pick", req.source),
        ("backend", req.backend),
        ("deployment", req.label),
        ("gpus", req.deployment.gpus()),
        ("concurrency", req.expected.concurrency),
        ("tolerance", req.tolerance),
    ):
        ET.SubElement(props, "property", {"name": name, "value": str(value)})
    classname = f"tuner.check.{req.label}"
    for item in result.items:
        case = ET.SubElement(suite, "testcase", {"classname": classname, "name": item.name, "time": "0"})
        if not item.passed:
            attrs = {"message": item.message, "type": _FAILURE_TYPES[item.name.partition(".")[0]]}
            failure = ET.SubElement(case, "failure", attrs)
            failure.text = f"expected {item.expected}, measured {_number(item.measured)}\n{item.message}"
        else:
            ET.SubElement(case, "system-out").text = item.message
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"
