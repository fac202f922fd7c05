"""Run history: one SQLAlchemy 2 database (SQLite ``runs.db`` by default) shared by run
processes and readers.

The database is the single source of truth (DESIGN.md). A run process writes its own rows,
one commit per epoch, plus a heartbeat; ``kni runs``, ``kni compare``, the TUI only read
(the one exception is :meth:`Store.refresh_crashed`, which marks runs whose process is gone,
see below).

Tables
------
``meta``    ``key``/``value`` text pairs; ``schema_version`` is the integer layout version.
``runs``    one row per (recipe, seed) launch: ``id``, ``recipe`` (name), ``recipe_path``,
            ``recipe_text`` (the YAML exactly as run), ``config_json`` (the resolved
            :class:`~kni_core.config.RunConfig`), ``config_hash`` (everything but seed and
            device: the group key), ``dataset``, ``model`` (``KNI`` or ``NI``), ``seed``,
            ``device``, ``status``, ``pid``, ``host``, ``created_at`` / ``started_at`` /
            ``finished_at`` / ``heartbeat_at`` (UTC), ``max_epochs``, ``select_on``,
            ``stopped_early``, ``best_epoch`` and the valid/test AUC, logloss and accuracy at
            that epoch (``best_*``), ``error`` and ``traceback``, ``data_stats`` (JSON),
            ``package_version`` and ``git_commit``; ``note`` (the user's free text),
            ``progress`` (JSON, the run process's latest position inside the current epoch:
            see :mod:`workbench.progress`), ``peak_rss_mb``, ``cpu_threads``, ``gpu_name`` and
            ``peak_gpu_mb`` (resources, written by the run process).
``epochs``  one row per finished epoch: ``run_id``, ``epoch`` (1-based), ``train_loss``,
            ``valid_auc``/``valid_logloss``/``valid_acc``, ``test_auc``/``test_logloss``/
            ``test_acc``, ``train_seconds``, ``eval_seconds``, ``created_at``. Metrics that are
            undefined (NaN) are stored as NULL.
``tags``    user tags: ``target`` (``run:ID`` or ``group:CONFIG_HASH``), ``tag``, ``created_at``.
``notes``   user notes on groups: ``target`` (``group:CONFIG_HASH``), ``text``, ``updated_at``
            (a run's note is ``runs.note``).

Tags and notes are the user's own annotations: ``kni tag`` / ``kni note`` and the TUI (on a
user's action) write them; no run process does.

Statuses: ``queued`` (row written by the launcher, process not started yet), ``running``,
``completed``, ``failed`` (exception; ``error`` and ``traceback`` set), ``cancelled``
(SIGINT/SIGTERM; finished epochs kept), ``crashed`` (the process vanished without writing an
end: kill -9, power cut, out-of-memory killer).

Crash detection
---------------
A live row (``queued`` or ``running``) names the process that owns it (``pid`` on ``host``:
the launcher while queued, the run process once running) and carries a heartbeat refreshed
every :data:`HEARTBEAT_SECONDS`. A reader treats a live row as crashed when its heartbeat is
older than :func:`stale_seconds` (30 s, env ``KNI_STALE_SECONDS``) **and** its process is not
alive (checked with ``os.kill(pid, 0)`` and ``/proc`` for zombies when ``host`` is this host;
assumed dead on another host). :meth:`Store.refresh_crashed` writes that conclusion with a
compare-and-set update (``WHERE status IN live AND heartbeat_at = what was read``), so it is
idempotent and can never overwrite an end the run wrote meanwhile. A launcher that sees its
child exit without an end marks the row at once.

Schema versions
---------------
The layout is versioned by the integer ``meta.schema_version`` and upgraded on open by the
hand-written :data:`MIGRATIONS` list (a fresh database runs the same list from version 1, so
fresh and upgraded databases are identical by construction). Why not Alembic: the database
is a per-user file that must upgrade itself silently when any ``kni`` command opens it;
there are three small tables and only additive changes so far; Alembic would add a dependency,
a migrations folder and an ``env.py`` to ship inside the package, and its autogenerate needs
a developer in the loop anyway. Each step is a Python function over a Core connection,
frozen at the layout of its time (it never imports the ORM models below), and runs in one
transaction with the version bump, so an interrupted upgrade leaves the old version intact.
A database written by a newer release is refused with a clear message and left untouched.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

from contextlib import contextmanager

from sqlalchemy import (Boolean, Column, DateTime, Float, ForeignKey, Integer, MetaData,
                        String, Table, Text, create_engine, delete, event, func, inspect, select,
                        text, update)
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError, SQLAlchemyError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column
from sqlalchemy.pool import StaticPool
from sqlalchemy.types import TypeDecorator

from kni_core.errors import KniError

from .statuses import CANCELLED, COMPLETED, CRASHED, FAILED, FINAL, LIVE, QUEUED, RUNNING, STATUSES

__all__ = ["Store", "StoreError", "Run", "Epoch", "SCHEMA_VERSION", "MIGRATIONS", "STATUSES", "LIVE",
           "FINAL", "QUEUED", "RUNNING", "COMPLETED", "FAILED", "CANCELLED", "CRASHED",
           "HEARTBEAT_SECONDS", "stale_seconds", "pid_alive", "resolve_url", "run_to_dict",
           "epoch_to_dict", "METRIC_FIELDS", "DEFAULT_DB", "this_host", "utcnow", "RESOURCE_FIELDS",
           "run_target", "group_target", "check_tag", "Tag", "Note"]


#: Seconds between two heartbeats of a run process.
HEARTBEAT_SECONDS = 5.0
#: Default age after which a heartbeat counts as stale (see :func:`stale_seconds`).
STALE_SECONDS = 30.0
#: Default busy timeout in seconds (env ``KNI_DB_TIMEOUT``).
BUSY_TIMEOUT = 15.0
DEFAULT_DB = "runs.db"

#: The per-epoch metrics, in the order of the ``epochs`` table and of :class:`EpochResult`.
METRIC_FIELDS = ("train_loss", "valid_auc", "valid_logloss", "valid_acc", "test_auc", "test_logloss",
                 "test_acc", "train_seconds", "eval_seconds")
_BEST_FIELDS = ("valid_auc", "valid_logloss", "valid_acc", "test_auc", "test_logloss", "test_acc")
#: Resource use a run process records about itself (see :mod:`workbench.resources`).
RESOURCE_FIELDS = ("peak_rss_mb", "cpu_threads", "gpu_name", "peak_gpu_mb")
#: Longest tag and note accepted.
TAG_MAX, NOTE_MAX = 64, 10_000


class StoreError(KniError):
    """The run database cannot be used (missing, not SQLite, newer schema, locked...)."""


def check_tag(tag: str) -> str:
    """A tag as stored: one word of printable characters (no spaces or commas), at most
    :data:`TAG_MAX` long; StoreError otherwise."""
    t = str(tag).strip()
    if not t or len(t) > TAG_MAX or any(c.isspace() or c == "," for c in t) or not t.isprintable():
        raise StoreError(f"tag {tag!r}: expected one word of 1-{TAG_MAX} printable characters "
                         "without spaces or commas")
    return t


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def this_host() -> str:
    return socket.gethostname()


def stale_seconds() -> float:
    """Heartbeat age after which a live run whose process is gone counts as crashed."""
    try:
        return float(os.environ.get("KNI_STALE_SECONDS", STALE_SECONDS))
    except ValueError:
        return STALE_SECONDS


def pid_alive(pid: int | None) -> bool:
    """Whether process ``pid`` exists on this host and is not a zombie."""
    if not pid or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True                      # exists, owned by someone else
    except OSError:
        return False
    try:                                 # a killed but unreaped child is a zombie: dead
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat[stat.rindex(")") + 2:].split()[0] != "Z"
    except (OSError, ValueError, IndexError):
        return True


# --------------------------------------------------------------------------------------------
# the ORM model (the current layout; MIGRATIONS build the same tables)


class UTCDateTime(TypeDecorator):
    """Timezone-aware UTC datetimes, stored naive (SQLite has no time zones)."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        return None if value is None else value.replace(tzinfo=timezone.utc)


