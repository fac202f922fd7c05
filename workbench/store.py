"""Run history: one SQLAlchemy 2 database (SQLite ``runs.db`` by default) shared by run
processes and readers.

The database is the single source of truth (DESIGN.md). A run process writes its own rows,
one commit per epoch, plus a heartbeat; ``kni runs``, ``kni show``, ``kni compare`` and
``kni export`` only read: they open the store with ``readonly=True`` (below). Writers (the
launcher, the run processes, ``kni cancel``/``kni rm``, the TUI) also record crashes they
find (:meth:`Store.refresh_crashed`).

Tables
------
``meta``    ``key``/``value`` text pairs; ``schema_version`` is the integer layout version.
``runs``    one row per (recipe, seed) launch: ``id``, ``recipe`` (name), ``recipe_path``,
            ``recipe_text`` (the YAML exactly as run), ``config_json`` (the resolved
            :class:`~kni_core.config.RunConfig`), ``config_hash`` (everything but seed and
            device: the group key), ``dataset``, ``model`` (``KNI`` or ``NI``), ``seed``,
            ``device``, ``status``, ``pid``, ``pid_start`` (what identifies that process
            besides its number, see below), ``host``, ``created_at`` / ``started_at`` /
            ``finished_at`` / ``heartbeat_at`` (UTC), ``max_epochs``, ``select_on``,
            ``stopped_early``, ``best_epoch`` and the valid/test AUC, logloss and accuracy at
            that epoch (``best_*``), ``error`` and ``traceback``, ``data_stats`` (JSON),
            ``package_version`` and ``git_commit``; ``note`` (the user's free text),
            ``progress`` (JSON, the run process's latest position inside the current epoch:
            see :mod:`workbench.progress`), ``peak_rss_mb``, ``cpu_threads``, ``gpu_name`` and
            ``peak_gpu_mb`` (resources, written by the run process).
            A run of a sweep also has ``sweep_id``, ``sweep_point`` (the point's number in its
            sweep, from 1) and ``sweep_params`` (JSON: the swept keys and the point's values).
            The executor (schema version 7): ``executor`` (``local``: a child process of
            the launcher; ``ray``: a Ray task on any node of a cluster) and
            ``cancel_requested_at`` (``kni cancel`` of a run on another host: the run process
            stops at its next heartbeat).
``epochs``  one row per finished epoch: ``run_id``, ``epoch`` (1-based), ``train_loss``,
            ``valid_auc``/``valid_logloss``/``valid_acc``, ``test_auc``/``test_logloss``/
            ``test_acc``, ``train_seconds``, ``eval_seconds``, ``created_at``. Metrics that are
            undefined (NaN) are stored as NULL.
``topk``    (schema version 4) top-N results: one row per ``run_id``, ``epoch`` (the weights'
            epoch: the selected one, or every N-th with ``eval.topk.every``) and ``protocol``
            (``sampled``: KGCN/MKR's 100 sampled users; ``full``: every test user or a seeded
            cap), with ``users``, ``seed``, ``n_eval``, ``seconds`` and ``metrics`` (JSON:
            ``{"precision@10": ..., "recall@20": ..., "f1@5": ..., "full_recall@20": ...,
            "full_ndcg@20": ...}``), ``created_at``.
``tags``    (schema version 5) user tags: ``target`` (``run:ID`` or ``group:CONFIG_HASH``),
            ``tag``, ``created_at``.
``notes``   user notes on groups: ``target`` (``group:CONFIG_HASH``), ``text``, ``updated_at``
            (a run's note is ``runs.note``).

Tags and notes are the user's own annotations: ``kni tag`` / ``kni note`` and the TUI (on a
user's action) write them; no run process does.
``sweeps``  (schema version 6) one row per sweep (:mod:`workbench.sweep`): ``id``, ``name`` (the recipe's),
            ``recipe_path``, ``recipe_text``, ``method`` (``grid``, ``random``, ``grid+random``
            or ``tpe``), ``spec`` (JSON: the validated ``sweep:`` section), ``seeds`` (JSON),
            ``planned`` (points), ``prune`` (the pruner, or NULL), ``created_at`` and
            ``finished_at`` (written by the process that drove the sweep when it ends).
``sweep_journal``  Optuna's journal of a sweep's studies (the TPE search and the pruner):
            ``sweep_id``, ``seq`` (0, 1, 2... without gaps per sweep) and ``log`` (one JSON
            operation of :class:`optuna.storages.JournalStorage`); see :mod:`workbench.study`.

Statuses: ``queued`` (row written by the launcher, process not started yet), ``running``,
``completed``, ``failed`` (exception; ``error`` and ``traceback`` set), ``cancelled``
(SIGINT/SIGTERM; finished epochs kept), ``crashed`` (the process vanished without writing an
end: kill -9, power cut, out-of-memory killer), ``pruned`` (a sweep's pruner stopped it after
an epoch: its epochs are kept, its best epoch is recorded as for a completed run).

Crash detection
---------------
A live row (``queued`` or ``running``) names the process that owns it (``pid`` on ``host``:
the launcher while queued, the run process once running) and carries a heartbeat refreshed
every :data:`HEARTBEAT_SECONDS`. A pid alone proves nothing after a reboot (pids are reused),
so the owner's start time is recorded with it: ``pid_start`` is ``BOOT_ID:TICKS``, the
kernel's boot id and field 22 of ``/proc/PID/stat`` (start time in clock ticks since boot),
NULL where ``/proc`` is missing. The owner counts as alive only when that pid exists on this
host, is not a zombie and, where ``pid_start`` was recorded, started at that time
(:func:`process_matches`).

A reader treats a live row as crashed when its heartbeat is older than :func:`stale_seconds`
(30 s, env ``KNI_STALE_SECONDS``) **and** its owner is not alive (a row of another host:
assumed dead), or, whatever the pid says, when its heartbeat is older than
:func:`abandoned_seconds` (10 x the stale threshold, at least 60 s: a process that has not
written for that long is frozen or not ours; a run that was only stalled revives on its next
heartbeat). :meth:`Store.refresh_crashed` writes that conclusion with a compare-and-set update
(``WHERE status IN live AND heartbeat_at = what was read``), so it is idempotent and can
never overwrite an end the run wrote meanwhile. A launcher that sees its child exit without
an end marks the row at once. A read-only store cannot write the conclusion; its
:meth:`Store.runs` reports such rows as crashed instead (status and reason, not stored).

A row's process may run on another host (the Ray executor, several machines sharing one
PostgreSQL database): its pid proves nothing here, so only its heartbeat counts, and ``kni
cancel`` asks it to stop through the row (:meth:`Store.request_cancel`) instead of a signal.

Read-only opening
-----------------
``Store.open(db, readonly=True)`` never writes: no file is created, the journal mode is not
changed, an older layout is not migrated (SQLite: it is read as it is, the columns added
since read as NULL through temporary views; other databases: the user is told to run a
writing command), and no crash is recorded. SQLite files are opened with ``mode=ro``; when
that fails because the WAL index (``-shm``) cannot be created (a read-only folder), with
``immutable=1``: the last checkpointed state, :attr:`Store.snapshot` says so. PostgreSQL
sessions of a read-only store run with ``default_transaction_read_only`` on.

PostgreSQL
----------
``--db postgresql://USER@HOST/DB`` (the psycopg 3 driver: ``postgresql+psycopg://``; the
``postgres`` extra installs it) is a shared run store for several machines. The same
migrations build it (in one transaction under an advisory lock, so two writers opening a fresh
database at once do not both create it); ids are BIGINT and free-text columns TEXT there
(migration 4), as SQLite's are. Lock waits are bounded by ``lock_timeout`` (``KNI_DB_TIMEOUT``),
connecting by ``connect_timeout``; errors are classified by SQLSTATE (lock timeout, deadlock,
serialization failure, a lost or refused connection, a full disk or too many connections are
transient and retried like a locked SQLite file).

Damaged values
--------------
A value that cannot be read (a date that does not parse) or is out of range (AUC or accuracy
outside [0, 1], a negative or non-finite logloss, loss or duration) is read as None and
described in the object's ``damage`` list (``kni runs``/``kni show``/the TUI say so): one
bad row never stops a listing, and a bit flip never enters a mean.

Write failures
--------------
Database errors surface as :class:`StoreError`; ``transient`` is set for a lock held
longer than the busy timeout and for a full disk (and, on PostgreSQL, for a lost server
connection), where the same write may succeed later.
:func:`retry_write` retries those with backoff for :func:`write_patience` seconds (env
``KNI_DB_PATIENCE``, default 60) and can be interrupted; run processes use it for every row
they write, so a stalled database costs time, not finished epochs.

Schema versions
---------------
The layout is versioned by the integer ``meta.schema_version`` and upgraded on open by the
hand-written :data:`MIGRATIONS` list when a writer opens it (a fresh database runs the same list from version 1, so
fresh and upgraded databases are identical by construction). Why not Alembic: the database
is a per-user file that must upgrade itself silently when a writing ``kni`` command opens it;
there are three small tables and only additive changes so far; Alembic would add a dependency,
a migrations folder and an ``env.py`` to ship inside the package, and its autogenerate needs
a developer in the loop anyway. Each step is a Python function over a Core connection,
frozen at the layout of its time (it never imports the ORM models below), and runs in one
transaction with the version bump, so an interrupted upgrade leaves the old version intact.
A database written by a newer release is refused with a clear message and left untouched.
"""

