"""Database URLs and engines, and database errors as messages a user can act on.

SQLite (a file, by default ``runs.db``) and PostgreSQL (``postgresql://USER@HOST/DB``, the psycopg 3
driver) are both first-class: every session has a bounded lock wait (the busy timeout,
``KNI_DB_TIMEOUT``), a read-only store's engine cannot write, and errors are translated by kind
(locked, full, unreachable, not a run database...) with ``transient`` set where the same write
may succeed later. docs/storage.md tells the rules from a user's side.
"""

from __future__ import annotations

import math
import os
import sqlite3
from pathlib import Path
from typing import Any
from urllib.parse import quote

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.pool import StaticPool

from .errors import StoreError, env_seconds

#: Default busy timeout in seconds (env ``KNI_DB_TIMEOUT``).
BUSY_TIMEOUT = 15.0
DEFAULT_DB = "runs.db"
#: What installs the PostgreSQL driver.
POSTGRES_EXTRA = 'pip install "kni-workbench[postgres]"'


def resolve_url(db: str | os.PathLike | None) -> str:
    """A SQLAlchemy URL for ``db``: a URL as it is, a bare path as a SQLite file."""
    if db is None or str(db) == "":
        db = os.environ.get("KNI_DB") or DEFAULT_DB
    db = str(db)
    if "://" in db:
        scheme, rest = db.split("://", 1)
        if scheme in ("postgresql", "postgres"):   # SQLAlchemy's default is psycopg2; ours is psycopg 3
            return "postgresql+psycopg://" + rest
        return db
    return "sqlite:///" + str(Path(db).expanduser().absolute())


def sqlite_path(url: str) -> Path | None:
    """The file of a SQLite URL (None for other databases and in-memory SQLite)."""
    u = make_url(url)
    if u.get_backend_name() != "sqlite":
        return None
    if not u.database or u.database == ":memory:" or u.database.startswith("file::memory:"):
        return None
    return Path(u.database)


#: SQLSTATEs (PostgreSQL) after which the same write may succeed later, by what they mean.
_PG_LOCKED = ("55P03", "40P01", "40001")       # lock timeout, deadlock, serialization failure
_PG_LOST = ("57P01", "57P02", "57P03")          # the server shut down or is starting
_PG_FULL = ("53100",)                           # disk full
_PG_OVERLOADED = ("53200", "53300")             # out of memory, too many connections


def _explain_postgres(state: str | None, msg: str, where: str) -> StoreError | None:
    """A user-facing message for a PostgreSQL error (by SQLSTATE); None if it says nothing special."""
    first = " ".join(msg.split())              # libpq's messages span lines
    if state in _PG_LOCKED:
        return StoreError(f"{where}: the database is locked by another session (waited up to "
                          f"{busy_timeout():g} s; raise it with KNI_DB_TIMEOUT): {first}; nothing was changed",
                          transient=True)
    if state in _PG_FULL:
        return StoreError(f"{where}: the disk is full ({first}); nothing was changed", transient=True)
    if state in _PG_OVERLOADED:
        return StoreError(f"{where}: the database server cannot take this now ({first}); nothing was changed",
                          transient=True)
    low = msg.lower()
    if state is None and "connection" in low:   # failed to connect: libpq gives no SQLSTATE
        if 'database "' in low and "does not exist" in low:
            state = "3D000"
        elif "password authentication failed" in low or "pg_hba.conf" in low or \
                ('role "' in low and "does not exist" in low):
            state = "28000"
    if (state or "").startswith("08") or state in _PG_LOST or (state is None and "connection" in low):
        return StoreError(f"{where}: cannot reach the database server ({first}); nothing was changed",
                          transient=True)
    if state == "25006":
        return StoreError(f"{where}: opened read-only; nothing was changed")
    if state == "3D000":
        return StoreError(f"{where}: no such database on the server ({first}); create it first "
                          f"(createdb NAME, or CREATE DATABASE NAME)")
    if state in ("28000", "28P01"):
        return StoreError(f"{where}: the server refused the login ({first})")
    if state == "42501":
        return StoreError(f"{where}: cannot open the database for writing: {first}")
    return None


def explain(error: BaseException, where: str) -> StoreError:
    """A user-facing message for a database error."""
    orig = getattr(error, "orig", None) or error
    msg = str(orig).strip()
    low = msg.lower()
    if type(orig).__module__.split(".")[0] == "psycopg":
        pg = _explain_postgres(getattr(orig, "sqlstate", None), msg, where)
        if pg is not None:
            return pg
    if "locked" in low or "busy" in low:
        return StoreError(f"{where}: the database is locked by another process (waited "
                          f"{busy_timeout():g} s; raise it with KNI_DB_TIMEOUT); nothing was changed",
                          transient=True)
    if "disk is full" in low or "no space left" in low or "disk full" in low:
        return StoreError(f"{where}: the disk is full ({msg}); nothing was changed", transient=True)
    if "attempt to write a readonly database" in low:
        # the store was opened to write: the file (or its folder, where SQLite keeps the
        # journal and the WAL index) refuses it, not the command
        return StoreError(f"{where}: cannot open the database for writing: the file or its folder is not "
                          f"writable ({msg}); nothing was changed")
    if "not a database" in low or "file is encrypted" in low:
        return StoreError(f"{where}: not a SQLite database (give --db a runs.db file or a SQLAlchemy URL)")
    if "unable to open" in low or "readonly" in low or "read-only" in low or "permission" in low:
        return StoreError(f"{where}: cannot open the database for writing: {msg}")
    if "malformed" in low or "corrupt" in low:
        return StoreError(f"{where}: the database file is damaged: {msg}")
    return StoreError(f"{where}: {msg}")