class Base(DeclarativeBase):
    pass


class Meta(Base):
    __tablename__ = "meta"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class Run(Base):
    __tablename__ = "runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    recipe: Mapped[str] = mapped_column(String(200), index=True)
    recipe_path: Mapped[str | None] = mapped_column(Text)
    recipe_text: Mapped[str] = mapped_column(Text)
    config_json: Mapped[str] = mapped_column(Text)
    config_hash: Mapped[str] = mapped_column(String(64), index=True)
    dataset: Mapped[str] = mapped_column(String(200), index=True)
    model: Mapped[str] = mapped_column(String(50))
    seed: Mapped[int] = mapped_column(Integer)
    device: Mapped[str] = mapped_column(String(100))
    status: Mapped[str] = mapped_column(String(20), index=True)
    pid: Mapped[int | None] = mapped_column(Integer)
    host: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    max_epochs: Mapped[int] = mapped_column(Integer)
    select_on: Mapped[str] = mapped_column(String(10))
    stopped_early: Mapped[bool] = mapped_column(Boolean, default=False)
    best_epoch: Mapped[int | None] = mapped_column(Integer)
    best_valid_auc: Mapped[float | None] = mapped_column(Float)
    best_valid_logloss: Mapped[float | None] = mapped_column(Float)
    best_valid_acc: Mapped[float | None] = mapped_column(Float)
    best_test_auc: Mapped[float | None] = mapped_column(Float)
    best_test_logloss: Mapped[float | None] = mapped_column(Float)
    best_test_acc: Mapped[float | None] = mapped_column(Float)
    error: Mapped[str | None] = mapped_column(Text)
    traceback: Mapped[str | None] = mapped_column(Text)
    # schema version 2
    package_version: Mapped[str | None] = mapped_column(String(64))
    git_commit: Mapped[str | None] = mapped_column(String(64))
    data_stats: Mapped[str | None] = mapped_column(Text)
    # schema version 3
    note: Mapped[str | None] = mapped_column(Text)
    progress: Mapped[str | None] = mapped_column(Text)
    peak_rss_mb: Mapped[float | None] = mapped_column(Float)
    cpu_threads: Mapped[int | None] = mapped_column(Integer)
    gpu_name: Mapped[str | None] = mapped_column(String(200))
    peak_gpu_mb: Mapped[float | None] = mapped_column(Float)

    #: Number of stored epoch rows; filled by the Store's queries (not a column).
    n_epochs = 0
    #: The run's tags, its group's tags and its group's note (the user's annotations);
    #: filled by :meth:`Store.runs` (not columns).
    tags = ()
    group_tags = ()
    group_note = None

    @property
    def config(self) -> dict:
        return json.loads(self.config_json)

    def __repr__(self) -> str:
        return f"Run(id={self.id}, recipe={self.recipe!r}, seed={self.seed}, status={self.status!r})"


