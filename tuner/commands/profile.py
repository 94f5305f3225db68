"""``tuner profile``: measure this node's GPUs into a hardware profile, or compare one.

On a GPU machine it writes ``--out`` (default ``profiles/<host>.yaml``), which ``tuner tune
--hardware-profile`` prices deployments with. Without a GPU it runs the same kernels on the
CPU at small sizes, to check an install, and writes nothing unless ``--write-cpu-profile``
asks for a ``device: cpu`` profile (which the simulator refuses as a GPU).
"""

from __future__ import annotations

import argparse
import socket
from typing import Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from serving import ConfigError

from ._common import err, non_negative_float, out

__all__ = ["register"]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "profile",
        help="measure this machine's GPUs (or compare a profile with datasheets)",
        description="Measure HBM, GEMMs (bf16, fp8), attention, MoE GEMMs and NCCL collectives "
        "with torch into a hardware profile for `tuner tune --hardware-profile`.",
    )
    p.add_argument("--out", metavar="PATH", help="profile YAML to write (GPU default: profiles/<host>.yaml)")
    p.add_argument(
        "--budget-s",
        type=non_negative_float,
        default=120.0,
        metavar="S",
        help="time budget in seconds; scales shapes, sizes and repeats (default 120)",
    )
    p.add_argument("--device", choices=("cuda", "cpu"), help="default: cuda when torch sees a GPU, else cpu")
    p.add_argument(
        "--write-cpu-profile",
        action="store_true",
        help="with --device cpu: write a `device: cpu` profile (an install check, never a GPU)",
    )
    p.add_argument(
        "--compare", metavar="PATH", help="print a profile's measured vs datasheet figures; no run"
    )
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.compare:
        return _compare(args.compare)
    from ..profiling import make_plan, run_profile, write_profile
    from ..profiling.device import cpu_type, cuda_types
    from ..profiling.measure import require_torch

    torch = require_torch()
    has_cuda = bool(torch.cuda.is_available())
    device = args.device or ("cuda" if has_cuda else "cpu")
    if device == "cuda" and not has_cuda:
        raise ConfigError(
            "--device",
            "cuda",
            f"no CUDA GPU is visible to torch {torch.__version__}; use --device cpu to check the install",
        )
    if args.budget_s <= 0:
        raise ConfigError("--budget-s", args.budget_s, "must be > 0 seconds")
    if device == "cpu":
        if args.out and not args.write_cpu_profile:
            raise ConfigError(
                "--out",
                args.out,
                "refusing to write a GPU profile from CPU figures; "
                "run on the GPU machine, or add --write-cpu-profile for a `device: cpu` profile",
            )
        err.print(
            "no GPU in use: profiling the CPU with small sizes to check the install; "
            "these figures are not a GPU profile",
            markup=False,
            highlight=False,
        )
    devices = cuda_types() if device == "cuda" else [cpu_type()]
    plan = make_plan(args.budget_s, device, memory_bytes=min(d.memory_gb for d in devices) * 1e9)
    with _progress(quiet=args.quiet) as report:
        doc = run_profile(plan, devices, progress=report)
    out.print(_measured_table(doc))
    for note in doc["notes"]:
        err.print(f"note: {note}", markup=False, highlight=False)
    path = args.out if device == "cpu" else (args.out or f"profiles/{socket.gethostname()}.yaml")
    if path:
        written = write_profile(doc, path)
        out.print(f"wrote {written} ({doc['elapsed_s']:.0f} s); compare: tuner profile --compare {written}")
    else:
        out.print(f"profiled in {doc['elapsed_s']:.1f} s (budget {plan.budget_s:g} s); nothing written")
    return 0


class _progress:
    """A rich progress bar fed by the runner's ``progress(section, done, planned)`` calls."""

    def __init__(self, *, quiet: bool) -> None:
        self._bar = Progress(
            TextColumn("{task.description:<12}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=err,
            disable=quiet,
            transient=False,
        )
        self._tasks: dict[str, Any] = {}

    def __enter__(self) -> Any:
        self._bar.__enter__()
        return self.update

    def __exit__(self, *exc: object) -> None:
        self._bar.__exit__(None, None, None)

    def update(self, section: str, done: int, planned: int) -> None:
        task = self._tasks.get(section)
        if task is None:
            task = self._tasks[section] = self._bar.add_task(section, total=planned)
        self._bar.update(task, completed=done)


def _measured_table(doc: dict[str, Any]) -> Table:
    table = Table(
        title=f"measured on {doc['host']} ({doc['device']}, {doc['elapsed_s']} s)", title_justify="left"
    )
    table.add_column("figure")
    for entry in doc["gpus"]:
        table.add_column(f"{entry['name']} x{entry['count']}", justify="right")
    for key in doc["gpus"][0]["measured"]:
        values = [e["measured"].get(key) for e in doc["gpus"]]
        table.add_row(key, *("-" if v is None else f"{v:,.4g}" for v in values))
    for key in (
        "power_limit_w",
        "sm_clock_max_mhz",
        "driver",
        "power_load_w_bf16",
        "sm_clock_load_mhz_bf16",
        "throttle_load_bf16",
    ):
        values = [(e.get("environment") or {}).get(key) for e in doc["gpus"]]
        if any(v is not None for v in values):
            table.add_row(key, *("-" if v is None else str(v) for v in values))
    return table


def _compare(path: str) -> int:
    from serving.hardware_profile import load_profile

    from ..profiling.compare import compare_table

    profile = load_profile(path)
    if profile["device"] != "cuda":
        err.print(
            f"{path} is a device: {profile['device']} profile: no datasheet to compare with",
            markup=False,
            highlight=False,
        )
    for table in compare_table(profile):
        out.print(table)
    return 0
