"""The run database's repository: :class:`Store`, every read and write the workbench makes.

A run process writes its own rows (one commit per epoch, plus a heartbeat); ``kni runs``,
``kni show``, ``kni compare`` and ``kni export`` only read, through a store opened with
``readonly=True``, which never writes (no file created, no migration, no crash recorded).
Writers also record the crashes they find (:meth:`Store.refresh_crashed`). Readers get plain
records (:mod:`.records`). docs/storage.md describes the tables and the rules.
"""

from __future__ import annotations

import json
import os
import sqlite3
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime
from typing import Any, Iterable, Iterator, Sequence

from sqlalchemy import delete, func, select, update
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError, SQLAlchemyError
from sqlalchemy.orm import Session

from .annotations import Annotations
from .attempts import Attempts
from .engine import (
    POSTGRES_EXTRA,
    busy_timeout,
    display,
    explain,
    has_sqlite_header,
    make_engine,
    readonly_sqlite_engine,
    resolve_url,
    sqlite_path,
)
from .errors import RunGone, StoreError, Superseded
from .liveness import (
    crash_reason,
    effective_status,
    looks_dead,
    process_start,
    stale_seconds,
    this_host,
)
from .migrations import SCHEMA_VERSION, read_version, shadow_old_layout, upgrade
from .records import (
    BEST_FIELDS,
    EXECUTORS,
    METRIC_FIELDS,
    RESOURCE_FIELDS,
    AttemptKey,
    Epoch,
    NewRun,
    Owner,
    Run,
    TopK,
    Unreadable,
    epoch_record,
    group_target,
    run_record,
    run_target,
    storable,
    utcnow,
)
from .schema import AttemptRow, EpochRow, FloorRow, RunRow, TagRow, TopKRow
from .statuses import CRASHED, FINAL, LIVE, QUEUED, RUNNING
from .sweep_records import SweepRecords

RUNS, EPOCHS, TOPK = RunRow.__table__, EpochRow.__table__, TopKRow.__table__