class Epoch(Base):
    __tablename__ = "epochs"

    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    epoch: Mapped[int] = mapped_column(Integer, primary_key=True)
    train_loss: Mapped[float | None] = mapped_column(Float)
    valid_auc: Mapped[float | None] = mapped_column(Float)
    valid_logloss: Mapped[float | None] = mapped_column(Float)
    valid_acc: Mapped[float | None] = mapped_column(Float)
    test_auc: Mapped[float | None] = mapped_column(Float)
    test_logloss: Mapped[float | None] = mapped_column(Float)
    test_acc: Mapped[float | None] = mapped_column(Float)
    train_seconds: Mapped[float | None] = mapped_column(Float)
    eval_seconds: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    def __repr__(self) -> str:
        return f"Epoch(run_id={self.run_id}, epoch={self.epoch}, valid_auc={self.valid_auc})"


class Tag(Base):
    __tablename__ = "tags"

    target: Mapped[str] = mapped_column(String(100), primary_key=True)
    tag: Mapped[str] = mapped_column(String(64), primary_key=True, index=True)
    created_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Note(Base):
    __tablename__ = "notes"

    target: Mapped[str] = mapped_column(String(100), primary_key=True)
    text: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


def run_target(run_id: int) -> str:
    """The ``tags.target`` of a run."""
    return f"run:{int(run_id)}"


def group_target(config_hash: str) -> str:
    """The ``tags.target`` / ``notes.target`` of a group of seeds (its full config hash)."""
    return f"group:{config_hash}"


# --------------------------------------------------------------------------------------------
# migrations: frozen Core definitions, never the ORM classes above


def _add_column(conn: Connection, table: str, column: Column) -> None:
    kind = column.type.compile(dialect=conn.dialect)
    conn.execute(text(f'ALTER TABLE {table} ADD COLUMN {column.name} {kind}'))


def _migrate_1(conn: Connection) -> None:
    """The first layout: meta, runs and epochs."""
    md = MetaData()
    Table("meta", md, Column("key", String(64), primary_key=True), Column("value", Text, nullable=False))
    Table("runs", md,
          Column("id", Integer, primary_key=True, autoincrement=True),
          Column("recipe", String(200), nullable=False, index=True),
          Column("recipe_path", Text),
          Column("recipe_text", Text, nullable=False),
          Column("config_json", Text, nullable=False),
          Column("config_hash", String(64), nullable=False, index=True),
          Column("dataset", String(200), nullable=False, index=True),
          Column("model", String(50), nullable=False),
          Column("seed", Integer, nullable=False),
          Column("device", String(100), nullable=False),
          Column("status", String(20), nullable=False, index=True),
          Column("pid", Integer),
          Column("host", String(255)),
          Column("created_at", DateTime, nullable=False),
          Column("started_at", DateTime),
          Column("finished_at", DateTime),
          Column("heartbeat_at", DateTime),
          Column("max_epochs", Integer, nullable=False),
          Column("select_on", String(10), nullable=False),
          Column("stopped_early", Boolean, nullable=False),
          *[Column(name, Integer if name == "best_epoch" else Float) for name in
            ("best_epoch", "best_valid_auc", "best_valid_logloss", "best_valid_acc",
             "best_test_auc", "best_test_logloss", "best_test_acc")],
          Column("error", Text),
          Column("traceback", Text))
    Table("epochs", md,
          Column("run_id", Integer, ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True),
          Column("epoch", Integer, primary_key=True),
          *[Column(name, Float) for name in METRIC_FIELDS],
          Column("created_at", DateTime))
    md.create_all(conn)


def _migrate_2(conn: Connection) -> None:
    """Provenance: the package version, the git commit and the prepared data's statistics."""
    _add_column(conn, "runs", Column("package_version", String(64)))
    _add_column(conn, "runs", Column("git_commit", String(64)))
    _add_column(conn, "runs", Column("data_stats", Text))


def _migrate_3(conn: Connection) -> None:
    """User annotations (a run's note, tags on runs and groups, notes on groups), the run
    process's progress inside an epoch and its resource use."""
    _add_column(conn, "runs", Column("note", Text))
    _add_column(conn, "runs", Column("progress", Text))
    _add_column(conn, "runs", Column("peak_rss_mb", Float))
    _add_column(conn, "runs", Column("cpu_threads", Integer))
    _add_column(conn, "runs", Column("gpu_name", String(200)))
    _add_column(conn, "runs", Column("peak_gpu_mb", Float))
    md = MetaData()
    Table("tags", md,
          Column("target", String(100), primary_key=True),
          Column("tag", String(64), primary_key=True, index=True),
          Column("created_at", DateTime))
    Table("notes", md,
          Column("target", String(100), primary_key=True),
          Column("text", Text, nullable=False),
          Column("updated_at", DateTime))
    md.create_all(conn)