from __future__ import annotations

import json
import logging
import math
import os
import socket
import sqlite3
import time
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence, TypeVar
from urllib.parse import quote

from sqlalchemy import (BigInteger, Boolean, Column, DateTime, Float, ForeignKey, Integer, MetaData,
                        String, Table, Text, create_engine, delete, event, func, inspect, select,
                        text, update)
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError, SQLAlchemyError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.pool import StaticPool
from sqlalchemy.types import TypeDecorator

from kni_core.errors import KniError

from .statuses import CANCELLED, COMPLETED, CRASHED, FAILED, FINAL, LIVE, PRUNED, QUEUED, RUNNING, STATUSES

__all__ = ["Store", "StoreError", "RunGone", "Run", "Epoch", "TopK", "topk_to_dict", "SCHEMA_VERSION",
           "MIGRATIONS", "STATUSES", "LIVE", "FINAL", "QUEUED", "RUNNING", "COMPLETED", "FAILED", "CANCELLED",
           "CRASHED", "PRUNED", "Sweep", "sweep_to_dict", "HEARTBEAT_SECONDS", "stale_seconds",
           "abandoned_seconds", "write_patience",
           "retry_write", "pid_alive", "process_start", "process_matches", "resolve_url", "run_to_dict",
           "epoch_to_dict", "METRIC_FIELDS", "DEFAULT_DB", "MAX_ID", "this_host", "utcnow", "RESOURCE_FIELDS",
           "run_target", "group_target", "check_tag", "Tag", "Note", "EXECUTORS",
           "POSTGRES_EXTRA"]

log = logging.getLogger(__name__)
T = TypeVar("T")


#: Seconds between two heartbeats of a run process.
HEARTBEAT_SECONDS = 5.0
#: Default age after which a heartbeat counts as stale (see :func:`stale_seconds`).
STALE_SECONDS = 30.0
#: A heartbeat older than this many stale thresholds means crashed, whatever the pid says.
ABANDONED_FACTOR = 10
#: ... and never less than this many seconds (12 missed heartbeats).
ABANDONED_MIN_SECONDS = 12 * HEARTBEAT_SECONDS
#: Default busy timeout in seconds (env ``KNI_DB_TIMEOUT``).
BUSY_TIMEOUT = 15.0
#: Default seconds a writer keeps retrying a locked or full database (env ``KNI_DB_PATIENCE``).
WRITE_PATIENCE = 60.0
DEFAULT_DB = "runs.db"
#: PostgreSQL advisory lock key held while a writer upgrades the layout ("kni" in ASCII).
_MIGRATION_LOCK = 0x6B6E69
#: The largest id SQLite (and a PostgreSQL BIGINT) can hold; larger ids name no run.
MAX_ID = 2 ** 63 - 1
#: Where a run's process executes (``runs.executor``): a child of the launcher, or a Ray task.
EXECUTORS = ("local", "ray")
#: What installs the PostgreSQL driver.
POSTGRES_EXTRA = 'pip install "kni-workbench[postgres]"'

#: The per-epoch metrics, in the order of the ``epochs`` table and of :class:`EpochResult`.
METRIC_FIELDS = ("train_loss", "valid_auc", "valid_logloss", "valid_acc", "test_auc", "test_logloss",
                 "test_acc", "train_seconds", "eval_seconds")
_BEST_FIELDS = ("valid_auc", "valid_logloss", "valid_acc", "test_auc", "test_logloss", "test_acc")
#: Resource use a run process records about itself (see :mod:`workbench.resources`).
RESOURCE_FIELDS = ("peak_rss_mb", "cpu_threads", "gpu_name", "peak_gpu_mb")
#: Longest tag and note accepted.
TAG_MAX, NOTE_MAX = 64, 10_000


class StoreError(KniError):
    """The run database cannot be used (missing, not SQLite, newer schema, locked...).

    ``transient``: the same operation may succeed later (locked, disk full)."""

    def __init__(self, message: str, *, transient: bool = False):
        super().__init__(message)
        self.transient = transient


class RunGone(StoreError):
    """The run's row is no longer in the database (removed while its process ran)."""


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


def abandoned_seconds(stale: float | None = None) -> float:
    """Heartbeat age after which a live run counts as crashed even if its pid seems alive."""
    stale = stale_seconds() if stale is None else stale
    return max(ABANDONED_FACTOR * stale, ABANDONED_MIN_SECONDS)


def write_patience() -> float:
    """Seconds a run process keeps retrying a transient write failure before giving up."""
    try:
        return max(0.0, float(os.environ.get("KNI_DB_PATIENCE", WRITE_PATIENCE)))
    except ValueError:
        return WRITE_PATIENCE


