"""Optuna storage for a study: URLs, connection errors, and the claims on deployments.

URLs: ``sqlite:///PATH`` (the run directory's default), ``postgresql://...`` (mapped to
SQLAlchemy's ``postgresql+psycopg://`` driver, the ``postgres`` extra), any other SQLAlchemy
URL Optuna's RDB storage accepts, and ``grpc://HOST:PORT`` for Optuna's gRPC storage proxy
(one proxy in front of the database serves many workers with few database connections).

A SQLite study gets WAL journaling with ``synchronous=NORMAL``: every commit survives a
killed process (what resume needs) without an fsync per write, which halves the cost of a
trial. Backends that price a candidate in microseconds (the simulator) run a single process
against an in-memory twin of the study (:class:`tuner.write_behind.WriteBehind`). A study
shared by several workers never uses it: its trials go straight to the database.

Every storage failure becomes a :class:`StorageError` (one line, exit 2) in one place,
:func:`storage_errors`; transient ones (server starting, refused or dropped connection) are
retried with exponential backoff while the storage is opened, and during a run by
:class:`tuner.outages.StorageOutage`. Heartbeats of running trials: :mod:`tuner.heartbeats`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import BaseStorage, RDBStorage

from .errors import StorageError

__all__ = [
    "GRACE_FACTOR",
    "HEARTBEAT_S",
    "classify",
    "normalize_url",
    "open_storage",
    "redact",
    "storage_errors",
    "storage_exceptions",
]

log = logging.getLogger(__name__)

#: Default heartbeat interval of a running trial (:mod:`tuner.heartbeats`). A dead worker's
#: trial is failed (and retried once) after GRACE_FACTOR intervals without a beat; 3
#: tolerates two lost beats (a GC pause, a slow commit) before a live trial is declared dead.
HEARTBEAT_S = 20
GRACE_FACTOR = 3
#: Backoff before each retry of a transient error while opening: 0.25 + 0.5 + 1 + 2 s;
#: long enough for a database restart's start-up, short enough to report a real outage.
RETRY_DELAYS_S = (0.25, 0.5, 1.0, 2.0)

#: Driver error text -> (transient?, what to tell the user). First match wins.
_KNOWN_ERRORS: tuple[tuple[str, bool, str], ...] = (
    ("password authentication failed", False, "authentication failed (wrong user or password)"),
    ("no password supplied", False, "authentication failed (no password given)"),
    ("does not exist", False, "the database does not exist (create it first)"),
    ("the database system is starting up", True, "the database server is starting up"),
    ("the database system is shutting down", True, "the database server is shutting down"),
    ("too many clients", True, "the database server has too many connections"),
    ("connection refused", True, "connection refused (is the database server running?)"),
    ("server closed the connection", True, "the server closed the connection"),
    ("terminating connection due to administrator command", True, "the database server is restarting"),
    ("connection is lost", True, "the connection to the database server was lost"),
    ("connection is closed", True, "the connection to the database server was closed"),
    ("could not receive data from server", True, "the connection to the database server was lost"),
    ("ssl syscall error", True, "the connection to the database server was lost"),
    ("no connection to the server", True, "the connection to the database server was lost"),
    # A session whose connection died mid-transaction; the failed call rolled it back.
    (
        "can't reconnect until invalid transaction is rolled back",
        True,
        "the connection was lost mid-transaction",
    ),
    ("could not translate host name", False, "unknown host"),
    ("timeout expired", True, "connection timed out"),
    ("database or disk is full", False, "disk full"),
    ("disk i/o error", False, "disk I/O error"),
    (
        "unable to open database file",
        False,
        "cannot open the database file (missing or unwritable directory)",
    ),
    ("attempt to write a readonly database", False, "the database file is read-only"),
    ("database is locked", True, "the database is locked by another process"),
)


def normalize_url(url: str) -> str:
    """``postgresql://`` and ``postgres://`` -> ``postgresql+psycopg://`` (psycopg 3)."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def redact(url: str) -> str:
    """The URL without its password, for messages."""
    if url.startswith(("grpc://", "sqlite:")):
        return url
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # an unparsable URL has no password we could find either
        return url.split("@")[-1]