#: (version reached, what it does, the step). Append only; never edit a released step.
MIGRATIONS: list[tuple[int, str, Callable[[Connection], None]]] = [
    (1, "first layout: meta, runs, epochs", _migrate_1),
    (2, "runs.package_version, runs.git_commit, runs.data_stats", _migrate_2),
    (3, "runs.note/progress/peak_rss_mb/cpu_threads/gpu_name/peak_gpu_mb, tables tags and notes", _migrate_3),
]
SCHEMA_VERSION = MIGRATIONS[-1][0]


# --------------------------------------------------------------------------------------------
# URLs and engines


def resolve_url(db: str | os.PathLike | None) -> str:
    """A SQLAlchemy URL for ``db``: a URL as it is, a bare path as a SQLite file."""
    if db is None or str(db) == "":
        db = os.environ.get("KNI_DB") or DEFAULT_DB
    db = str(db)
    if "://" in db:
        return db
    return "sqlite:///" + str(Path(db).expanduser().absolute())


def _sqlite_path(url: str) -> Path | None:
    """The file of a SQLite URL (None for other databases and in-memory SQLite)."""
    u = make_url(url)
    if u.get_backend_name() != "sqlite":
        return None
    if not u.database or u.database == ":memory:" or u.database.startswith("file::memory:"):
        return None
    return Path(u.database)


def _explain(error: BaseException, where: str) -> StoreError:
    """A user-facing message for a database error."""
    msg = str(getattr(error, "orig", None) or error).strip()
    low = msg.lower()
    if "locked" in low or "busy" in low:
        return StoreError(f"{where}: the database is locked by another process (waited "
                          f"{_busy_timeout():g} s; raise it with KNI_DB_TIMEOUT); nothing was changed")
    if "not a database" in low or "file is encrypted" in low:
        return StoreError(f"{where}: not a SQLite database (give --db a runs.db file or a SQLAlchemy URL)")
    if "unable to open" in low or "readonly" in low or "read-only" in low or "permission" in low:
        return StoreError(f"{where}: cannot open the database for writing: {msg}")
    if "malformed" in low or "corrupt" in low:
        return StoreError(f"{where}: the database file is damaged: {msg}")
    return StoreError(f"{where}: {msg}")


def _busy_timeout() -> float:
    try:
        return float(os.environ.get("KNI_DB_TIMEOUT", BUSY_TIMEOUT))
    except ValueError:
        return BUSY_TIMEOUT


def _make_engine(url: str, *, immediate: bool, timeout: float) -> Engine:
    """An engine; on SQLite every connection runs in WAL mode with a busy timeout and foreign
    keys on, and transactions are begun explicitly (``BEGIN IMMEDIATE`` on the writer engine,
    so a writer waits for the lock up front instead of failing on a read-to-write upgrade)."""
    u = make_url(url)
    sqlite = u.get_backend_name() == "sqlite"
    kwargs: dict[str, Any] = {}
    if sqlite:
        kwargs["connect_args"] = {"timeout": timeout}
        if _sqlite_path(url) is None:         # in-memory: one connection shared by all sessions
            kwargs["connect_args"]["check_same_thread"] = False
            kwargs["poolclass"] = StaticPool
    engine = create_engine(url, **kwargs)
    if sqlite:
        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn: Any, record: Any) -> None:
            dbapi_conn.isolation_level = None       # we emit BEGIN ourselves (below)
            cur = dbapi_conn.cursor()
            try:
                cur.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
                mode = cur.execute("PRAGMA journal_mode").fetchone()[0]
                if str(mode).lower() != "wal" and _sqlite_path(url) is not None:
                    cur.execute("PRAGMA journal_mode = WAL")
                cur.execute("PRAGMA foreign_keys = ON")
                cur.execute("PRAGMA synchronous = NORMAL")
            finally:
                cur.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn: Connection) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")
    return engine


# --------------------------------------------------------------------------------------------
# the store


@dataclass(frozen=True)
class NewRun:
    """What the launcher knows about a run before its process starts."""

    recipe: str
    recipe_text: str
    config_json: str
    config_hash: str
    dataset: str
    model: str
    seed: int
    device: str
    max_epochs: int
    select_on: str
    recipe_path: str | None = None
    package_version: str | None = None
    git_commit: str | None = None