def retry_write(write: Callable[[], T], *, patience: float | None = None, stop: Callable[[], bool] | None = None,
                on_wait: Callable[[StoreError], None] | None = None) -> T:
    """``write()``, retried with backoff (0.25 s doubling to 8 s) while it fails with a
    transient :class:`StoreError`, for up to ``patience`` seconds (default
    :func:`write_patience`). ``stop()`` returning true ends the waiting at once (the last
    error is raised); ``on_wait(error)`` hears of every failure that will be retried."""
    patience = write_patience() if patience is None else patience
    start = time.monotonic()
    delay = 0.25
    retried = False
    while True:
        try:
            return write()
        except StoreError as e:
            waited = time.monotonic() - start
            if not e.transient or (stop is not None and stop()):
                raise
            if waited + delay > patience:
                if not retried:                   # no patience at all: the error as it is
                    raise
                raise StoreError(f"{e} (still failing after {waited:.0f} s of retries; "
                                 f"KNI_DB_PATIENCE sets how long)", transient=True) from None
            if on_wait is not None:
                on_wait(e)
            retried = True
            until = time.monotonic() + delay
            while (left := until - time.monotonic()) > 0:
                if stop is not None and stop():
                    raise
                time.sleep(min(0.1, left))
            delay = min(2 * delay, 8.0)


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
    fields = _proc_stat(pid)             # a killed but unreaped child is a zombie: dead
    return fields is None or fields[0] != "Z"


def _proc_stat(pid: int) -> list[str] | None:
    """The fields of ``/proc/PID/stat`` from field 3 (state) on; None without /proc."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat[stat.rindex(")") + 2:].split()
    except (OSError, ValueError):
        return None


@lru_cache(maxsize=1)
def _boot_id() -> str:
    """What tells this boot from the others (the kernel's random boot id; else the boot time)."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        pass
    try:
        for line in Path("/proc/stat").read_text().splitlines():
            if line.startswith("btime "):
                return "btime-" + line.split()[1]
    except OSError:
        pass
    return "unknown-boot"


def process_start(pid: int | None) -> str | None:
    """``BOOT_ID:TICKS`` of live process ``pid`` (``TICKS``: /proc/PID/stat field 22, its start
    in clock ticks since boot); None where unknown (no /proc, no such process, a zombie).
    With the pid it names one process across reboots and pid reuse."""
    if not pid or pid <= 0:
        return None
    fields = _proc_stat(pid)
    if fields is None or len(fields) < 20 or fields[0] == "Z":
        return None
    return f"{_boot_id()}:{fields[19]}"


def process_matches(pid: int | None, start: str | None) -> bool:
    """Whether ``pid`` on this host is alive and, when ``start`` is known, the process that
    started then (not another one that got the pid after a reboot)."""
    if not pid_alive(pid):
        return False
    if start is None:
        return True                      # recorded where /proc was missing: the pid is all we have
    now = process_start(pid)
    return now is None or now == start   # None: /proc hides it (hidepid); trust the pid


# --------------------------------------------------------------------------------------------
# the ORM model (the current layout; MIGRATIONS build the same tables)


class Unreadable(str):
    """A stored value that cannot be read as its column's type (the raw value, as text).

    Only ever seen by the load hook below, which turns it into None plus a ``damage`` note."""


class UTCDateTime(TypeDecorator):
    """Timezone-aware UTC datetimes, stored naive (SQLite has no time zones).

    SQLite keeps them as text (``YYYY-MM-DD HH:MM:SS.ffffff``, the format SQLAlchemy's
    DateTime writes); they are read as text and parsed here, so one unparseable value makes
    its row damaged instead of failing the whole query."""

    impl = DateTime
    cache_ok = True

    def load_dialect_impl(self, dialect: Any) -> Any:
        return dialect.type_descriptor(String() if dialect.name == "sqlite" else DateTime())

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | str | None:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        value = value.astimezone(timezone.utc).replace(tzinfo=None)
        return value.isoformat(sep=" ", timespec="microseconds") if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Any) -> datetime | Unreadable | None:
        if value is None:
            return None
        if isinstance(value, str):
            try:
                value = datetime.fromisoformat(value.strip())
            except ValueError:
                return Unreadable(value)
        if not isinstance(value, datetime):
            return Unreadable(repr(value))
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)


class Base(DeclarativeBase):
    pass


class Meta(Base):
    __tablename__ = "meta"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class Run(Base):
    __tablename__ = "runs"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True,
                                    autoincrement=True)
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
    created_at: Mapped[datetime | None] = mapped_column(UTCDateTime)   # None only when damaged
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
    pid_start: Mapped[str | None] = mapped_column(String(80))
    # schema version 5
    note: Mapped[str | None] = mapped_column(Text)
    progress: Mapped[str | None] = mapped_column(Text)
    peak_rss_mb: Mapped[float | None] = mapped_column(Float)
    cpu_threads: Mapped[int | None] = mapped_column(Integer)
    gpu_name: Mapped[str | None] = mapped_column(String(200))
    peak_gpu_mb: Mapped[float | None] = mapped_column(Float)
    # schema version 6: sweeps
    sweep_id: Mapped[int | None] = mapped_column(Integer, index=True)
    sweep_point: Mapped[int | None] = mapped_column(Integer)
    sweep_params: Mapped[str | None] = mapped_column(Text)
    # schema version 7
    executor: Mapped[str | None] = mapped_column(String(20))            # None: a row from before it
    cancel_requested_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # schema version 8: the selected epoch's saved model (workbench.checkpoints resolves it)
    checkpoint: Mapped[str | None] = mapped_column(Text)

    #: Number of stored epoch rows; filled by the Store's queries (not a column).
    n_epochs = 0
    #: What could not be read or was out of range, one note per value (not a column).
    damage: Sequence[str] = ()
    #: The run's tags, its group's tags and its group's note (the user's annotations);
    #: filled by :meth:`Store.runs` (not columns).
    tags = ()
    group_tags = ()
    group_note = None

    @property
    def config(self) -> dict:
        return json.loads(self.config_json)

    @property
    def params(self) -> dict:
        """The swept keys and this run's point values (empty outside a sweep or when unreadable)."""
        try:
            value = json.loads(self.sweep_params) if self.sweep_params else {}
        except ValueError:
            return {}
        return value if isinstance(value, dict) else {}

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

    #: What could not be read or was out of range (not a column).
    damage: Sequence[str] = ()

    def __repr__(self) -> str:
        return f"Epoch(run_id={self.run_id}, epoch={self.epoch}, valid_auc={self.valid_auc})"


class TopK(Base):
    __tablename__ = "topk"

    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    epoch: Mapped[int] = mapped_column(Integer, primary_key=True)
    protocol: Mapped[str] = mapped_column(String(20), primary_key=True)
    users: Mapped[int] = mapped_column(Integer)
    seed: Mapped[int] = mapped_column(Integer)
    n_eval: Mapped[int] = mapped_column(Integer)
    seconds: Mapped[float | None] = mapped_column(Float)
    metrics_json: Mapped[str] = mapped_column("metrics", Text)
    created_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    @property
    def metrics(self) -> dict[str, float]:
        return json.loads(self.metrics_json)

    def __repr__(self) -> str:
        return f"TopK(run_id={self.run_id}, epoch={self.epoch}, protocol={self.protocol!r})"


class Sweep(Base):
    __tablename__ = "sweeps"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(200), index=True)
    recipe_path: Mapped[str | None] = mapped_column(Text)
    recipe_text: Mapped[str] = mapped_column(Text)
    method: Mapped[str] = mapped_column(String(40))
    spec: Mapped[str] = mapped_column(Text)
    seeds: Mapped[str] = mapped_column(Text)
    planned: Mapped[int] = mapped_column(Integer)
    prune: Mapped[str | None] = mapped_column(String(40))
    created_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    @property
    def spec_dict(self) -> dict:
        try:
            value = json.loads(self.spec)
        except ValueError:
            return {}
        return value if isinstance(value, dict) else {}

    @property
    def seed_list(self) -> list[int]:
        try:
            value = json.loads(self.seeds)
        except ValueError:
            return []
        return [int(s) for s in value] if isinstance(value, list) else []

    def __repr__(self) -> str:
        return f"Sweep(id={self.id}, name={self.name!r}, method={self.method!r})"