def classify(exc: BaseException) -> tuple[bool, str]:
    """(transient?, what to tell the user) for a storage error: the driver's own error,
    found under Optuna's ``StorageInternalError`` and SQLAlchemy's wrapper."""
    if isinstance(exc, optuna.exceptions.StorageInternalError) and exc.__cause__ is not None:
        exc = exc.__cause__
    root = getattr(exc, "orig", None) or exc
    text = str(root).lower()
    for needle, transient, message in _KNOWN_ERRORS:
        if needle in text:
            return transient, message
    first = str(root).strip().splitlines()
    return False, f"{type(exc).__name__}: {first[0] if first else 'unknown error'}"


def storage_exceptions() -> tuple[type[BaseException], ...]:
    """What a storage call raises when the database fails (driver, SQLAlchemy, Optuna)."""
    from sqlalchemy.exc import (
        ArgumentError,
        DBAPIError,
        NoSuchModuleError,
        OperationalError,
        PendingRollbackError,
    )

    return (
        OperationalError,
        DBAPIError,
        PendingRollbackError,
        ArgumentError,
        NoSuchModuleError,
        sqlite3.Error,
        optuna.exceptions.StorageInternalError,
    )


@contextmanager
def storage_errors(url: str) -> Iterator[None]:
    """Turn driver errors raised inside into one :class:`StorageError` line naming ``url``."""
    try:
        yield
    except storage_exceptions() as exc:
        _, message = classify(exc)
        raise StorageError(f"storage {redact(url)}: {message}") from exc
    except ImportError as exc:
        missing = exc.name or getattr(exc.__cause__, "name", None)  # Optuna re-raises without a name
        if missing in ("psycopg", "psycopg2"):
            raise StorageError(
                f"storage {redact(url)}: PostgreSQL needs psycopg: pip install 'llm-serving-tuner[postgres]'"
            ) from exc
        if "DB access module" not in str(exc):  # Optuna's words for a missing SQLAlchemy driver
            raise
        raise StorageError(
            f"storage {redact(url)}: the database driver is not installed ({missing or exc}); "
            "allowed: sqlite:///PATH, postgresql://... (the postgres extra), grpc://HOST:PORT, "
            "or another SQLAlchemy URL whose driver is installed"
        ) from exc
    except OSError as exc:
        raise StorageError(f"storage {redact(url)}: {exc.strerror or exc}") from exc


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def open_storage(url: str) -> BaseStorage:
    """The storage for ``url``, connected (transient errors retried with backoff)."""
    url = normalize_url(url)
    with storage_errors(url):
        if url.startswith("grpc://"):
            host, _, port = url[len("grpc://") :].partition(":")
            return _retrying(
                url, lambda: optuna.storages.GrpcStorageProxy(host=host, port=int(port or 13000))
            )
        return _retrying(url, lambda: _rdb(url))


def _rdb(url: str) -> RDBStorage:
    fresh = False
    if url.startswith("sqlite:"):
        # Several local workers on one SQLite file wait for the write lock instead of failing.
        engine_kwargs: dict[str, Any] = {"connect_args": {"timeout": 60}}
        fresh = _from_template(url)
    else:
        # pre_ping: a pooled connection dropped by a database restart is replaced, not raised.
        engine_kwargs = {"pool_pre_ping": True, "pool_size": 2, "connect_args": {"connect_timeout": 5}}
    # A file just copied from this Optuna's own empty schema needs neither its tables
    # created nor its version checked (Optuna's public flags for that).
    storage = RDBStorage(
        url, engine_kwargs=engine_kwargs, skip_table_creation=fresh, skip_compatibility_check=fresh
    )
    if url.startswith("sqlite:"):
        from sqlalchemy import event

        event.listen(storage.engine, "connect", _sqlite_pragmas)
        storage.engine.dispose()  # reconnect so the pragmas apply to every pooled connection
    # Close the pooled connections when the storage goes, not when the interpreter does.
    weakref.finalize(storage, storage.engine.dispose)
    return storage


