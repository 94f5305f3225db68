"""Storage URLs, storage errors (one line, exit 2), version checks and the claim table."""

from __future__ import annotations

import multiprocessing
import sqlite3
from pathlib import Path

import pytest
import sqlalchemy.exc

import tuner.storage
from tuner.cli import main
from tuner.errors import StorageError
from tuner.spec import load_spec
from tuner.storage import Claims, normalize_url, open_storage, storage_errors
from tuner.studies import VERSION_ATTR, open_study

from .conftest import PG_USER, TemporaryPostgres, _free_port, small_spec


def one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    return lines[0]


def test_postgres_urls_map_to_psycopg() -> None:
    assert normalize_url("postgresql://u@db/t") == "postgresql+psycopg://u@db/t"
    assert normalize_url("postgres://u@db/t") == "postgresql+psycopg://u@db/t"
    assert normalize_url("sqlite:///x.db") == "sqlite:///x.db"


def test_unwritable_sqlite_path_is_one_line_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    spec = small_spec(tmp_path)
    code = main(["tune", str(spec), "-q", "--storage", f"sqlite:///{blocker}/study.db"])
    assert code == 2
    assert "cannot open the database file" in one_error_line(capsys)


def test_full_disk_is_named() -> None:
    # A real "database or disk is full" from SQLite, capped at a few pages.
    conn = sqlite3.connect(":memory:")
    conn.execute("PRAGMA max_page_count=2")
    with pytest.raises(StorageError, match="disk full"), storage_errors("sqlite:///x.db"):
        try:
            conn.execute("CREATE TABLE t (x TEXT)")
            conn.executemany("INSERT INTO t VALUES (?)", [("x" * 4000,)] * 10)
        except sqlite3.OperationalError as exc:
            raise sqlalchemy.exc.OperationalError("INSERT", {}, exc) from exc
    conn.close()


def test_database_down_is_one_line_exit_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("psycopg")
    monkeypatch.setattr(tuner.storage, "RETRY_DELAYS_S", (0.05, 0.05))  # transient: retried, then given up
    url = f"postgresql://{PG_USER}:x@127.0.0.1:{_free_port()}/postgres"
    assert main(["status", "--storage", url, "--study", "s"]) == 2
    line = one_error_line(capsys)
    assert "connection refused" in line and ":x@" not in line  # the password is not printed


@pytest.mark.postgres
def test_wrong_password_is_one_line_exit_2(
    postgres_server: TemporaryPostgres, capsys: pytest.CaptureFixture[str]
) -> None:
    url = postgres_server.url(password="wrong")
    assert main(["worker", "--storage", url, "--study", "s"]) == 2
    assert "authentication failed" in one_error_line(capsys)


@pytest.mark.postgres
def test_worker_of_another_version_refuses_to_join(
    tmp_path: Path, pg_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = load_spec(small_spec(tmp_path, study={"storage": pg_url, "name": "v"}))
    study = open_study(spec)
    study.set_user_attr(VERSION_ATTR, "0.0.1")
    assert main(["worker", "--storage", pg_url, "--study", "v"]) == 2
    assert "created by tuner 0.0.1" in one_error_line(capsys)


def _race(
    url: str,
    study_id: int,
    trial_id: int,
    barrier: multiprocessing.synchronize.Barrier,
    out: multiprocessing.Queue,
) -> None:  # type: ignore[type-arg]
    storage = open_storage(url)
    claims = Claims(storage, study_id)  # type: ignore[arg-type]
    barrier.wait()
    out.put((trial_id, claims.claim("the-same-deployment", trial_id)))


def _claim_race(url: str, tmp_path: Path) -> None:
    spec = load_spec(small_spec(tmp_path, study={"storage": url, "name": "race"}))
    study = open_study(spec)
    storage = open_storage(url)
    study_id = storage.get_study_id_from_name("race")
    claims = Claims(storage, study_id)  # type: ignore[arg-type]  # the table exists before the race
    trial_ids = [claims.trial_id(study.ask().number) for _ in range(3)]
    ctx = multiprocessing.get_context("spawn")
    barrier, out = ctx.Barrier(len(trial_ids)), ctx.Queue()
    procs = [ctx.Process(target=_race, args=(url, study_id, t, barrier, out)) for t in trial_ids]
    for p in procs:
        p.start()
    results = [out.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=30)
    winners = [t for t, holder in results if holder is None]
    assert len(winners) == 1, results
    assert all(holder == winners[0] for t, holder in results if t != winners[0])
    out.close()
    out.join_thread()


def test_claim_race_sqlite_exactly_one_winner(tmp_path: Path) -> None:
    _claim_race(f"sqlite:///{tmp_path / 'study.db'}", tmp_path)


@pytest.mark.postgres
def test_claim_race_postgres_exactly_one_winner(tmp_path: Path, pg_url: str) -> None:
    _claim_race(pg_url, tmp_path)


def test_a_new_sqlite_study_starts_from_the_schema_template(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The empty schema is copied from a template in the user's cache (made by this Optuna
    # on first use); the file must hold exactly the schema Optuna creates in place, and a
    # cache that cannot be written leaves the schema to be created in place.
    import optuna

    def schema(db: Path) -> list[tuple[str, ...]]:
        with sqlite3.connect(db) as conn:
            rows = conn.execute("select type, name, tbl_name, sql from sqlite_master").fetchall()
            return sorted(rows) + conn.execute("select * from alembic_version").fetchall()

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    in_place = tmp_path / "in-place.db"
    optuna.storages.RDBStorage(f"sqlite:///{in_place}").engine.dispose()
    for name in ("first.db", "second.db"):  # the first run makes the template, the second copies it
        storage = open_storage(f"sqlite:///{tmp_path / name}")
        optuna.create_study(storage=storage, study_name="s").set_user_attr("k", 1)
        storage.engine.dispose()  # type: ignore[attr-defined]
        assert schema(tmp_path / name) == schema(in_place)
    assert list((tmp_path / "cache" / "llm-serving-tuner").glob("optuna-*-schema.db"))
    (tmp_path / "not-a-dir").write_text("")  # a cache under a file cannot be made
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "not-a-dir"))
    storage = open_storage(f"sqlite:///{tmp_path / 'third.db'}")
    assert optuna.create_study(storage=storage, study_name="s").user_attrs == {}
    assert schema(tmp_path / "third.db") == schema(in_place)