class SweepLog(Base):
    """One operation of Optuna's journal of a sweep's studies (see :mod:`workbench.study`)."""

    __tablename__ = "sweep_journal"

    sweep_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    log: Mapped[str] = mapped_column(Text)


# --------------------------------------------------------------------------------------------
# damaged values: checked once, when a row becomes an object

_DATES = ("created_at", "started_at", "finished_at", "heartbeat_at", "cancel_requested_at")


def metric_range(name: str) -> tuple[float, float]:
    """The valid range of a metric column (``test_auc``, ``best_valid_logloss``, ...)."""
    kind = name.rsplit("_", 1)[-1]
    return (0.0, 1.0) if kind in ("auc", "acc") else (0.0, math.inf)


def _check_values(obj: Any, metrics: Sequence[str], prefix: str) -> None:
    notes: list[str] = []
    for name in _DATES:
        value = getattr(obj, name, None)
        if isinstance(value, Unreadable):
            notes.append(f"{prefix}{name}: unreadable date {str(value)[:40]!r}")
            set_committed_value(obj, name, None)
    for name in metrics:
        value = getattr(obj, name)
        if value is None:
            continue
        lo, hi = metric_range(name)
        if not isinstance(value, (int, float)) or not (lo <= value <= hi):
            shown = f"{value:.6g}" if isinstance(value, (int, float)) else repr(value)[:40]
            notes.append(f"{prefix}{name}: {shown} is outside [{lo:g}, {hi:g}]")
            set_committed_value(obj, name, None)
    if notes:
        obj.damage = notes


@event.listens_for(Run, "load")
@event.listens_for(Run, "refresh")
def _check_run(run: Run, *args: Any) -> None:
    _check_values(run, [f"best_{f}" for f in _BEST_FIELDS], "")


@event.listens_for(Epoch, "load")
@event.listens_for(Epoch, "refresh")
def _check_epoch(epoch: Epoch, *args: Any) -> None:
    _check_values(epoch, METRIC_FIELDS, f"epoch {epoch.epoch} ")


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
    """The start of the process that owns a row, beside its pid (pids are reused)."""
    _add_column(conn, "runs", Column("pid_start", String(80)))


def _migrate_4(conn: Connection) -> None:
    """Top-N results (issue 10): one row per run, epoch and protocol, metrics as JSON."""
    md = MetaData()
    Table("runs", md, Column("id", Integer, primary_key=True))          # for the foreign key only
    Table("topk", md,
          Column("run_id", Integer, ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True),
          Column("epoch", Integer, primary_key=True),
          Column("protocol", String(20), primary_key=True),
          Column("users", Integer, nullable=False),
          Column("seed", Integer, nullable=False),
          Column("n_eval", Integer, nullable=False),
          Column("seconds", Float),
          Column("metrics", Text, nullable=False),
          Column("created_at", DateTime))
    md.tables["topk"].create(conn)


def _migrate_5(conn: Connection) -> None:
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


def _migrate_6(conn: Connection) -> None:
    """Sweeps (issue 9): the sweeps table, each run's sweep and point, and the journal of the
    sweeps' Optuna studies. The ``pruned`` status needs no change (statuses are text)."""
    _add_column(conn, "runs", Column("sweep_id", Integer))
    _add_column(conn, "runs", Column("sweep_point", Integer))
    _add_column(conn, "runs", Column("sweep_params", Text))
    conn.execute(text("CREATE INDEX ix_runs_sweep_id ON runs (sweep_id)"))
    md = MetaData()
    Table("sweeps", md,
          Column("id", Integer, primary_key=True, autoincrement=True),
          Column("name", String(200), nullable=False, index=True),
          Column("recipe_path", Text),
          Column("recipe_text", Text, nullable=False),
          Column("method", String(40), nullable=False),
          Column("spec", Text, nullable=False),
          Column("seeds", Text, nullable=False),
          Column("planned", Integer, nullable=False),
          Column("prune", String(40)),
          Column("created_at", DateTime),
          Column("finished_at", DateTime))
    Table("sweep_journal", md,
          Column("sweep_id", Integer, primary_key=True, autoincrement=False),
          Column("seq", Integer, primary_key=True, autoincrement=False),
          Column("log", Text, nullable=False))
    md.create_all(conn)


def _migrate_7(conn: Connection) -> None:
    """Runs beyond one machine: the executor of each run and a cancel request that travels
    through the row. On PostgreSQL also what SQLite gives implicitly: 64-bit ids (SQLite's
    INTEGER is 64-bit, a SERIAL is not) and unbounded text where a user's value lands (a long
    recipe name, dataset folder, hostname or CUDA_VISIBLE_DEVICES list; SQLite ignores the
    VARCHAR lengths, PostgreSQL would refuse the row)."""
    _add_column(conn, "runs", Column("executor", String(20)))
    _add_column(conn, "runs", Column("cancel_requested_at", DateTime))
    if conn.dialect.name == "postgresql":
        for table in ("epochs", "topk"):            # the columns that reference runs.id first
            conn.execute(text(f"ALTER TABLE {table} ALTER COLUMN run_id TYPE BIGINT"))
        conn.execute(text("ALTER TABLE runs ALTER COLUMN id TYPE BIGINT"))
        conn.execute(text("ALTER SEQUENCE IF EXISTS runs_id_seq AS BIGINT"))
        for column in ("recipe", "dataset", "device", "host"):
            conn.execute(text(f"ALTER TABLE runs ALTER COLUMN {column} TYPE TEXT"))
        conn.execute(text("ALTER TABLE sweeps ALTER COLUMN name TYPE TEXT"))


def _migrate_8(conn: Connection) -> None:
    """The saved model of a run (issue 11): its file, relative to the database's folder when it
    lies beside a SQLite file (so a database moved with its checkpoints still finds them)."""
    _add_column(conn, "runs", Column("checkpoint", Text))


#: (version reached, what it does, the step). Append only; never edit a released step.
MIGRATIONS: list[tuple[int, str, Callable[[Connection], None]]] = [
    (1, "first layout: meta, runs, epochs", _migrate_1),
    (2, "runs.package_version, runs.git_commit, runs.data_stats", _migrate_2),
    (3, "runs.pid_start", _migrate_3),
    (4, "topk: top-N results per run, epoch and protocol", _migrate_4),
    (5, "runs.note/progress/peak_rss_mb/cpu_threads/gpu_name/peak_gpu_mb, tables tags and notes", _migrate_5),
    (6, "sweeps: tables sweeps and sweep_journal, runs.sweep_id/sweep_point/sweep_params", _migrate_6),
    (7, "runs.executor, runs.cancel_requested_at; PostgreSQL: BIGINT ids, TEXT names", _migrate_7),
    (8, "runs.checkpoint", _migrate_8),
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
        scheme, rest = db.split("://", 1)
        if scheme in ("postgresql", "postgres"):   # SQLAlchemy's default is psycopg2; ours is psycopg 3
            return "postgresql+psycopg://" + rest
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
                          f"{_busy_timeout():g} s; raise it with KNI_DB_TIMEOUT): {first}; nothing was changed",
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


def _explain(error: BaseException, where: str) -> StoreError:
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
                          f"{_busy_timeout():g} s; raise it with KNI_DB_TIMEOUT); nothing was changed",
                          transient=True)
    if "disk is full" in low or "no space left" in low or "disk full" in low:
        return StoreError(f"{where}: the disk is full ({msg}); nothing was changed", transient=True)
    if "attempt to write a readonly database" in low:
        return StoreError(f"{where}: opened read-only; nothing was changed")
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


