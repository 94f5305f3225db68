"""``tuner k8s-workers``: render the Kubernetes Job that runs N workers on one shared study."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import ConfigError
from ..export.worker_job import WorkerJob, render_worker_job
from ._common import int_in, out

__all__ = ["register"]


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg,unused-ignore]
    p = sub.add_parser(
        "k8s-workers",
        help="render a Kubernetes Job of N tuning workers (and PostgreSQL) for a shared study",
        description="Print (or write) manifests: a PostgreSQL StatefulSet + Service and a Job whose pods "
        "run `tuner worker` on the study. The study must exist: start it once with "
        "`tuner tune SPEC --storage URL --study NAME` (that stores the spec and the trial budget); "
        "the Job's workers then join it and finish the budget.",
    )
    p.add_argument("--study", required=True, help="study name in the shared storage")
    p.add_argument("--workers", type=int_in(1), default=4, help="worker pods (default 4)")
    p.add_argument("--gpus-per-worker", type=int_in(1), default=8, help="GPUs per worker pod (default 8)")
    p.add_argument("--image", default=WorkerJob.image, help="container image with the tuner installed")
    p.add_argument("--namespace", default="default")
    p.add_argument(
        "--storage-secret",
        default=WorkerJob.storage_secret,
        help="Secret holding the storage URL under key 'url'",
    )
    p.add_argument("--no-postgres", action="store_true", help="use an existing database instead")
    p.add_argument("--gpu-product", help="node selector value for nvidia.com/gpu.product")
    p.add_argument("--out", help="write to this file instead of stdout")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    job = WorkerJob(
        study=args.study,
        workers=args.workers,
        gpus_per_worker=args.gpus_per_worker,
        image=args.image,
        namespace=args.namespace,
        storage_secret=args.storage_secret,
        postgres=not args.no_postgres,
        gpu_product=args.gpu_product,
    )
    text = render_worker_job(job)
    if args.out:
        try:
            Path(args.out).write_text(text)
        except OSError as exc:
            raise ConfigError("--out", args.out, f"must be a writable file path ({exc.strerror})") from None
        out.print(f"wrote {args.out}", markup=False, highlight=False)
    else:
        print(text, end="")
    return 0
