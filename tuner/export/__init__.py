"""Exports: the picked deployment as ready-to-apply artifacts, one folder per format.

Every format renders the same :class:`serving.launch.LaunchPlan`, so the scripts, the
manifests and the live backend agree on flags, GPUs and placement.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

from serving import ConfigError, Deployment, Problem
from serving.launch import plan_launch

from .base import ExportContext, Exporter, Planner, exporter_names, get_exporter

__all__ = [
    "ExportContext",
    "Exporter",
    "Planner",
    "exporter_names",
    "get_exporter",
    "render_exports",
    "write_exports",
]


def render_exports(
    deployment: Deployment,
    problem: Problem,
    formats: Sequence[str] = ("vllm", "kubernetes"),
    context: ExportContext | None = None,
) -> dict[str, dict[str, str]]:
    """Format -> (relative path -> content), without touching the disk."""
    ctx = context or ExportContext(deployment=deployment, problem=problem)
    if ctx.deployment != deployment or ctx.problem != problem:
        raise ConfigError("context", ctx.app, "must describe the deployment and problem being exported")
    planner = ctx.planner or plan_launch
    plan = planner(
        deployment,
        problem,
        model=ctx.model,
        served_model_name=ctx.served_model_name,
        base_port=ctx.base_port,
        node_hosts=ctx.node_hosts,
    )
    return {fmt: get_exporter(fmt).render(plan, ctx) for fmt in formats}


def write_exports(
    deployment: Deployment,
    problem: Problem,
    out_dir: str | Path,
    formats: Sequence[str] = ("vllm", "kubernetes"),
    context: ExportContext | None = None,
    *,
    replace_all: bool = False,
) -> list[Path]:
    """Render each format into ``out_dir/<format>/`` and return the written paths (sorted
    within a format). Shell scripts are made executable.

    Nothing stale survives: each format folder is written whole beside ``out_dir`` and then
    renamed into place, replacing the folder of an earlier export (a re-pick from 40 GPUs to
    two nodes leaves no ``node-9.sh``). ``replace_all`` replaces ``out_dir`` itself, so formats
    of an earlier pick that were not exported again go too (a new pick). A failed render or
    write leaves the previous export as it was.
    """
    rendered = render_exports(deployment, problem, formats, context)
    out = Path(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}-new-", dir=out.parent))
    staging.chmod(0o755)  # mkdtemp's 0700 would become the export folder's mode
    try:
        for fmt, files in rendered.items():
            for rel in sorted(files):
                _write_one(staging / fmt, fmt, rel, files[rel])
        if replace_all:
            _swap(staging, out)
        else:
            out.mkdir(exist_ok=True)
            for fmt in rendered:
                _swap(staging / fmt, out / fmt)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return [out / fmt / rel for fmt, files in rendered.items() for rel in sorted(files)]


def _write_one(folder: Path, fmt: str, rel: str, text: str) -> None:
    pure = PurePosixPath(rel)
    if pure.is_absolute() or ".." in pure.parts:
        raise ConfigError(f"{fmt} export path", rel, "must be relative, inside the format folder")
    path = Path(folder, *pure.parts)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    if path.suffix == ".sh":
        path.chmod(0o755)


def _swap(new: Path, target: Path) -> None:
    """Put folder ``new`` at ``target`` by renames (same file system), removing the old one."""
    if target.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{target.name}-old-", dir=target.parent))
        old.rmdir()
        target.rename(old)
        new.rename(target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        new.rename(target)