def _from_template(url: str) -> bool:
    """Create the SQLite file of ``url``, when it does not exist yet, as a copy of an empty
    Optuna schema kept in the user's cache; True when it did.

    Creating Optuna's schema (its tables, then Alembic's version check) is half of opening
    a new run directory's storage, about 0.4 s of an instant run. The template is only the
    empty schema, never a result: it is made by this Optuna on first use (then exactly as
    without a template), named by the Optuna and SQLAlchemy versions that made it, written
    whole before it is used (a rename), and any failure to read or write it falls back to
    creating the schema in place."""
    import shutil

    import sqlalchemy

    path = url[len("sqlite:///") :]
    if not url.startswith("sqlite:///") or path.startswith("file:") or "?" in path or os.path.exists(path):
        return False
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "llm-serving-tuner"
    template = cache / f"optuna-{optuna.__version__}-sqlalchemy-{sqlalchemy.__version__}-schema.db"
    fallible: tuple[type[BaseException], ...] = (OSError, *storage_exceptions())
    try:
        if not template.is_file():
            cache.mkdir(parents=True, exist_ok=True)
            partial = cache / f".{template.name}.{os.getpid()}"
            partial.unlink(missing_ok=True)
            RDBStorage(f"sqlite:///{partial}").engine.dispose()
            os.replace(partial, template)
        shutil.copyfile(template, path)
    except fallible:
        log.debug("no schema template; creating the schema in %s", path, exc_info=True)
        with contextlib.suppress(OSError):
            if os.path.getsize(path) == 0:
                os.unlink(path)
        return False
    return True


def _retrying(url: str, connect: Any) -> Any:
    for attempt, delay in enumerate((*RETRY_DELAYS_S, None)):
        try:
            return connect()
        except storage_exceptions() as exc:
            transient, message = classify(exc)
            if not transient or delay is None:
                raise
            log.warning("storage %s: %s; retry %d in %.2f s", redact(url), message, attempt + 1, delay)
            time.sleep(delay)
    raise AssertionError("unreachable")


class Claims:
    """At most one trial measures a deployment: a row per deployment key, written before
    measuring, in a table of the study's own database (``tuner_claims``).

    The insert is the claim: the primary key (study, key) lets exactly one concurrent
    writer succeed, on SQLite and PostgreSQL alike. A loser reads the holder: a running
    or complete holder keeps the deployment (the caller waits or answers a duplicate); a
    failed holder (a crashed candidate, a dead worker) is taken over with a compare-and-set
    update, so exactly one retry measures it again.
    """

    def __init__(self, storage: RDBStorage, study_id: int) -> None:
        from sqlalchemy import Column, Integer, MetaData, String, Table

        self._storage = storage
        self._study_id = study_id
        self._table = Table(
            "tuner_claims",
            MetaData(),
            Column("study_id", Integer, primary_key=True),
            Column("key", String(64), primary_key=True),
            Column("trial_id", Integer, nullable=False),
        )
        self._create()

    def _create(self) -> None:
        from sqlalchemy.exc import IntegrityError, ProgrammingError

        # IntegrityError/ProgrammingError: created by a concurrent worker meanwhile.
        with contextlib.suppress(IntegrityError, ProgrammingError):
            self._table.create(self._storage.engine, checkfirst=True)

    @staticmethod
    def digest(key: str) -> str:
        import hashlib

        return hashlib.sha256(key.encode()).hexdigest()

    def trial_id(self, number: int) -> int:
        """The storage's id of the study's trial ``number`` (Optuna's public storage API; a
        trial's own id attribute is private)."""
        return self._storage.get_trial_id_from_study_id_trial_number(self._study_id, number)

    def claim(self, key: str, trial_id: int) -> int | None:
        """Claim ``key`` for ``trial_id``: None when it now holds it, else the holder's id."""
        from sqlalchemy import insert, select, update
        from sqlalchemy.exc import IntegrityError

        t, digest = self._table, self.digest(key)
        where = (t.c.study_id == self._study_id) & (t.c.key == digest)
        holder: int | None = None
        for _ in range(10):  # each round loses only to a concurrent claim that won
            try:
                with self._storage.engine.begin() as conn:
                    conn.execute(insert(t).values(study_id=self._study_id, key=digest, trial_id=trial_id))
                return None
            except IntegrityError:
                pass
            with self._storage.engine.begin() as conn:
                holder = conn.execute(select(t.c.trial_id).where(where)).scalar_one_or_none()
            if holder == trial_id:  # our insert committed, its answer was lost (a retry)
                return None
            if holder is None:
                continue
            if self._storage.get_trial(holder).state != optuna.trial.TrialState.FAIL:
                return holder
            with self._storage.engine.begin() as conn:
                taken = conn.execute(
                    update(t).where(where & (t.c.trial_id == holder)).values(trial_id=trial_id)
                )
            if taken.rowcount == 1:
                return None
        return holder

    def holder(self, trial_id: int) -> optuna.trial.FrozenTrial:
        """The holding trial as stored now (its state, values and attributes)."""
        return self._storage.get_trial(trial_id)