def _make_engine(url: str, *, immediate: bool, timeout: float, readonly: bool = False) -> Engine:
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
        if _sqlite_path(url) is None:         # in-memory: one connection shared by all sessions
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


def _readonly_sqlite_engine(path: Path, timeout: float, store_flags: dict) -> Engine:
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
            if "unable to open" not in str(e).lower():
                raise
        store_flags["snapshot"] = True
        return sqlite3.connect(uri + "?immutable=1", uri=True, timeout=timeout, check_same_thread=False)

    engine = create_engine("sqlite://", creator=connect)
    _sqlite_session_setup(engine, timeout, immediate=False)
    return engine


def _shadow_old_layout(engine: Engine) -> None:
    """Read an older layout as the current one without migrating it: on every connection,
    temporary views named like the tables (they take precedence over ``main``) add each
    column introduced since as NULL, and stand for each table introduced since as an empty one.
    Nothing is written to the database file."""
    with engine.connect() as conn:
        names = set(inspect(conn).get_table_names())
        have = {t: {c["name"] for c in inspect(conn).get_columns(t)} for t in names}
        conn.rollback()
    views = []
    for table in Base.metadata.sorted_tables:
        cols = [c.name for c in table.columns]
        present = have.get(table.name, set())
        if table.name == "meta" or set(cols) <= present:
            continue
        select_list = ", ".join(f'main.{table.name}."{c}"' if c in present else f'NULL AS "{c}"' for c in cols)
        source = f"FROM main.{table.name}" if present else "WHERE 0"       # a table added since: empty
        views.append(f"CREATE TEMP VIEW {table.name} AS SELECT {select_list} {source}")

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, record: Any) -> None:
        for sql in views:
            dbapi_conn.execute(sql)

    engine.dispose()                            # pooled connections predate the views


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
    sweep_id: int | None = None
    sweep_point: int | None = None
    sweep_params: str | None = None           # JSON