class Store:
    """The run database. ``Store.open(db)`` checks, creates or upgrades it.

    Every method opens its own short session and returns detached objects, so a Store can
    be shared by threads (the heartbeat thread of a run process) and held by a long-lived UI.
    Database errors surface as :class:`StoreError` with a readable message.
    """

    def __init__(self, url: str, reader: Engine, writer: Engine):
        self.url = url
        self.reader = reader
        self.writer = writer

    # -- opening ------------------------------------------------------------------------
    @classmethod
    def open(cls, db: str | os.PathLike | None = None, *, create: bool = True,
             timeout: float | None = None) -> "Store":
        """Open ``db`` (URL or path; default env ``KNI_DB`` or ``runs.db``), creating it when
        ``create`` and upgrading an older layout. Raises :class:`StoreError`."""
        url = resolve_url(db)
        where = _display(url)
        try:
            path = _sqlite_path(url)
        except ArgumentError as e:
            raise StoreError(f"--db {db}: not a database URL or path ({e})") from None
        if path is not None:
            if path.is_dir():
                raise StoreError(f"{where}: is a folder, expected a database file")
            if not path.exists():
                if not create:
                    raise StoreError(f"{where}: no run database here (kni run RECIPE creates one; "
                                     f"or give --db / KNI_DB)")
                if not path.parent.is_dir():
                    raise StoreError(f"{where}: the folder {path.parent} does not exist")
            elif not os.access(path, os.R_OK):
                raise StoreError(f"{where}: cannot read the file (permission denied)")
            elif path.stat().st_size and not _has_sqlite_header(path):
                raise StoreError(f"{where}: not a SQLite database (give --db a runs.db file or a "
                                 f"SQLAlchemy URL)")
        t = _busy_timeout() if timeout is None else timeout
        try:
            reader = _make_engine(url, immediate=False, timeout=t)
            # in-memory SQLite (tests, previews) lives in one connection: one engine for both
            writer = _make_engine(url, immediate=True, timeout=t) if path is not None or \
                make_url(url).get_backend_name() != "sqlite" else reader
        except (ArgumentError, NoSuchModuleError, ImportError) as e:
            raise StoreError(f"--db {db}: cannot use this database URL ({e})") from None
        store = cls(url, reader, writer)
        try:
            store._check_and_upgrade(create)
        except StoreError:
            store.close()
            raise
        except (DBAPIError, sqlite3.Error) as e:
            store.close()
            raise _explain(e, where) from None
        except SQLAlchemyError as e:
            store.close()
            raise StoreError(f"{where}: {e}") from None
        return store

    def close(self) -> None:
        self.reader.dispose()
        self.writer.dispose()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def where(self) -> str:
        return _display(self.url)

    @property
    def in_memory(self) -> bool:
        """An in-memory SQLite database (usable in one process only)."""
        return make_url(self.url).get_backend_name() == "sqlite" and _sqlite_path(self.url) is None

    def schema_version(self) -> int:
        with self.reader.connect() as conn:
            return _read_version(conn)

    def _check_and_upgrade(self, create: bool) -> None:
        with self.reader.connect() as conn:
            version = _read_version(conn)
        if version > SCHEMA_VERSION:
            raise StoreError(f"{self.where}: written by a newer kni-workbench (schema version {version}; "
                             f"this one reads up to {SCHEMA_VERSION}); upgrade kni-workbench to open it")
        if version == SCHEMA_VERSION:
            return
        if version == 0 and not create:
            raise StoreError(f"{self.where}: no run database here (kni run RECIPE creates one)")
        with self.writer.begin() as conn:          # one transaction: the steps and the version
            version = _read_version(conn)          # re-read under the write lock
            if version > SCHEMA_VERSION:
                raise StoreError(f"{self.where}: written by a newer kni-workbench (schema version "
                                 f"{version}; this one reads up to {SCHEMA_VERSION})")
            for target, _what, step in MIGRATIONS:
                if target > version:
                    step(conn)
            conn.execute(text("DELETE FROM meta WHERE key = 'schema_version'"))
            conn.execute(text("INSERT INTO meta (key, value) VALUES ('schema_version', :v)"),
                         {"v": str(SCHEMA_VERSION)})

    # -- sessions -----------------------------------------------------------------------
    @contextmanager
    def _read(self) -> Iterator[Session]:
        try:
            with Session(self.reader, expire_on_commit=False) as session:
                yield session
        except (DBAPIError, sqlite3.Error) as e:
            raise _explain(e, self.where) from None

    @contextmanager
    def _write(self) -> Iterator[Session]:
        try:
            with Session(self.writer, expire_on_commit=False) as session, session.begin():
                yield session
        except (DBAPIError, sqlite3.Error) as e:
            raise _explain(e, self.where) from None

    # -- the launcher -------------------------------------------------------------------
    def create_run(self, new: NewRun, *, pid: int | None = None, host: str | None = None) -> int:
        """Insert a ``queued`` run owned by the launcher process ``pid`` on ``host``."""
        now = utcnow()
        with self._write() as s:
            run = Run(recipe=new.recipe, recipe_path=new.recipe_path, recipe_text=new.recipe_text,
                      config_json=new.config_json, config_hash=new.config_hash, dataset=new.dataset,
                      model=new.model, seed=new.seed, device=new.device, status=QUEUED,
                      pid=pid if pid is not None else os.getpid(), host=host or this_host(),
                      created_at=now, heartbeat_at=now, max_epochs=new.max_epochs,
                      select_on=new.select_on, stopped_early=False,
                      package_version=new.package_version, git_commit=new.git_commit)
            s.add(run)
            s.flush()
            return run.id

    def touch(self, run_ids: Iterable[int], statuses: Sequence[str] = LIVE) -> None:
        """Refresh the heartbeat of the given runs that are still in ``statuses``."""
        ids = list(run_ids)
        if not ids:
            return
        with self._write() as s:
            s.execute(update(Run).where(Run.id.in_(ids), Run.status.in_(statuses))
                      .values(heartbeat_at=utcnow()))

    # -- the run process ----------------------------------------------------------------
    def claim(self, run_id: int, pid: int, host: str) -> bool:
        """queued -> running for process ``pid``; False if the run is not queued."""
        now = utcnow()
        with self._write() as s:
            result = s.execute(update(Run).where(Run.id == run_id, Run.status == QUEUED)
                               .values(status=RUNNING, pid=pid, host=host, started_at=now, heartbeat_at=now))
            return result.rowcount == 1

    def record_start(self, run_id: int, device: str, data_stats: dict | None) -> None:
        with self._write() as s:
            s.execute(update(Run).where(Run.id == run_id).values(
                device=device, data_stats=json.dumps(data_stats, default=str) if data_stats else None,
                heartbeat_at=utcnow()))

    def heartbeat(self, run_id: int) -> bool:
        """Refresh a running run's heartbeat; also revives a run a reader wrongly took for
        crashed (its process is evidently alive). False if the row is gone or ended."""
        with self._write() as s:
            result = s.execute(update(Run).where(Run.id == run_id, Run.status.in_((RUNNING, CRASHED)))
                               .values(heartbeat_at=utcnow(), status=RUNNING, finished_at=None, error=None))
            return result.rowcount == 1

    def add_epoch(self, run_id: int, result: Any, best: Any | None) -> None:
        """One commit: the epoch row, the run's best-so-far and its heartbeat.

        ``result`` and ``best`` are :class:`~kni_core.train.EpochResult` (or anything with the
        same attributes)."""
        now = utcnow()
        with self._write() as s:
            s.add(Epoch(run_id=run_id, epoch=result.epoch, created_at=now,
                        **{f: _num(getattr(result, f)) for f in METRIC_FIELDS}))
            values: dict[str, Any] = {"heartbeat_at": now}
            if best is not None:
                values.update(best_epoch=best.epoch, **{f"best_{f}": _num(getattr(best, f)) for f in _BEST_FIELDS})
            s.execute(update(Run).where(Run.id == run_id).values(**values))

    def finish(self, run_id: int, status: str, *, error: str | None = None, traceback: str | None = None,
               best: Any | None = None, stopped_early: bool | None = None) -> bool:
        """Record the end of a run (only if it has not ended already)."""
        if status not in FINAL:
            raise ValueError(f"not a final status: {status}")
        values: dict[str, Any] = {"status": status, "finished_at": utcnow(), "error": error,
                                  "traceback": traceback}
        if best is not None:
            values.update(best_epoch=best.epoch, **{f"best_{f}": _num(getattr(best, f)) for f in _BEST_FIELDS})
        if stopped_early is not None:
            values["stopped_early"] = stopped_early
        with self._write() as s:
            result = s.execute(update(Run).where(Run.id == run_id, Run.status.in_(LIVE + (CRASHED,)))
                               .values(**values))
            return result.rowcount == 1

    def mark(self, run_id: int, status: str, reason: str, only_if: Sequence[str] = LIVE) -> bool:
        """Set a final ``status`` with ``reason`` as error, if the run is still in ``only_if``."""
        with self._write() as s:
            result = s.execute(update(Run).where(Run.id == run_id, Run.status.in_(only_if))
                               .values(status=status, error=reason, finished_at=utcnow()))
            return result.rowcount == 1

    # -- readers ------------------------------------------------------------------------
    def refresh_crashed(self, stale: float | None = None, now: datetime | None = None) -> list[int]:
        """Mark live runs whose heartbeat is stale and whose process is gone as crashed.

        Returns the ids marked now. Idempotent; safe against a run ending meanwhile. When the
        database cannot be written (read-only file, locked) the rows stay as they are and
        :meth:`runs` still reports them crashed (see :meth:`effective_status`)."""
        stale = stale_seconds() if stale is None else stale
        now = now or utcnow()
        with self._read() as s:
            live = list(s.scalars(select(Run).where(Run.status.in_(LIVE))))
        dead = [r for r in live if _looks_dead(r, now, stale)]
        marked = []
        for r in dead:
            reason = (f"the process (pid {r.pid} on {r.host}) is gone and its last heartbeat was "
                      f"{_age(r, now):.0f} s ago; no end was recorded (killed, out of memory or power cut)")
            try:
                with self._write() as s:
                    cond = [Run.id == r.id, Run.status == r.status]
                    cond.append(Run.heartbeat_at == r.heartbeat_at if r.heartbeat_at is not None
                                else Run.heartbeat_at.is_(None))
                    result = s.execute(update(Run).where(*cond).values(status=CRASHED, error=reason,
                                                                       finished_at=now))
                    if result.rowcount == 1:
                        marked.append(r.id)
            except StoreError:
                break
        return marked

    @staticmethod
    def effective_status(run: Run, stale: float | None = None, now: datetime | None = None) -> str:
        """The status a reader should show: a live row whose process is gone is crashed."""
        if run.status in LIVE and _looks_dead(run, now or utcnow(), stale_seconds() if stale is None else stale):
            return CRASHED
        return run.status

    def runs(self, *, ids: Iterable[int] | None = None, status: Iterable[str] | str | None = None,
             dataset: str | None = None, recipe: str | None = None, config_hash: str | None = None,
             order: str = "id") -> list[Run]:
        """Runs matching every given filter (``status``/``dataset``/``recipe`` exact, several
        statuses allowed), each with ``n_epochs`` set, ordered by id."""
        count = (select(Epoch.run_id, func.count().label("n")).group_by(Epoch.run_id).subquery())
        q = select(Run, func.coalesce(count.c.n, 0)).outerjoin(count, count.c.run_id == Run.id)
        if ids is not None:
            q = q.where(Run.id.in_(list(ids)))
        if status:
            q = q.where(Run.status.in_([status] if isinstance(status, str) else list(status)))
        if dataset:
            q = q.where(Run.dataset == dataset)
        if recipe:
            q = q.where(Run.recipe == recipe)
        if config_hash:
            q = q.where(Run.config_hash.startswith(config_hash))
        q = q.order_by(Run.id)
        out = []
        with self._read() as s:
            for run, n in s.execute(q):
                run.n_epochs = int(n)
                out.append(run)
        self._annotate(out)
        return out

    def _annotate(self, runs: list[Run]) -> None:
        """Attach each run's tags and its group's tags and note (two small queries)."""
        if not runs:
            return
        tags, notes = self.tags(), self.group_notes()
        for run in runs:
            run.tags = tags.get(run_target(run.id), [])
            run.group_tags = tags.get(group_target(run.config_hash), [])
            run.group_note = notes.get(group_target(run.config_hash))

    def get(self, run_id: int) -> Run:
        """The run ``run_id``; StoreError if there is none."""
        found = self.runs(ids=[run_id])
        if not found:
            raise StoreError(f"no run with id {run_id} in {self.where} (kni runs lists them)")
        return found[0]

    def epochs(self, run_id: int, after: int = 0) -> list[Epoch]:
        """Epoch rows of ``run_id`` with ``epoch > after``, in order."""
        with self._read() as s:
            return list(s.scalars(select(Epoch).where(Epoch.run_id == run_id, Epoch.epoch > after)
                                  .order_by(Epoch.epoch)))

    def epochs_of(self, run_ids: Iterable[int]) -> dict[int, list[Epoch]]:
        ids = list(run_ids)
        out: dict[int, list[Epoch]] = {i: [] for i in ids}
        if not ids:
            return out
        with self._read() as s:
            for chunk in range(0, len(ids), 500):
                part = ids[chunk:chunk + 500]
                for e in s.scalars(select(Epoch).where(Epoch.run_id.in_(part))
                                   .order_by(Epoch.run_id, Epoch.epoch)):
                    out[e.run_id].append(e)
        return out

    def missing(self, run_ids: Iterable[int]) -> list[int]:
        """The ids among ``run_ids`` that name no run."""
        ids = list(dict.fromkeys(run_ids))
        with self._read() as s:
            found = set(s.scalars(select(Run.id).where(Run.id.in_(ids))))
        return [i for i in ids if i not in found]

    def delete(self, run_ids: Iterable[int]) -> int:
        """Delete runs and their epochs in one transaction; returns the number deleted."""
        ids = list(dict.fromkeys(run_ids))
        with self._write() as s:
            s.execute(delete(Epoch).where(Epoch.run_id.in_(ids)))
            s.execute(delete(Tag).where(Tag.target.in_([run_target(i) for i in ids])))  # ids can be reused
            return s.execute(delete(Run).where(Run.id.in_(ids))).rowcount

    # -- the run process: progress and resources ----------------------------------------
    def record_progress(self, run_id: int, progress: dict | None = None,
                        resources: dict | None = None) -> bool:
        """Store the run process's latest position inside the epoch (``progress``, JSON) and
        its resource use (``peak_rss_mb``, ``cpu_threads``, ``gpu_name``, ``peak_gpu_mb``;
        ``None`` values are left as they are). Only while the run is running; False otherwise."""
        values: dict[str, Any] = {}
        if progress is not None:
            values["progress"] = json.dumps(progress, separators=(",", ":"))
        for key in RESOURCE_FIELDS:
            if resources and resources.get(key) is not None:
                values[key] = resources[key]
        if not values:
            return True
        with self._write() as s:
            result = s.execute(update(Run).where(Run.id == run_id, Run.status == RUNNING).values(**values))
            return result.rowcount == 1

    # -- user annotations: tags and notes (the user's own edits, from kni tag/note or the TUI) --
    def add_tags(self, targets: Iterable[str], tags: Iterable[str]) -> int:
        """Tag every target (``run_target`` / ``group_target``); returns the tags added."""
        targets, tags = list(dict.fromkeys(targets)), [check_tag(t) for t in dict.fromkeys(tags)]
        now = utcnow()
        added = 0
        with self._write() as s:
            have = {(t.target, t.tag) for t in s.scalars(select(Tag).where(Tag.target.in_(targets)))}
            for target in targets:
                for tag in tags:
                    if (target, tag) not in have:
                        s.add(Tag(target=target, tag=tag, created_at=now))
                        added += 1
        return added

    def remove_tags(self, targets: Iterable[str], tags: Iterable[str]) -> int:
        """Remove tags from targets; returns the number removed."""
        with self._write() as s:
            return s.execute(delete(Tag).where(Tag.target.in_(list(targets)), Tag.tag.in_(list(tags)))).rowcount

    def set_tags(self, target: str, tags: Iterable[str]) -> None:
        """Replace the tags of one target (the TUI's edit box)."""
        tags = [check_tag(t) for t in dict.fromkeys(tags)]
        now = utcnow()
        with self._write() as s:
            gone = delete(Tag).where(Tag.target == target)
            s.execute(gone.where(Tag.tag.notin_(tags)) if tags else gone)
            have = set(s.scalars(select(Tag.tag).where(Tag.target == target)))
            s.add_all(Tag(target=target, tag=t, created_at=now) for t in tags if t not in have)

    def tags(self) -> dict[str, list[str]]:
        """Every target's tags, sorted (the tables are small: one query for a whole listing)."""
        out: dict[str, list[str]] = {}
        with self._read() as s:
            for target, tag in s.execute(select(Tag.target, Tag.tag).order_by(Tag.target, Tag.tag)):
                out.setdefault(target, []).append(tag)
        return out

    def set_note(self, target: str, text: str | None) -> None:
        """Set (or with an empty text, clear) the note of a run or a group."""
        text = (text or "").strip() or None
        if text is not None and len(text) > NOTE_MAX:
            raise StoreError(f"note: at most {NOTE_MAX:,} characters; got {len(text):,}")
        with self._write() as s:
            if target.startswith("run:"):
                run_id = int(target[4:])
                if not s.execute(update(Run).where(Run.id == run_id).values(note=text)).rowcount:
                    raise StoreError(f"no run with id {run_id} in {self.where}")
                return
            s.execute(delete(Note).where(Note.target == target))
            if text is not None:
                s.add(Note(target=target, text=text, updated_at=utcnow()))

    def group_notes(self) -> dict[str, str]:
        """``{group target: note}`` for every group with a note."""
        with self._read() as s:
            return {t: x for t, x in s.execute(select(Note.target, Note.text))}

    def config_hashes(self, prefix: str) -> list[str]:
        """The distinct config hashes of stored runs that start with ``prefix``."""
        with self._read() as s:
            return sorted(set(s.scalars(select(Run.config_hash).where(Run.config_hash.startswith(prefix)))))


