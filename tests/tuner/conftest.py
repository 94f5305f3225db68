"""Fixtures for study and CLI tests: small real specs on the simulator, a failing backend."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

import backends.registry

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def small_spec(tmp_path: Path, **changes: Any) -> Path:
    """A fast spec (Llama-3.1-8B on 2 x H100, small space) written to tmp_path."""
    data: dict[str, Any] = {
        "model": "meta-llama/Llama-3.1-8B",
        "precision": "bf16",
        "hardware": {"gpu": "H100", "gpus": 2, "gpus_per_node": 2},
        "workload": {"isl": 1000, "osl": 200, "concurrency": [1, 4, 16, 64]},
        "sla": {"min_tok_s_user": 40},
        "search_space": {"preset": "small"},
        "study": {"sampler": "random", "trials": 12, "seed": 1},
        "output_dir": str(tmp_path / "run"),
    }
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture
def flaky_backend(monkeypatch: pytest.MonkeyPatch) -> str:
    """Registers ``flaky``: the simulator, failing every candidate whose agg TP is 1."""
    monkeypatch.setitem(backends.registry.BACKENDS, "flaky", "tests.tuner.flaky_backend:FlakyBackend")
    return "flaky"


# --- A real PostgreSQL server for the shared-study tests (marked ``postgres``) -------------

PG_USER, PG_PASSWORD = "tuner", "tuner-test-pw"


def _pg_bin() -> Path | None:
    """The newest PostgreSQL server binaries from the OS packages (scripts/install-postgres.sh)."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parts[-3]))
    return found[-1].parent if found else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class TemporaryPostgres:
    """A PostgreSQL server on 127.0.0.1, a free port and a temporary data directory, run as
    the ``postgres`` user when we are root (initdb refuses root). Password authentication
    over TCP, so a wrong password is a real error."""

    def __init__(self, bin_dir: Path) -> None:
        self.bin = bin_dir
        self.dir = Path(tempfile.mkdtemp(prefix="tuner-pg-"))
        self.port = _free_port()
        self._as = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []

    def _run(self, *cmd: str) -> None:
        subprocess.run([*self._as, *cmd], check=True, capture_output=True, timeout=60)

    def start(self) -> None:
        if self._as:
            shutil.chown(self.dir, "postgres")
        pwfile = self.dir / "pw"
        pwfile.write_text(PG_PASSWORD + "\n")
        if self._as:
            shutil.chown(pwfile, "postgres")
        data = str(self.dir / "data")
        self._run(
            str(self.bin / "initdb"),
            "-D",
            data,
            "-U",
            PG_USER,
            f"--pwfile={pwfile}",
            "-E",
            "UTF8",
            "--auth-host=scram-sha-256",
            "--auth-local=trust",
        )
        self.start_server()

    def start_server(self) -> None:
        """Start the server on its data directory (again, after :meth:`stop_server`)."""
        # fsync off: a test server's data is thrown away; durability is the study's concern
        # (commits still happen), not the disk's.
        options = (
            f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200"
        )
        data = str(self.dir / "data")
        self._run(
            str(self.bin / "pg_ctl"), "-D", data, "-o", options, "-l", str(self.dir / "log"), "-w", "start"
        )

    def stop_server(self) -> None:
        """Stop the server as an operator's restart does (``-m fast``: every session is
        terminated, in-flight transactions roll back), keeping its data."""
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.dir / "data"), "-m", "fast", "-w", "stop")

    def stop(self) -> None:
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            self._run(str(self.bin / "pg_ctl"), "-D", str(self.dir / "data"), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.dir, ignore_errors=True)

    def url(self, database: str = "postgres", *, password: str = PG_PASSWORD) -> str:
        return f"postgresql://{PG_USER}:{password}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)


@contextlib.contextmanager
def running_postgres() -> Iterator[TemporaryPostgres]:
    """A started PostgreSQL server, stopped on exit; skips (with the reason) where none can start."""
    pytest.importorskip("psycopg", reason="psycopg is not installed (pip install '.[postgres]')")
    bin_dir = _pg_bin()
    if bin_dir is None:
        pytest.skip(
            "no PostgreSQL server binaries under /usr/lib/postgresql (run scripts/install-postgres.sh)"
        )
    server = TemporaryPostgres(bin_dir)
    try:
        server.start()
    except (subprocess.SubprocessError, OSError) as exc:
        server.stop()
        pytest.skip(f"PostgreSQL could not start: {exc}")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[TemporaryPostgres]:
    """A PostgreSQL server for the session."""
    with running_postgres() as server:
        yield server


@pytest.fixture
def pg_url(postgres_server: TemporaryPostgres) -> str:
    """A fresh database of the session's server, for one test."""
    return postgres_server.create_database(f"t_{uuid.uuid4().hex[:12]}")


@pytest.fixture
def slow_backend(monkeypatch: pytest.MonkeyPatch) -> str:
    """Registers ``slow``: the simulator, sleeping per load point (a live backend's pace)."""
    monkeypatch.setitem(backends.registry.BACKENDS, "slow", "tests.tuner.flaky_backend:SlowBackend")
    return "slow"