class Store:
    """The run database. ``Store.open(db)`` checks, creates or upgrades it.

    Every method opens its own short session and returns detached objects, so a Store can
    be shared by threads (the heartbeat thread of a run process) and held by a long-lived UI.
    Database errors surface as :class:`StoreError` with a readable message.
    """

    def __init__(self, url: str, reader: Engine, writer: Engine | None):
        self.url = url
        self.reader = reader
        self.writer = writer
        self._flags: dict[str, bool] = {}

    # -- opening ------------------------------------------------------------------------
    @classmethod
    def open(cls, db: str | os.PathLike | None = None, *, create: bool = True,
             timeout: float | None = None, readonly: bool = False) -> "Store":
        """Open ``db`` (URL or path; default env ``KNI_DB`` or ``runs.db``), creating it when
        ``create`` and upgrading an older layout. ``readonly``: never write (see the module
        docstring); implies ``create=False``. Raises :class:`StoreError`."""
        create = create and not readonly
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
            elif not path.stat().st_size and not create:
                raise StoreError(f"{where}: no run database here (an empty file; kni run RECIPE --db {path} "
                                 f"creates one in it)")
        t = _busy_timeout() if timeout is None else timeout
        flags: dict[str, bool] = {}
        try:
            if readonly and path is not None:
                reader = _readonly_sqlite_engine(path, t, flags)
            else:
                reader = _make_engine(url, immediate=False, timeout=t, readonly=readonly)
            # in-memory SQLite (tests, previews) lives in one connection: one engine for both
            writer: Engine | None
            if readonly:
                writer = None
            elif path is not None or make_url(url).get_backend_name() != "sqlite":
                writer = _make_engine(url, immediate=True, timeout=t)
            else:
                writer = reader
        except ImportError as e:              # the URL names a driver that is not installed
            backend = make_url(url).get_backend_name()
            hint = f"; {POSTGRES_EXTRA} installs it" if backend == "postgresql" else ""
            raise StoreError(f"--db {where}: the {backend} driver is not installed ({e}){hint}") from None
        except (ArgumentError, NoSuchModuleError) as e:
            raise StoreError(f"--db {db}: cannot use this database URL ({e})") from None
        store = cls(url, reader, writer)
        store._flags = flags
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
        if self.writer is not None:
            self.writer.dispose()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def where(self) -> str:
        return _display(self.url)

    @property
    def readonly(self) -> bool:
        """Opened with ``readonly=True``: every write raises :class:`StoreError`."""
        return self.writer is None

    @property
    def snapshot(self) -> bool:
        """Read-only SQLite read with ``immutable=1`` (its folder is not writable): changes not
        yet checkpointed from the WAL file, if any, are not seen."""
        return bool(self._flags.get("snapshot"))

    @property
    def in_memory(self) -> bool:
        """An in-memory SQLite database (usable in one process only)."""
        return make_url(self.url).get_backend_name() == "sqlite" and _sqlite_path(self.url) is None

    def schema_version(self) -> int:
        with self.reader.connect() as conn:
            return _read_version(conn, self.where)

    def _check_and_upgrade(self, create: bool) -> None:
        with self.reader.connect() as conn:
            version = _read_version(conn, self.where)
        if version > SCHEMA_VERSION:
            raise StoreError(f"{self.where}: written by a newer kni-workbench (schema version {version}; "
                             f"this one reads up to {SCHEMA_VERSION}); upgrade kni-workbench to open it")
        if version == 0 and not create:
            raise StoreError(f"{self.where}: no run database here (kni run RECIPE creates one)")
        if self.writer is None:
            if version < SCHEMA_VERSION:
                if self.reader.dialect.name != "sqlite":
                    raise StoreError(f"{self.where}: written by an older kni-workbench (schema version "
                                     f"{version}, this one uses {SCHEMA_VERSION}); a writing command "
                                     f"(kni run, kni cancel, kni rm, kni-workbench) upgrades it")
                _shadow_old_layout(self.reader)
            return
        if version < SCHEMA_VERSION:
            with self.writer.begin() as conn:          # one transaction: the steps and the version
                if conn.dialect.name == "postgresql":  # SQLite's BEGIN IMMEDIATE serialises writers
                    conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK})
                version = _read_version(conn, self.where)          # re-read under the write lock
                if version > SCHEMA_VERSION:
                    raise StoreError(f"{self.where}: written by a newer kni-workbench (schema version "
                                     f"{version}; this one reads up to {SCHEMA_VERSION})")
                for target, _what, step in MIGRATIONS:
                    if target > version:
                        step(conn)
                conn.execute(text("DELETE FROM meta WHERE key = 'schema_version'"))
                conn.execute(text("INSERT INTO meta (key, value) VALUES ('schema_version', :v)"),
                             {"v": str(SCHEMA_VERSION)})
        self._use_wal()

    def _use_wal(self) -> None:
        """Switch a SQLite file to WAL (readers never block the writer); persistent, so done
        once, by a writer, after the file proved to be a run database."""
        if _sqlite_path(self.url) is None or self.writer is None:
            return
        raw = self.writer.raw_connection()
        try:
            conn = raw.driver_connection
            if str(conn.execute("PRAGMA journal_mode").fetchone()[0]).lower() == "wal":
                return
            # The switch needs the file to itself: while other processes keep reading it (several
            # run processes and a workbench opening a new database at once) it would wait out the
            # whole busy timeout and fail the open. Try briefly; the next writer to open it switches.
            timeout = conn.execute("PRAGMA busy_timeout").fetchone()[0]
            conn.execute("PRAGMA busy_timeout = 1000")
            try:
                conn.execute("PRAGMA journal_mode = WAL")
            except sqlite3.OperationalError as e:
                if "locked" not in str(e).lower() and "busy" not in str(e).lower():
                    raise
            finally:
                conn.execute(f"PRAGMA busy_timeout = {int(timeout)}")
        finally:
            raw.close()

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
        if self.writer is None:
            raise StoreError(f"{self.where}: opened read-only; nothing was changed")
        try:
            with Session(self.writer, expire_on_commit=False) as session, session.begin():
                yield session
        except (DBAPIError, sqlite3.Error) as e:
            raise _explain(e, self.where) from None

    # -- the launcher -------------------------------------------------------------------
    def create_run(self, new: NewRun, *, pid: int | None = None, host: str | None = None,
                   executor: str = "local") -> int:
        """Insert a ``queued`` run owned by the launcher process ``pid`` (default: this one) on
        ``host`` (default: this one), to be executed by ``executor`` (one of :data:`EXECUTORS`)."""
        if executor not in EXECUTORS:
            raise ValueError(f"executor: expected one of {', '.join(EXECUTORS)}, got {executor!r}")
        now = utcnow()
        pid = pid if pid is not None else os.getpid()
        host = host or this_host()
        with self._write() as s:
            run = Run(recipe=new.recipe, recipe_path=new.recipe_path, recipe_text=new.recipe_text,
                      config_json=new.config_json, config_hash=new.config_hash, dataset=new.dataset,
                      model=new.model, seed=new.seed, device=new.device, status=QUEUED,
                      pid=pid, pid_start=process_start(pid) if host == this_host() else None, host=host,
                      created_at=now, heartbeat_at=now, max_epochs=new.max_epochs,
                      select_on=new.select_on, stopped_early=False, executor=executor,
                      package_version=new.package_version, git_commit=new.git_commit,
                      sweep_id=new.sweep_id, sweep_point=new.sweep_point, sweep_params=new.sweep_params)
            s.add(run)
            s.flush()
            return run.id

    def touch(self, run_ids: Iterable[int], statuses: Sequence[str] = LIVE) -> None:
        """Refresh the heartbeat of the given runs that are still in ``statuses``."""
        ids = _storable(run_ids)
        if not ids:
            return
        with self._write() as s:
            s.execute(update(Run).where(Run.id.in_(ids), Run.status.in_(statuses))
                      .values(heartbeat_at=utcnow()))

    # -- the run process ----------------------------------------------------------------
    def claim(self, run_id: int, pid: int, host: str) -> bool:
        """queued -> running for process ``pid`` (its start recorded with it); False if the run
        is not queued."""
        now = utcnow()
        start = process_start(pid) if host == this_host() else None
        with self._write() as s:
            result = s.execute(update(Run).where(Run.id == run_id, Run.status == QUEUED)
                               .values(status=RUNNING, pid=pid, pid_start=start, host=host, started_at=now,
                                       heartbeat_at=now))
            return result.rowcount == 1

    def record_start(self, run_id: int, device: str, data_stats: dict | None) -> None:
        with self._write() as s:
            result = s.execute(update(Run).where(Run.id == run_id).values(
                device=device, data_stats=json.dumps(data_stats, default=str) if data_stats else None,
                heartbeat_at=utcnow()))
            if result.rowcount == 0:
                raise self._gone(run_id)

    def set_checkpoint(self, run_id: int, path: str | None) -> None:
        """Record where the run's saved model is (as :func:`workbench.checkpoints.stored_form` gives it)."""
        with self._write() as s:
            if s.execute(update(Run).where(Run.id == run_id).values(checkpoint=path)).rowcount == 0:
                raise self._gone(run_id)

    def heartbeat(self, run_id: int) -> bool:
        """Refresh a running run's heartbeat; also revives a run a reader wrongly took for
        crashed (its process is evidently alive). False if the row is gone or ended."""
        with self._write() as s:
            result = s.execute(update(Run).where(Run.id == run_id, Run.status.in_((RUNNING, CRASHED)))
                               .values(heartbeat_at=utcnow(), status=RUNNING, finished_at=None, error=None))
            return result.rowcount == 1

    def request_cancel(self, run_id: int) -> bool:
        """Ask the process of running run ``run_id`` to stop (it may run on another host, where
        no signal reaches): it sees the request at its next heartbeat and ends ``cancelled``.
        False if the run is not running."""
        with self._write() as s:
            result = s.execute(update(Run).where(Run.id == run_id, Run.status == RUNNING)
                               .values(cancel_requested_at=utcnow()))
            return result.rowcount == 1

    def cancel_requested(self, run_id: int) -> bool:
        """Whether :meth:`request_cancel` asked run ``run_id`` to stop."""
        with self._read() as s:
            return s.scalar(select(Run.cancel_requested_at).where(Run.id == run_id)) is not None

    def add_epoch(self, run_id: int, result: Any, best: Any | None) -> None:
        """One commit: the epoch row, the run's best-so-far and its heartbeat. :class:`RunGone`
        if the run's row was removed.

        ``result`` and ``best`` are :class:`~kni_core.train.EpochResult` (or anything with the
        same attributes)."""
        now = utcnow()
        with self._write() as s:
            values: dict[str, Any] = {"heartbeat_at": now}
            if best is not None:
                values.update(best_epoch=best.epoch, **{f"best_{f}": _num(getattr(best, f)) for f in _BEST_FIELDS})
            if s.execute(update(Run).where(Run.id == run_id).values(**values)).rowcount == 0:
                raise self._gone(run_id)
            s.add(Epoch(run_id=run_id, epoch=result.epoch, created_at=now,
                        **{f: _num(getattr(result, f)) for f in METRIC_FIELDS}))
            _merge_topk(s, run_id, getattr(result, "topk", ()), now)

    def _gone(self, run_id: int) -> RunGone:
        return RunGone(f"run {run_id} is no longer in {self.where} (its row was removed while it ran)")

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
            if result.rowcount == 1 and best is not None:   # top-N of the selected epoch, if it ran
                _merge_topk(s, run_id, getattr(best, "topk", ()), values["finished_at"])
            return result.rowcount == 1

    def mark(self, run_id: int, status: str, reason: str, only_if: Sequence[str] = LIVE) -> bool:
        """Set a final ``status`` with ``reason`` as error, if the run is still in ``only_if``."""
        with self._write() as s:
            result = s.execute(update(Run).where(Run.id == run_id, Run.status.in_(only_if))
                               .values(status=status, error=reason, finished_at=utcnow()))
            return result.rowcount == 1

    def mark_crashed(self, run: Run, reason: str, now: datetime | None = None) -> bool:
        """``run`` (as read) -> crashed, unless its row changed since it was read (compare and
        set on status and heartbeat: a run that ended or beat meanwhile is left alone)."""
        with self._write() as s:
            cond = [Run.id == run.id, Run.status == run.status]
            cond.append(Run.heartbeat_at == run.heartbeat_at if run.heartbeat_at is not None
                        else Run.heartbeat_at.is_(None))
            result = s.execute(update(Run).where(*cond).values(status=CRASHED, error=reason,
                                                               finished_at=now or utcnow()))
            return result.rowcount == 1

    # -- readers ------------------------------------------------------------------------
    def refresh_crashed(self, stale: float | None = None, now: datetime | None = None) -> list[int]:
        """Mark live runs whose process is gone (see the module docstring) as crashed.

        Returns the ids marked now. Idempotent; safe against a run ending meanwhile. A
        read-only store writes nothing (its :meth:`runs` reports such rows as crashed); when
        the database cannot be written (locked, full) the rows stay as they are."""
        if self.readonly:
            return []
        stale = stale_seconds() if stale is None else stale
        now = now or utcnow()
        with self._read() as s:
            live = list(s.scalars(select(Run).where(Run.status.in_(LIVE))))
        marked = []
        for r in live:
            if not _looks_dead(r, now, stale):
                continue
            try:
                if self.mark_crashed(r, crash_reason(r, now, stale), now):
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
             order: str = "id", sweep: int | None = None) -> list[Run]:
        """Runs matching every given filter (``status``/``dataset``/``recipe``/``sweep`` exact,
        several statuses allowed), each with ``n_epochs`` set, ordered by id. In a read-only
        store a live row whose process is gone comes back crashed (status and error; not stored)."""
        wanted = None if not status else ([status] if isinstance(status, str) else list(status))
        count = (select(Epoch.run_id, func.count().label("n")).group_by(Epoch.run_id).subquery())
        q = select(Run, func.coalesce(count.c.n, 0)).outerjoin(count, count.c.run_id == Run.id)
        if ids is not None:
            q = q.where(Run.id.in_(_storable(ids)))
        if wanted:
            q = q.where(Run.status.in_(wanted + list(LIVE) if self.readonly and CRASHED in wanted else wanted))
        if dataset:
            q = q.where(Run.dataset == dataset)
        if recipe:
            q = q.where(Run.recipe == recipe)
        if config_hash:
            # hex; LIKE is case-sensitive on PostgreSQL
            q = q.where(Run.config_hash.startswith(config_hash.lower()))
        if sweep is not None:
            q = q.where(Run.sweep_id == sweep)
        q = q.order_by(Run.id)
        out = []
        now, stale = utcnow(), stale_seconds()
        with self._read() as s:
            for run, n in s.execute(q):
                run.n_epochs = int(n)
                if self.readonly and _looks_dead(run, now, stale):
                    set_committed_value(run, "error", run.error or crash_reason(run, now, stale))
                    set_committed_value(run, "status", CRASHED)
                if wanted and run.status not in wanted:
                    continue
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
        if not _storable([run_id]):
            return []
        with self._read() as s:
            return list(s.scalars(select(Epoch).where(Epoch.run_id == run_id, Epoch.epoch > after)
                                  .order_by(Epoch.epoch)))

    def epochs_of(self, run_ids: Iterable[int]) -> dict[int, list[Epoch]]:
        ids = list(run_ids)
        out: dict[int, list[Epoch]] = {i: [] for i in ids}
        ids = _storable(ids)
        if not ids:
            return out
        with self._read() as s:
            for chunk in range(0, len(ids), 500):
                part = ids[chunk:chunk + 500]
                for e in s.scalars(select(Epoch).where(Epoch.run_id.in_(part))
                                   .order_by(Epoch.run_id, Epoch.epoch)):
                    out[e.run_id].append(e)
        return out

    def topk(self, run_id: int) -> list[TopK]:
        """Top-N rows of ``run_id`` by epoch, ``sampled`` before ``full``."""
        return self.topk_of([run_id])[run_id]

    def topk_of(self, run_ids: Iterable[int]) -> dict[int, list[TopK]]:
        ids = list(run_ids)
        out: dict[int, list[TopK]] = {i: [] for i in ids}
        with self._read() as s:
            for chunk in range(0, len(ids), 500):
                for t in s.scalars(select(TopK).where(TopK.run_id.in_(ids[chunk:chunk + 500]))
                                   .order_by(TopK.run_id, TopK.epoch, TopK.protocol.desc())):
                    out[t.run_id].append(t)
        return out

    def missing(self, run_ids: Iterable[int]) -> list[int]:
        """The ids among ``run_ids`` that name no run (ids beyond :data:`MAX_ID` never do)."""
        ids = list(dict.fromkeys(run_ids))
        with self._read() as s:
            found = set(s.scalars(select(Run.id).where(Run.id.in_(_storable(ids)))))
        return [i for i in ids if i not in found]

    # -- sweeps -------------------------------------------------------------------------
    def create_sweep(self, *, name: str, recipe_text: str, method: str, spec: dict, seeds: Sequence[int],
                     planned: int, prune: str | None = None, recipe_path: str | None = None) -> int:
        """Insert a sweep (its runs are created with :meth:`create_run` and its id)."""
        with self._write() as s:
            sweep = Sweep(name=name, recipe_path=recipe_path, recipe_text=recipe_text, method=method,
                          spec=json.dumps(spec, sort_keys=True), seeds=json.dumps(list(seeds)),
                          planned=planned, prune=prune, created_at=utcnow())
            s.add(sweep)
            s.flush()
            return sweep.id

    def finish_sweep(self, sweep_id: int) -> None:
        """Record that the process driving the sweep has ended (whatever its runs did)."""
        with self._write() as s:
            s.execute(update(Sweep).where(Sweep.id == sweep_id).values(finished_at=utcnow()))

    def _has_sweeps(self) -> bool:
        """Whether the layout has the sweeps tables (a read-only store may read an older one)."""
        if self.writer is not None:
            return True                         # writers upgrade on open
        with self.reader.connect() as conn:
            return "sweeps" in inspect(conn).get_table_names()

    def sweeps(self, ids: Iterable[int] | None = None) -> list[Sweep]:
        """Sweeps by id (every one by default), oldest first; none in a layout without them."""
        try:
            if not self._has_sweeps():
                return []
            q = select(Sweep).order_by(Sweep.id)
            if ids is not None:
                q = q.where(Sweep.id.in_(_storable(ids)))
            with self._read() as s:
                return list(s.scalars(q))
        except (DBAPIError, sqlite3.Error) as e:
            raise _explain(e, self.where) from None

    def get_sweep(self, sweep_id: int) -> Sweep:
        """The sweep ``sweep_id``; StoreError if there is none."""
        found = self.sweeps(ids=[sweep_id])
        if not found:
            known = ", ".join(str(w.id) for w in self.sweeps()[-10:])
            raise StoreError(f"no sweep with id {sweep_id} in {self.where}"
                             + (f" (sweeps: {known}; kni sweeps lists them)" if known else " (it holds no sweep)"))
        return found[0]

    def append_journal(self, sweep_id: int, logs: Sequence[dict]) -> None:
        """Append Optuna journal operations to a sweep's journal, numbered without gaps.

        Each append takes the next numbers in one transaction; two writers that pick the same
        number collide on the primary key and the loser retries, so a reader never sees a
        later operation before an earlier one (on PostgreSQL as on SQLite)."""
        if not logs:
            return
        blobs = [json.dumps(log, separators=(",", ":")) for log in logs]
        for attempt in range(50):
            try:
                with self._write() as s:
                    top = s.scalar(select(func.max(SweepLog.seq)).where(SweepLog.sweep_id == sweep_id))
                    start = 0 if top is None else top + 1
                    s.add_all(SweepLog(sweep_id=sweep_id, seq=start + i, log=b) for i, b in enumerate(blobs))
                return
            except StoreError as e:
                if "unique" not in str(e).lower() and "duplicate" not in str(e).lower() or attempt == 49:
                    raise
                time.sleep(0.01 * (attempt + 1))

    def read_journal(self, sweep_id: int, start: int = 0) -> list[dict]:
        """A sweep's journal operations numbered ``start`` and later, in order, up to the first gap."""
        out: list[dict] = []
        with self._read() as s:
            for seq, blob in s.execute(select(SweepLog.seq, SweepLog.log)
                                       .where(SweepLog.sweep_id == sweep_id, SweepLog.seq >= start)
                                       .order_by(SweepLog.seq)):
                if seq != start + len(out):
                    break
                out.append(json.loads(blob))
        return out

    def delete(self, run_ids: Iterable[int]) -> int:
        """Delete runs and their epochs in one transaction; returns the number deleted."""
        ids = _storable(dict.fromkeys(run_ids))
        with self._write() as s:
            s.execute(delete(Epoch).where(Epoch.run_id.in_(ids)))
            s.execute(delete(TopK).where(TopK.run_id.in_(ids)))
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


