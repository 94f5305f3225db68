"""Exports: the picked deployment as ready-to-apply artifacts, one folder per format.

Every format renders the same :class:`serving.launch.LaunchPlan`, so the scripts, the
manifests and the live backend agree on flags, GPUs and placement.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path, PurePosixPath

from serving import ConfigError, Deployment, Problem
from serving.launch import plan_launch

from .base import ExportContext, Exporter, exporter_names, get_exporter

__all__ = ["ExportContext", "Exporter", "exporter_names", "get_exporter", "render_exports", "write_exports"]


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
    plan = plan_launch(
        deployment,
        problem,
        model=ctx.model,
        served_model_name=ctx.served_model_name,
        base_port=ctx.base_port,
    )
    return {fmt: get_exporter(fmt).render(plan, ctx) for fmt in formats}


def write_exports(
    deployment: Deployment,
    problem: Problem,
    out_dir: str | Path,
    formats: Sequence[str] = ("vllm", "kubernetes"),
    context: ExportContext | None = None,
) -> list[Path]:
    """Render each format into ``out_dir/<format>/`` and return the written paths (sorted
    within a format). Shell scripts are made executable."""
    rendered = render_exports(deployment, problem, formats, context)
    written: list[Path] = []
    for fmt, files in rendered.items():
        for rel in sorted(files):
            pure = PurePosixPath(rel)
            if pure.is_absolute() or ".." in pure.parts:
                raise ConfigError(f"{fmt} export path", rel, "must be relative, inside the format folder")
            path = Path(out_dir, fmt, *pure.parts)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(files[rel])
            if path.suffix == ".sh":
                path.chmod(0o755)
            written.append(path)
    return written