class Store(Annotations, Attempts, SweepRecords):
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
        ``create`` and upgrading an older layout. ``readonly``: never write (see
        the module docstring); implies ``create=False``. Raises :class:`StoreError`."""
        create = create and not readonly
        url = resolve_url(db)
        where = display(url)
        try:
            path = sqlite_path(url)
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
            elif path.stat().st_size and not has_sqlite_header(path):
                raise StoreError(f"{where}: not a SQLite database (give --db a runs.db file or a "
                                 f"SQLAlchemy URL)")
            elif not path.stat().st_size and not create:
                raise StoreError(f"{where}: no run database here (an empty file; kni run RECIPE --db {path} "
                                 f"creates one in it)")
        t = busy_timeout() if timeout is None else timeout
        flags: dict[str, bool] = {}
        try:
            if readonly and path is not None:
                reader = readonly_sqlite_engine(path, t, flags)
            else:
                reader = make_engine(url, immediate=False, timeout=t, readonly=readonly)
            # in-memory SQLite (tests, previews) lives in one connection: one engine for both
            writer: Engine | None
            if readonly:
                writer = None
            elif path is not None or make_url(url).get_backend_name() != "sqlite":
                writer = make_engine(url, immediate=True, timeout=t)
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
            raise explain(e, where) from None
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
        return display(self.url)

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
        return make_url(self.url).get_backend_name() == "sqlite" and sqlite_path(self.url) is None

    def schema_version(self) -> int:
        with self.reader.connect() as conn:
            return read_version(conn, self.where)

    def _check_and_upgrade(self, create: bool) -> None:
        with self.reader.connect() as conn:
            version = read_version(conn, self.where)
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
                shadow_old_layout(self.reader)
            return
        if version < SCHEMA_VERSION:
            upgrade(self.writer, self.where)
        self._use_wal()

    def _use_wal(self) -> None:
        """Switch a SQLite file to WAL (readers never block the writer); persistent, so done
        once, by a writer, after the file proved to be a run database."""
        if sqlite_path(self.url) is None or self.writer is None:
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
            raise explain(e, self.where) from None

    @contextmanager
    def _write(self) -> Iterator[Session]:
        if self.writer is None:
            raise StoreError(f"{self.where}: opened read-only; nothing was changed")
        try:
            with Session(self.writer, expire_on_commit=False) as session, session.begin():
                yield session
        except (DBAPIError, sqlite3.Error) as e:
            raise explain(e, self.where) from None

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
            run = RunRow(recipe=new.recipe, recipe_path=new.recipe_path, recipe_text=new.recipe_text,
                      config_json=new.config_json, config_hash=new.config_hash, dataset=new.dataset,
                      model=new.model, seed=new.seed, device=new.device, status=QUEUED,
                      pid=pid, pid_start=process_start(pid) if host == this_host() else None, host=host,
                      created_at=now, heartbeat_at=now, max_epochs=new.max_epochs,
                      select_on=new.select_on, stopped_early=False, executor=executor,
                      package_version=new.package_version, git_commit=new.git_commit,
                      provenance=new.provenance, sweep_id=new.sweep_id, sweep_point=new.sweep_point,
                      sweep_params=new.sweep_params)
            s.add(run)
            s.flush()
            return run.id

    def touch(self, run_ids: Iterable[int], statuses: Sequence[str] = LIVE) -> None:
        """Refresh the heartbeat of the given runs that are still in ``statuses``."""
        ids = storable(run_ids)
        if not ids:
            return
        with self._write() as s:
            s.execute(update(RunRow).where(RunRow.id.in_(ids), RunRow.status.in_(statuses))
                      .values(heartbeat_at=utcnow()))

    # -- the run process ----------------------------------------------------------------
    def claim(self, run_id: int, pid: int, host: str) -> Owner | None:
        """queued -> running for process ``pid`` (its start recorded with it): the
        :class:`Owner` its later writes pass (``owner=``); None if the run is not queued."""
        now = utcnow()
        start = process_start(pid) if host == this_host() else None
        with self._write() as s:
            result = s.execute(update(RunRow).where(RunRow.id == run_id, RunRow.status == QUEUED)
                               .values(status=RUNNING, pid=pid, pid_start=start, host=host, started_at=now,
                                       heartbeat_at=now))
            return Owner(pid, host, now) if result.rowcount == 1 else None

    # Every write of a run process passes its Owner: the owner is part of the UPDATE's WHERE
    # (no extra query while it matches); only a write that matched no row asks why. The pid and
    # the claim's time (microseconds) name one attempt; the host adds nothing to that.
    @staticmethod
    def _owned(run_id: int, owner: Owner | None) -> list:
        cond = [RunRow.id == run_id]
        if owner is not None:
            cond += [RunRow.pid == owner.pid, RunRow.started_at == owner.started_at]
        return cond

    def _not_ours(self, s: Session, run_id: int, owner: Owner | None) -> None:
        """After a write matched no row: :class:`RunGone` if the row is gone, :class:`Superseded`
        if another attempt owns it; returns when it is ``owner``'s (its status did not match)."""
        row = s.execute(select(RunRow.status, RunRow.pid, RunRow.host, RunRow.started_at)
                        .where(RunRow.id == run_id)).first()
        if row is None:
            raise self._gone(run_id)
        if owner is not None and (row.pid, row.started_at) != (owner.pid, owner.started_at):
            now = (f"pid {row.pid} on {row.host}, claimed at {row.started_at:%Y-%m-%d %H:%M:%S}"
                   if row.started_at is not None and not isinstance(row.started_at, Unreadable)
                   else "no process yet")
            raise Superseded(f"run {run_id} in {self.where} belongs to another attempt now ({row.status}: {now}); "
                             f"this process ({owner}) was superseded while it was stopped or cut off (kni resume, "
                             f"or the id reused after kni rm) and writes nothing more")

    def check_owner(self, run_id: int, owner: Owner | None) -> None:
        """:class:`Superseded` (or RunGone) unless ``owner`` still owns the run: asked before a run
        process replaces one of the run's files, which the database's owner check cannot guard."""
        with self._read() as s:
            self._not_ours(s, run_id, owner)

    def record_start(self, run_id: int, device: str, data_stats: dict | None,
                     provenance: dict | None = None, owner: Owner | None = None) -> None:
        """The run process's start: its device, the data's statistics, and the provenance it
        adds to the code's recorded at queue time (its environment and data: a resumed run's
        latest attempt)."""
        with self._write() as s:
            values: dict = {"device": device, "heartbeat_at": utcnow(),
                            "data_stats": json.dumps(data_stats, default=str) if data_stats else None}
            if provenance:
                stored = s.scalar(select(RunRow.provenance).where(RunRow.id == run_id))
                try:
                    merged = json.loads(stored) if stored else {}
                except ValueError:                   # a damaged value: the new facts replace it
                    merged = {}
                values["provenance"] = json.dumps({**(merged if isinstance(merged, dict) else {}), **provenance},
                                                  sort_keys=True)
            result = s.execute(update(RunRow).where(*self._owned(run_id, owner)).values(**values))
            if result.rowcount == 0:
                self._not_ours(s, run_id, owner)

    def set_checkpoint(self, run_id: int, path: str | None, owner: Owner | None = None) -> None:
        """Record where the run's saved model is (as :func:`workbench.runs.checkpoints.stored_form` gives it)."""
        with self._write() as s:
            if s.execute(update(RunRow).where(*self._owned(run_id, owner)).values(checkpoint=path)).rowcount == 0:
                self._not_ours(s, run_id, owner)

    def heartbeat(self, run_id: int, owner: Owner | None = None) -> bool:
        """Refresh a running run's heartbeat; also revives a run a reader wrongly took for
        crashed (its process, ``owner``, is evidently alive: never a row another attempt owns).
        False if the run ended; :class:`RunGone` if its row is gone, :class:`Superseded` if it
        is another attempt's."""
        with self._write() as s:
            result = s.execute(update(RunRow).where(*self._owned(run_id, owner),
                                                    RunRow.status.in_((RUNNING, CRASHED)))
                               .values(heartbeat_at=utcnow(), status=RUNNING, finished_at=None, error=None))
            if result.rowcount == 0:
                self._not_ours(s, run_id, owner)
            return result.rowcount == 1

    def request_cancel(self, run_id: int) -> bool:
        """Ask the process of running run ``run_id`` to stop (it may run on another host, where
        no signal reaches): it sees the request at its next heartbeat and ends ``cancelled``.
        False if the run is not running."""
        with self._write() as s:
            result = s.execute(update(RunRow).where(RunRow.id == run_id, RunRow.status == RUNNING)
                               .values(cancel_requested_at=utcnow()))
            return result.rowcount == 1

    def cancel_requested(self, run_id: int) -> bool:
        """Whether :meth:`request_cancel` asked run ``run_id`` to stop."""
        with self._read() as s:
            return s.scalar(select(RunRow.cancel_requested_at).where(RunRow.id == run_id)) is not None

    def add_epoch(self, run_id: int, result: Any, best: Any | None, owner: Owner | None = None) -> None:
        """One commit: the epoch row, the run's best-so-far and its heartbeat. :class:`RunGone`
        if the run's row was removed, :class:`Superseded` if another attempt owns it (nothing written).

        ``result`` and ``best`` are :class:`~kni_core.train.EpochResult` (or anything with the
        same attributes)."""
        now = utcnow()
        with self._write() as s:
            values: dict[str, Any] = {"heartbeat_at": now}
            if best is not None:
                values.update(_best_values(best))
            if s.execute(update(RunRow).where(*self._owned(run_id, owner)).values(**values)).rowcount == 0:
                self._not_ours(s, run_id, owner)
            s.add(EpochRow(run_id=run_id, epoch=result.epoch, created_at=now,
                        **{f: _num(getattr(result, f)) for f in METRIC_FIELDS}))
            _merge_topk(s, run_id, getattr(result, "topk", ()), now)

    def _gone(self, run_id: int) -> RunGone:
        return RunGone(f"run {run_id} is no longer in {self.where} (its row was removed while it ran)")

    def finish(self, run_id: int, status: str, *, error: str | None = None, traceback: str | None = None,
               best: Any | None = None, stopped_early: bool | None = None, owner: Owner | None = None) -> bool:
        """Record the end of a run (only if it has not ended already; with ``owner``, only
        into that process's row: :class:`Superseded` if another attempt owns it)."""
        if status not in FINAL:
            raise ValueError(f"not a final status: {status}")
        values: dict[str, Any] = {"status": status, "finished_at": utcnow(), "error": error,
                                  "traceback": traceback}
        if best is not None:
            values.update(_best_values(best))
        if stopped_early is not None:
            values["stopped_early"] = stopped_early
        with self._write() as s:
            result = s.execute(update(RunRow).where(*self._owned(run_id, owner),
                                                    RunRow.status.in_(LIVE + (CRASHED,))).values(**values))
            if result.rowcount == 0 and owner is not None:
                self._not_ours(s, run_id, owner)
            if result.rowcount == 1 and best is not None:   # top-N of the selected epoch, if it ran
                _merge_topk(s, run_id, getattr(best, "topk", ()), values["finished_at"])
            return result.rowcount == 1

    def mark(self, run_id: int, status: str, reason: str, only_if: Sequence[str] = LIVE,
             attempt: AttemptKey | None = None) -> bool:
        """Set a final ``status`` with ``reason`` as error, if the run is still in ``only_if``
        (and, with ``attempt``, still at that attempt of that run: see :meth:`attempt_key`)."""
        cond = [RunRow.id == run_id, RunRow.status.in_(only_if)]
        if attempt is not None:
            if attempt.created_at is not None:
                cond.append(RunRow.created_at == attempt.created_at)
            ended = select(func.count()).select_from(AttemptRow).where(AttemptRow.run_id == run_id)
            cond.append(ended.scalar_subquery() == attempt.number - 1)
        with self._write() as s:
            result = s.execute(update(RunRow).where(*cond).values(status=status, error=reason, finished_at=utcnow()))
            return result.rowcount == 1

    def attempt_key(self, run_id: int) -> AttemptKey | None:
        """The run's current attempt (None if there is no such run): what a launcher keeps of
        the run it starts, so that it never ends an attempt it did not start."""
        with self._read() as s:
            row = s.execute(select(RunRow.created_at).where(RunRow.id == run_id)).first()
            if row is None:
                return None
            ended = s.scalar(select(func.count()).select_from(AttemptRow).where(AttemptRow.run_id == run_id))
        created = row.created_at if isinstance(row.created_at, datetime) else None
        return AttemptKey(created, int(ended or 0) + 1)

    def mark_crashed(self, run: Run, reason: str, now: datetime | None = None) -> bool:
        """``run`` (as read) -> crashed, unless its row changed since it was read (compare and
        set on status and heartbeat: a run that ended or beat meanwhile is left alone)."""
        with self._write() as s:
            cond = [RunRow.id == run.id, RunRow.status == run.status]
            if run.heartbeat_at is not None:
                cond.append(RunRow.heartbeat_at == run.heartbeat_at)
            else:
                # NULL or damaged (read as None, stored as unreadable text, which IS NULL never
                # matches): read it again inside this write transaction (SQLite's BEGIN
                # IMMEDIATE holds the write lock; on PostgreSQL the row is locked). A process
                # that beat meanwhile wrote a readable time.
                beat = s.scalar(select(RunRow.heartbeat_at).where(RunRow.id == run.id).with_for_update())
                if isinstance(beat, datetime):
                    return False
            result = s.execute(update(RunRow).where(*cond).values(status=CRASHED, error=reason,
                                                               finished_at=now or utcnow()))
            return result.rowcount == 1

    # -- readers ------------------------------------------------------------------------
    def refresh_crashed(self, stale: float | None = None, now: datetime | None = None) -> list[int]:
        """Mark live runs whose process is gone (the rules of :mod:`.liveness`) as crashed.

        Returns the ids marked now. Idempotent; safe against a run ending meanwhile. A
        read-only store writes nothing (its :meth:`runs` reports such rows as crashed); when
        the database cannot be written (locked, full) the rows stay as they are."""
        if self.readonly:
            return []
        stale = stale_seconds() if stale is None else stale
        now = now or utcnow()
        with self._read() as s:
            live = [run_record(row) for row in s.execute(select(RUNS).where(RUNS.c.status.in_(LIVE))).mappings()]
        marked = []
        for r in live:
            if not looks_dead(r, now, stale):
                continue
            try:
                if self.mark_crashed(r, crash_reason(r, now, stale), now):
                    marked.append(r.id)
            except StoreError:
                break
        return marked

    #: The status a reader should show: a live row whose process is gone is crashed.
    effective_status = staticmethod(effective_status)

    def runs(self, *, ids: Iterable[int] | None = None, status: Iterable[str] | str | None = None,
             dataset: str | None = None, recipe: str | None = None, config_hash: str | None = None,
             order: str = "id", sweep: int | None = None) -> list[Run]:
        """Runs matching every given filter (``status``/``dataset``/``recipe``/``sweep`` exact,
        several statuses allowed), each with ``n_epochs`` set, ordered by id. In a read-only
        store a live row whose process is gone comes back crashed (status and error; not stored)."""
        wanted = None if not status else ([status] if isinstance(status, str) else list(status))
        count = (select(EpochRow.run_id, func.count().label("n")).group_by(EpochRow.run_id).subquery())
        q = select(RUNS, func.coalesce(count.c.n, 0).label("n_epochs")).outerjoin(count, count.c.run_id == RUNS.c.id)
        if ids is not None:
            q = q.where(RunRow.id.in_(storable(ids)))
        if wanted:
            q = q.where(RunRow.status.in_(wanted + list(LIVE) if self.readonly and CRASHED in wanted else wanted))
        if dataset:
            q = q.where(RunRow.dataset == dataset)
        if recipe:
            q = q.where(RunRow.recipe == recipe)
        if config_hash:
            # hex; LIKE is case-sensitive on PostgreSQL
            q = q.where(RunRow.config_hash.startswith(config_hash.lower()))
        if sweep is not None:
            q = q.where(RunRow.sweep_id == sweep)
        q = q.order_by(RunRow.id)
        now, stale = utcnow(), stale_seconds()
        with self._read() as s:
            rows = list(s.execute(q).mappings())
        tags, notes, ended = (self.tags(), self.group_notes(), self.ended_attempts()) if rows else ({}, {}, {})
        out = []
        for row in rows:
            group = group_target(row["config_hash"])
            run = run_record(row, n_epochs=int(row["n_epochs"]), tags=tuple(tags.get(run_target(row["id"]), ())),
                             group_tags=tuple(tags.get(group, ())), group_note=notes.get(group),
                             earlier_seconds=sum(a.seconds or 0.0 for a in ended.get(row["id"], ())))
            if self.readonly and looks_dead(run, now, stale):
                run = replace(run, status=CRASHED, error=run.error or crash_reason(run, now, stale))
            if not wanted or run.status in wanted:
                out.append(run)
        return out

    def get(self, run_id: int) -> Run:
        """The run ``run_id``; StoreError if there is none."""
        found = self.runs(ids=[run_id])
        if not found:
            raise StoreError(f"no run with id {run_id} in {self.where} (kni runs lists them)")
        return found[0]

    def epochs(self, run_id: int, after: int = 0) -> list[Epoch]:
        """Epoch rows of ``run_id`` with ``epoch > after``, in order."""
        if not storable([run_id]):
            return []
        with self._read() as s:
            return [epoch_record(row) for row in s.execute(
                select(EPOCHS).where(EPOCHS.c.run_id == run_id, EPOCHS.c.epoch > after)
                .order_by(EPOCHS.c.epoch)).mappings()]

    def epochs_of(self, run_ids: Iterable[int]) -> dict[int, list[Epoch]]:
        ids = list(run_ids)
        out: dict[int, list[Epoch]] = {i: [] for i in ids}
        ids = storable(ids)
        if not ids:
            return out
        with self._read() as s:
            for chunk in range(0, len(ids), 500):
                part = ids[chunk:chunk + 500]
                for row in s.execute(select(EPOCHS).where(EPOCHS.c.run_id.in_(part))
                                     .order_by(EPOCHS.c.run_id, EPOCHS.c.epoch)).mappings():
                    out[row["run_id"]].append(epoch_record(row))
        return out

    def topk(self, run_id: int) -> list[TopK]:
        """Top-N rows of ``run_id`` by epoch, ``sampled`` before ``full``."""
        return self.topk_of([run_id])[run_id]

    def topk_of(self, run_ids: Iterable[int]) -> dict[int, list[TopK]]:
        ids = list(run_ids)
        out: dict[int, list[TopK]] = {i: [] for i in ids}
        with self._read() as s:
            for chunk in range(0, len(ids), 500):
                rows = s.execute(select(TOPK).where(TOPK.c.run_id.in_(ids[chunk:chunk + 500]))
                                 .order_by(TOPK.c.run_id, TOPK.c.epoch, TOPK.c.protocol.desc())).mappings()
                for row in rows:
                    values = dict(row)
                    out[row["run_id"]].append(TopK(metrics_json=values.pop("metrics"), **values))
        return out

    def missing(self, run_ids: Iterable[int]) -> list[int]:
        """The ids among ``run_ids`` that name no run (ids beyond :data:`MAX_ID` never do)."""
        ids = list(dict.fromkeys(run_ids))
        with self._read() as s:
            found = set(s.scalars(select(RunRow.id).where(RunRow.id.in_(storable(ids)))))
        return [i for i in ids if i not in found]

    def delete(self, run_ids: Iterable[int]) -> int:
        """Delete runs and their epochs in one transaction; returns the number deleted."""
        ids = storable(dict.fromkeys(run_ids))
        with self._write() as s:
            s.execute(delete(EpochRow).where(EpochRow.run_id.in_(ids)))
            s.execute(delete(TopKRow).where(TopKRow.run_id.in_(ids)))
            s.execute(delete(AttemptRow).where(AttemptRow.run_id.in_(ids)))
            s.execute(delete(TagRow).where(TagRow.target.in_([run_target(i) for i in ids])))  # ids can be reused
            return s.execute(delete(RunRow).where(RunRow.id.in_(ids))).rowcount

    # -- the run process: progress and resources ----------------------------------------
    def record_progress(self, run_id: int, progress: dict | None = None,
                        resources: dict | None = None, owner: Owner | None = None) -> bool:
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
            result = s.execute(update(RunRow).where(*self._owned(run_id, owner), RunRow.status == RUNNING)
                               .values(**values))
            if result.rowcount == 0 and owner is not None:
                self._not_ours(s, run_id, owner)
            return result.rowcount == 1

    # -- floors: the popularity floor of each split (kni_core.floor) ------------------------
    def floors(self) -> dict[str, dict]:
        """``{split key: {"dataset", "metrics"}}`` of every stored floor."""
        with self._read() as s:
            return {key: {"dataset": dataset, "metrics": json.loads(metrics)}
                    for key, dataset, metrics in s.execute(select(FloorRow.key, FloorRow.dataset,
                                                                  FloorRow.metrics_json))}

    def save_floor(self, key: str, dataset: str, metrics: dict) -> None:
        """Store a split's floor once; a later one for the same split only adds what the stored
        one lacks (the strata, for a floor stored before they were measured; user buckets of
        other edges)."""
        from kni_core.floor import merge_strata
        clean = {k: v if isinstance(v, dict) else _num(v) for k, v in metrics.items()}
        with self._write() as s:
            row = s.get(FloorRow, key)
            if row is None:
                s.add(FloorRow(key=key, dataset=dataset, created_at=utcnow(), metrics_json=json.dumps(clean)))
                return
            stored = json.loads(row.metrics_json)
            merged = {**clean, **stored}
            if isinstance(stored.get("strata"), dict) and isinstance(clean.get("strata"), dict):
                merged["strata"] = merge_strata(stored["strata"], clean["strata"])
            if merged != stored:
                row.metrics_json = json.dumps(merged)


def _best_values(best: Any) -> dict[str, Any]:
    """The run's columns of its selected epoch: its number, metrics and (when measured) strata."""
    values: dict[str, Any] = {"best_epoch": best.epoch, **{f"best_{f}": _num(getattr(best, f)) for f in BEST_FIELDS}}
    if getattr(best, "strata", None) is not None:
        values["strata"] = json.dumps(best.strata, default=_num)
    return values


def _merge_topk(session: Session, run_id: int, results: Iterable[Any], now: datetime) -> None:
    """Insert or replace :class:`~kni_core.results.TopKResult` rows (one per epoch and protocol)."""
    for r in results:
        session.merge(TopKRow(run_id=run_id, epoch=r.epoch, protocol=r.protocol, users=r.users, seed=r.seed,
                              n_eval=r.n_eval, seconds=_num(r.seconds), created_at=now,
                              metrics_json=json.dumps({k: _num(v) for k, v in r.metrics.items()})))


def _num(x: Any) -> float | None:
    if x is None:
        return None
    x = float(x)
    return None if x != x else x           # NaN -> NULL (SQLite would do the same)