def _read_version(conn: Connection, where: str) -> int:
    """The stored schema version; 0 for an empty database. StoreError for a database that
    holds other tables but is not a run database."""
    names = set(inspect(conn).get_table_names())
    if "meta" not in names:
        if names:
            raise StoreError(f"{where}: a database, but not a kni run database "
                             f"(it has tables {', '.join(sorted(names)[:5])}); give --db another file")
        return 0
    row = conn.execute(text("SELECT value FROM meta WHERE key = 'schema_version'")).fetchone()
    if row is None:
        raise StoreError(f"{where}: not a kni run database (no schema version)")
    try:
        return int(row[0])
    except ValueError:
        raise StoreError(f"{where}: unreadable schema version {row[0]!r}") from None


def _merge_topk(session: Session, run_id: int, results: Iterable[Any], now: datetime) -> None:
    """Insert or replace :class:`~kni_core.results.TopKResult` rows (one per epoch and protocol)."""
    for r in results:
        session.merge(TopK(run_id=run_id, epoch=r.epoch, protocol=r.protocol, users=r.users, seed=r.seed,
                           n_eval=r.n_eval, seconds=_num(r.seconds), created_at=now,
                           metrics_json=json.dumps({k: _num(v) for k, v in r.metrics.items()})))


def topk_to_dict(t: TopK) -> dict:
    return {"epoch": t.epoch, "protocol": t.protocol, "users": t.users, "seed": t.seed, "n_eval": t.n_eval,
            "seconds": t.seconds, "metrics": t.metrics}


