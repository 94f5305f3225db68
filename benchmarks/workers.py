"""Trials per second of a shared PostgreSQL study for 1, 2 and 4 workers (simulator backend),
and the storage overhead per trial against an in-memory study and SQLite.

    python benchmarks/workers.py [--storage postgresql://user:pw@host/db] [--trials 120]

Without --storage it starts a temporary PostgreSQL server (as the tests do). Rates are
measured from the trials' own start/complete times, so the ~1 s start-up of each worker
process is not counted. On a 2-core machine 4 workers oversubscribe the CPUs: the simulator
and the sampler, not the storage, bound the rate there.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import optuna
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import backends  # noqa: E402
from tests.tuner.conftest import TemporaryPostgres, _pg_bin, small_spec  # noqa: E402
from tuner.spec import build_problem, load_spec  # noqa: E402
from tuner.studies import BUDGET_ATTR, open_study  # noqa: E402
from tuner.studies import space_of as _space  # noqa: E402
from tuner.study import run_trials  # noqa: E402

SPACE = {
    "hardware": {"gpu": "H100", "gpus": 8, "gpus_per_node": 8},
    "search_space": {"preset": "dense-single-node"},
}


def _rate(study: optuna.Study) -> tuple[int, float]:
    done = [t for t in study.get_trials(deepcopy=False) if t.state.is_finished() and t.datetime_complete]
    start = min(t.datetime_start for t in done if t.datetime_start)
    end = max(t.datetime_complete for t in done if t.datetime_complete)
    return len(done), len(done) / max((end - start).total_seconds(), 1e-9)


def shared_run(url: str, workers: int, trials: int, tmp: Path) -> tuple[int, float]:
    name = f"bench{workers}"
    spec = load_spec(
        small_spec(
            tmp / name, **SPACE, study={"sampler": "random", "trials": trials, "storage": url, "name": name}
        )
    )
    open_study(spec).set_user_attr(BUDGET_ATTR, trials)
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tuner.cli",
                "worker",
                "--storage",
                url,
                "--study",
                name,
                "--seed",
                str(i),
                "-q",
            ],
            cwd=ROOT,
        )
        for i in range(workers)
    ]
    for p in procs:
        p.wait()
    return _rate(optuna.load_study(study_name=name, storage=tuner_storage(url)))


def tuner_storage(url: str) -> optuna.storages.BaseStorage:
    from tuner.storage import open_storage

    return open_storage(url)


def in_memory(trials: int, tmp: Path) -> tuple[int, float]:
    spec = load_spec(small_spec(tmp / "mem", **SPACE, study={"sampler": "random", "trials": trials}))
    study = optuna.create_study(directions=["maximize"], sampler=optuna.samplers.RandomSampler(seed=0))
    t0 = time.perf_counter()
    run_trials(
        study,
        space=_space(spec),
        backend=backends.create("simulator"),
        problem=build_problem(spec),
        sla=spec.sla,
        objective="sla",
        n_trials=trials,
    )
    return trials, trials / (time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--storage", help="an empty PostgreSQL database (default: start a temporary server)")
    parser.add_argument("--trials", type=int, default=120)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-workers-"))
    server = None
    if args.storage is None:
        bin_dir = _pg_bin()
        if bin_dir is None:
            sys.exit("no PostgreSQL binaries: run scripts/install-postgres.sh or pass --storage")
        server = TemporaryPostgres(bin_dir)
        server.start()
    try:
        rows = []
        _, mem = in_memory(args.trials, tmp)
        rows.append(("in-memory (no storage)", 1, mem))
        _, lite = shared_run(f"sqlite:///{tmp / 'bench.db'}", 1, args.trials, tmp)
        rows.append(("SQLite, direct writes", 1, lite))
        for n in (1, 2, 4):
            url = server.create_database(f"b_{uuid.uuid4().hex[:8]}") if server else args.storage
            _, rate = shared_run(url, n, args.trials, tmp)
            rows.append(("PostgreSQL", n, rate))
    finally:
        if server is not None:
            server.stop()
    table = Table(title=f"{args.trials} simulator trials per run (dense-single-node, 8 x H100)")
    for col in ("storage", "workers", "trials/s", "ms/trial", "storage ms/trial"):
        table.add_column(col, justify="right")
    for label, n, rate in rows:
        overhead = 1000 / rate - 1000 / mem if n == 1 else float("nan")
        table.add_row(
            label,
            str(n),
            f"{rate:.1f}",
            f"{1000 / rate:.1f}",
            "-" if overhead != overhead else f"{overhead:.1f}",
        )
    Console().print(table)


if __name__ == "__main__":
    main()