def busy_timeout() -> float:
    """Seconds a session waits for a lock (env ``KNI_DB_TIMEOUT``)."""
    return env_seconds("KNI_DB_TIMEOUT", BUSY_TIMEOUT)


def make_engine(url: str, *, immediate: bool, timeout: float, readonly: bool = False) -> Engine:
    """An engine; on SQLite every connection has a busy timeout and foreign keys on, and
    transactions are begun explicitly (``BEGIN IMMEDIATE`` on the writer engine, so a writer
    waits for the lock up front instead of failing on a read-to-write upgrade). Nothing here
    writes to the file: WAL mode is switched on by :meth:`Store._check_and_upgrade`, once the
    file is known to be a run database. On PostgreSQL see :func:`_postgres_connect_args`."""
    u = make_url(url)
    sqlite = u.get_backend_name() == "sqlite"
    kwargs: dict[str, Any] = {}
    if sqlite:
        kwargs["connect_args"] = {"timeout": timeout}
        if sqlite_path(url) is None:         # in-memory: one connection shared by all sessions
            kwargs["connect_args"]["check_same_thread"] = False
            kwargs["poolclass"] = StaticPool
    elif u.get_backend_name() == "postgresql":
        kwargs["connect_args"] = _postgres_connect_args(u, timeout, readonly)
        kwargs["pool_pre_ping"] = True        # a server restart costs a reconnect, not an error
    engine = create_engine(url, **kwargs)
    if sqlite:
        _sqlite_session_setup(engine, timeout, immediate)
    return engine


def _postgres_connect_args(u: Any, timeout: float, readonly: bool) -> dict[str, Any]:
    """libpq settings of every session: lock waits bounded as SQLite's busy timeout bounds them
    (``lock_timeout``; readers never wait for writers, MVCC), a bounded connect, a read-only
    store's sessions read-only; a setting given in the URL wins."""
    def given(name: str) -> str | None:
        value = u.query.get(name)
        return value[-1] if isinstance(value, tuple) else value

    options = [o for o in [given("options")] if o]
    options.append(f"-c lock_timeout={max(1, int(timeout * 1000))}")
    if readonly:
        options.append("-c default_transaction_read_only=on")
    args: dict[str, Any] = {"options": " ".join(options)}
    if given("connect_timeout") is None:
        args["connect_timeout"] = max(2, math.ceil(timeout))
    if given("application_name") is None:
        args["application_name"] = "kni-workbench"
    return args


def _sqlite_session_setup(engine: Engine, timeout: float, immediate: bool) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, record: Any) -> None:
        dbapi_conn.isolation_level = None       # we emit BEGIN ourselves (below)
        cur = dbapi_conn.cursor()
        try:
            cur.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
            cur.execute("PRAGMA foreign_keys = ON")
            cur.execute("PRAGMA synchronous = NORMAL")
        finally:
            cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


#: SQLite's errors of a ``mode=ro`` open that only a read without the WAL index can avoid: the
#: folder refuses the ``-shm`` file (a non-root user gets the READONLY ones, not CANTOPEN).
SNAPSHOT_ERRORS = ("SQLITE_CANTOPEN", "SQLITE_READONLY_DIRECTORY", "SQLITE_READONLY_CANTINIT")


def needs_snapshot(error: sqlite3.Error) -> bool:
    """Whether a read-only open failing with ``error`` should fall back to ``immutable=1``."""
    name = getattr(error, "sqlite_errorname", None) or ""
    if name:
        return name.startswith(SNAPSHOT_ERRORS)
    low = str(error).lower()             # an older sqlite3 module: by the message
    return "unable to open" in low or "attempt to write a readonly database" in low


def readonly_sqlite_engine(path: Path, timeout: float, store_flags: dict) -> Engine:
    """A SQLite engine that cannot write: ``mode=ro``; when that cannot open the file because
    its WAL index cannot be created (read-only folder), ``immutable=1`` (the last checkpoint)."""
    uri = "file:" + quote(str(path))

    def connect() -> sqlite3.Connection:
        conn = sqlite3.connect(uri + "?mode=ro", uri=True, timeout=timeout, check_same_thread=False)
        try:
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
            return conn
        except sqlite3.OperationalError as e:
            conn.close()
            if not needs_snapshot(e):
                raise
        store_flags["snapshot"] = True
        return sqlite3.connect(uri + "?immutable=1", uri=True, timeout=timeout, check_same_thread=False)

    engine = create_engine("sqlite://", creator=connect)
    _sqlite_session_setup(engine, timeout, immediate=False)
    return engine



def display(url: str) -> str:
    """A database as a user names it: the file's path, or the URL without its password."""
    try:
        path = sqlite_path(url)
    except ArgumentError:
        return url
    if path is not None:
        return str(path)
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return url


def has_sqlite_header(path: Path) -> bool:
    """Whether ``path`` starts as a SQLite database does, asked of SQLite itself.

    Never with ``open()``: closing any descriptor of the file drops every POSIX lock this
    process holds on it, the shared lock of each of its live connections included; another
    process closing its connection then believes it is the last, checkpoints and deletes the
    WAL from under them ("database disk image is malformed", commits lost; seen in tests that
    run commands in-process). SQLite keeps its own descriptor open while locks are held.
    ``immutable=1``: page 1 is read without the WAL or any lock."""
    try:
        conn = sqlite3.connect("file:" + quote(str(path)) + "?mode=ro&immutable=1", uri=True)
    except sqlite3.Error as e:
        raise StoreError(f"{path}: cannot read the file ({e})") from None
    try:
        conn.execute("PRAGMA schema_version").fetchone()
        return True
    except sqlite3.DatabaseError as e:
        if "not a database" in str(e).lower():
            return False
        raise StoreError(f"{path}: cannot read the file ({e})") from None
    finally:
        conn.close()