def _num(x: Any) -> float | None:
    if x is None:
        return None
    x = float(x)
    return None if x != x else x           # NaN -> NULL (SQLite would do the same)


def _storable(ids: Iterable[int]) -> list[int]:
    """The ids a row can have (SQLite's integers are 64-bit; larger ones would overflow)."""
    return [i for i in ids if -MAX_ID - 1 <= i <= MAX_ID]


def _age(run: Run, now: datetime) -> float:
    ref = run.heartbeat_at or run.started_at or run.created_at
    return (now - ref).total_seconds() if ref is not None else float("inf")


def owner_alive(run: Run) -> bool | None:
    """Whether the process owning ``run``'s row lives: True/False on this host (pid and, where
    recorded, start time), None for a row of another host (cannot tell from here)."""
    if run.host != this_host():
        return None
    return process_matches(run.pid, run.pid_start)


def is_abandoned(run: Run, now: datetime | None = None, stale: float | None = None) -> bool:
    """A live row without a heartbeat for :func:`abandoned_seconds`: crashed whatever its pid says."""
    return run.status in LIVE and _age(run, now or utcnow()) >= abandoned_seconds(stale)


def _looks_dead(run: Run, now: datetime, stale: float) -> bool:
    if run.status not in LIVE or _age(run, now) < stale:
        return False
    if is_abandoned(run, now, stale):
        return True
    return owner_alive(run) is not True          # gone here, or stale on another host


def crash_reason(run: Run, now: datetime, stale: float | None = None) -> str:
    """Why a live row counts as crashed (stored as its error)."""
    age = _age(run, now)
    owner = f"pid {run.pid} on {run.host}"
    if is_abandoned(run, now, stale):
        alive = owner_alive(run)
        what = (f"it ran on {run.host}" if alive is None
                else f"pid {run.pid} exists but has not written for that long (stopped, or another process "
                     f"that got the pid)" if alive
                else f"its pid {run.pid} now belongs to another process" if pid_alive(run.pid)
                else f"its process (pid {run.pid}) is gone")
        return (f"no heartbeat for {age:.0f} s (more than {abandoned_seconds(stale):.0f} s: frozen or gone) and "
                f"{what}; no end was recorded (killed, out of memory, power cut or reboot)")
    if run.host == this_host() and pid_alive(run.pid):
        return (f"the process that owned it ({owner}) is gone: that pid now belongs to another process "
                f"(last heartbeat {age:.0f} s ago); no end was recorded (reboot or kill -9)")
    return (f"the process ({owner}) is gone and its last heartbeat was {age:.0f} s ago; no end was recorded "
            f"(killed, out of memory or power cut)")


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
        "pid": run.pid, "host": run.host, "executor": run.executor, "device": run.device,
        "config_hash": run.config_hash,
        "select_on": run.select_on, "best_epoch": run.best_epoch,
        **{f: getattr(run, f"best_{f}") for f in _BEST_FIELDS},
        "stopped_early": bool(run.stopped_early),
        "created_at": _iso(run.created_at), "started_at": _iso(run.started_at),
        "finished_at": _iso(run.finished_at), "heartbeat_at": _iso(run.heartbeat_at),
        "seconds": seconds, "error": run.error, "recipe_path": run.recipe_path,
        "package_version": run.package_version, "git_commit": run.git_commit,
        "damaged": list(run.damage),
        "tags": list(run.tags), "note": run.note, "group_tags": list(run.group_tags), "group_note": run.group_note,
        "progress": _json_or_none(run.progress) if (status or run.status) == RUNNING else None,
        **{f: getattr(run, f) for f in RESOURCE_FIELDS},
        "sweep_id": run.sweep_id, "sweep_point": run.sweep_point, "sweep_params": run.params or None,
        "checkpoint": run.checkpoint,
    }


def _json_or_none(text: str | None) -> Any:
    try:
        return json.loads(text) if text else None
    except ValueError:
        return None


def sweep_to_dict(sweep: Sweep) -> dict:
    return {"id": sweep.id, "name": sweep.name, "method": sweep.method, "planned": sweep.planned,
            "seeds": sweep.seed_list, "prune": sweep.prune, "spec": sweep.spec_dict,
            "created_at": _iso(sweep.created_at), "finished_at": _iso(sweep.finished_at),
            "recipe_path": sweep.recipe_path}


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