# --------------------------------------------------------------------------------------------
# helpers


def _display(url: str) -> str:
    try:
        path = _sqlite_path(url)
    except ArgumentError:
        return url
    if path is not None:
        return str(path)
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return url


def _has_sqlite_header(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(16) == b"SQLite format 3\x00"
    except OSError as e:
        raise StoreError(f"{path}: cannot read the file ({e.strerror or e})") from None


def _read_version(conn: Connection) -> int:
    """The stored schema version; 0 for an empty database. StoreError for a database that
    holds other tables but is not a run database."""
    names = set(inspect(conn).get_table_names())
    if "meta" not in names:
        if names:
            raise StoreError(f"{_display(str(conn.engine.url))}: a database, but not a kni run database "
                             f"(it has tables {', '.join(sorted(names)[:5])}); give --db another file")
        return 0
    row = conn.execute(text("SELECT value FROM meta WHERE key = 'schema_version'")).fetchone()
    if row is None:
        raise StoreError(f"{_display(str(conn.engine.url))}: not a kni run database (no schema version)")
    try:
        return int(row[0])
    except ValueError:
        raise StoreError(f"{_display(str(conn.engine.url))}: unreadable schema version {row[0]!r}") from None


def _num(x: Any) -> float | None:
    if x is None:
        return None
    x = float(x)
    return None if x != x else x           # NaN -> NULL (SQLite would do the same)


def _age(run: Run, now: datetime) -> float:
    ref = run.heartbeat_at or run.started_at or run.created_at
    return (now - ref).total_seconds() if ref is not None else float("inf")


def _looks_dead(run: Run, now: datetime, stale: float) -> bool:
    if run.status not in LIVE or _age(run, now) < stale:
        return False
    if run.host == this_host():
        return not pid_alive(run.pid)
    return True


def _iso(dt: datetime | None) -> str | None:
    return dt.isoformat(timespec="seconds") if dt is not None else None


def run_to_dict(run: Run, status: str | None = None) -> dict:
    """The JSON/CSV view of a run (metrics at its best epoch); ``status`` overrides the stored one."""
    seconds = None
    if run.started_at is not None:
        end = (run.heartbeat_at or run.finished_at) if run.status == CRASHED else \
            (run.finished_at or (run.heartbeat_at if run.status not in LIVE else utcnow()))
        seconds = round((end - run.started_at).total_seconds(), 3) if end is not None else None
    return {
        "id": run.id, "recipe": run.recipe, "dataset": run.dataset, "model": run.model, "seed": run.seed,
        "status": status or run.status, "epochs": run.n_epochs, "max_epochs": run.max_epochs,
        "pid": run.pid, "host": run.host, "device": run.device, "config_hash": run.config_hash,
        "select_on": run.select_on, "best_epoch": run.best_epoch,
        **{f: getattr(run, f"best_{f}") for f in _BEST_FIELDS},
        "stopped_early": bool(run.stopped_early),
        "created_at": _iso(run.created_at), "started_at": _iso(run.started_at),
        "finished_at": _iso(run.finished_at), "heartbeat_at": _iso(run.heartbeat_at),
        "seconds": seconds, "error": run.error, "recipe_path": run.recipe_path,
        "package_version": run.package_version, "git_commit": run.git_commit,
        "tags": list(run.tags), "note": run.note, "group_tags": list(run.group_tags), "group_note": run.group_note,
        "progress": _json_or_none(run.progress) if (status or run.status) == RUNNING else None,
        **{f: getattr(run, f) for f in RESOURCE_FIELDS},
    }


def _json_or_none(text: str | None) -> Any:
    try:
        return json.loads(text) if text else None
    except ValueError:
        return None


def epoch_to_dict(e: Epoch) -> dict:
    return {"epoch": e.epoch, **{f: getattr(e, f) for f in METRIC_FIELDS}}


def wait_for(predicate: Callable[[], bool], timeout: float, every: float = 0.2) -> bool:
    """Poll ``predicate`` until true or ``timeout`` seconds pass (a helper for tests and UIs)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(every)
    return predicate()
