"""The run database: rows, WAL, crash detection, migrations and bad input, on SQLite and
PostgreSQL (the ``db_url`` fixture; ``db`` is a SQLite file for what only SQLite has)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import replace
from datetime import timedelta

import pytest
from sqlalchemy import create_engine, inspect, text
from typer.testing import CliRunner

from kni_core.train import EpochResult
from workbench.cli import app
from workbench.recipe import parse_recipe
from workbench.runs.provenance import Code
from workbench.runs.rows import new_run
from workbench.store import engine as store_engine, errors, liveness, migrations
from workbench.store.errors import StoreError
from workbench.store.records import utcnow
from workbench.store.repository import Store
from workbench.store.schema import Base
from workbench.store.statuses import (
    CANCELLED,
    COMPLETED,
    CRASHED,
    FAILED,
    QUEUED,
    RUNNING,
)

RECIPE = """\
name: tiny
dataset: {name: synthetic, min_relation_triples: 1, synthetic: {preset: tiny}}
model: {hop_n_sample: [1, 4], max_degree: 16}
train: {epochs: 3}
eval: {n_eval: 2}
device: cpu
"""


@pytest.fixture
def db(tmp_path):
    return str(tmp_path / "runs.db")


def queued(store: Store, seed: int = 1) -> int:
    rec = parse_recipe(RECIPE)
    return store.create_run(new_run(rec.name, rec.text, rec.config_for(seed), prov=Code()))


def result(epoch: int, auc: float = 0.7) -> EpochResult:
    return EpochResult(1, epoch, 0.5, auc, 0.6, 0.65, auc - 0.01, 0.61, float("nan"), 1.0, 0.5)


def sha(path) -> str:
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def sqlite_backend(db: str) -> bool:
    return not db.startswith("postgresql")


def test_rows_and_wal(db_url):
    with Store.open(db_url) as store:
        run_id = queued(store)
        run = store.get(run_id)
        assert (run.status, run.pid, run.seed, run.recipe, run.dataset, run.model, run.executor) == \
               (QUEUED, os.getpid(), 1, "tiny", "synthetic-tiny", "KNI", "local")
        assert run.config["train"]["epochs"] == 3 and "name: tiny" in run.recipe_text
        assert store.claim(run_id, 4242, "h") and not store.claim(run_id, 4243, "h")
        store.add_epoch(run_id, result(1, 0.7), result(1, 0.7))
        store.add_epoch(run_id, result(2, 0.6), result(1, 0.7))
        run = store.get(run_id)
        assert (run.status, run.pid, run.n_epochs, run.best_epoch, run.best_valid_auc) == (RUNNING, 4242, 2, 1, 0.7)
        e = store.epochs(run_id)
        assert [x.epoch for x in e] == [1, 2] and e[0].test_acc is None        # NaN is stored as NULL
        assert [x.epoch for x in store.epochs(run_id, after=1)] == [2]
        assert store.finish(run_id, COMPLETED, best=result(1, 0.7), stopped_early=True)
        assert not store.finish(run_id, FAILED, error="late")                  # the first end wins
        run = store.get(run_id)
        assert run.status == COMPLETED and run.stopped_early and run.error is None and run.finished_at
        assert store.runs(status=COMPLETED, recipe="tiny", dataset="synthetic-tiny")[0].id == run_id
        assert store.runs(status=[FAILED]) == []
        assert store.schema_version() == migrations.SCHEMA_VERSION
    if sqlite_backend(db_url):
        con = sqlite3.connect(db_url)
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        con.close()


def test_crash_detection(db_url):
    with Store.open(db_url) as store:
        gone, alive, remote, fresh = (queued(store, s) for s in (1, 2, 3, 4))
        store.claim(gone, dead_pid(), liveness.this_host())
        store.claim(alive, os.getpid(), liveness.this_host())
        store.claim(remote, os.getpid(), "another-host")
        store.claim(fresh, dead_pid(), liveness.this_host())
        store.add_epoch(gone, result(1), result(1))
        later = utcnow() + timedelta(seconds=31)
        # fresh heartbeats: nothing is crashed yet, whatever the pids
        assert store.refresh_crashed() == []
        # 31 s later: a dead pid here or any run on another host is crashed; a live pid is not
        marked = store.refresh_crashed(now=later)
        assert sorted(marked) == sorted([gone, remote, fresh])
        assert store.refresh_crashed(now=later) == []                        # idempotent
        got = {r.id: r for r in store.runs()}
        assert got[alive].status == RUNNING
        assert got[gone].status == CRASHED and "gone" in got[gone].error and got[gone].n_epochs == 1
        # a crashed run whose process is in fact alive revives on its next heartbeat
        assert store.heartbeat(remote) and store.get(remote).status == RUNNING
        # an end written after a reader read the row is never overwritten
        store.finish(alive, COMPLETED)
        assert store.refresh_crashed(now=later + timedelta(hours=1)) == [remote]
        assert store.get(alive).status == COMPLETED
        assert Store.effective_status(store.get(alive)) == COMPLETED


def test_migration_from_first_version(db_url):
    url = store_engine.resolve_url(db_url)
    engine = create_engine(url)
    with engine.begin() as conn:                    # a database as version 1 wrote it
        migrations.MIGRATIONS[0][2](conn)
        conn.execute(text("INSERT INTO meta VALUES ('schema_version', '1')"))
        conn.execute(text(
            "INSERT INTO runs (recipe, recipe_text, config_json, config_hash, dataset, model, seed, device, "
            "status, created_at, max_epochs, select_on, stopped_early, best_epoch, best_test_auc) VALUES "
            "('old', 'name: old', '{}', 'abc', 'bc', 'KNI', 3, 'cpu', 'completed', '2024-01-01 00:00:00', 5, "
            "'valid', false, 2, 0.75)"))
        conn.execute(text("INSERT INTO epochs (run_id, epoch, test_auc) VALUES (1, 1, 0.7), (1, 2, 0.75)"))
    cols_v1 = {c["name"] for c in inspect(engine).get_columns("runs")}
    engine.dispose()
    assert "git_commit" not in cols_v1
    with Store.open(db_url) as store:
        assert store.schema_version() == migrations.SCHEMA_VERSION == migrations.MIGRATIONS[-1][0]
        run = store.get(1)
        assert (run.recipe, run.seed, run.best_test_auc, run.n_epochs, run.git_commit, run.pid_start,
                run.executor) == ("old", 3, 0.75, 2, None, None, None)
        assert (run.sweep_id, run.sweep_point, run.params) == (None, None, {}) and store.sweeps() == []
        assert run.created_at.year == 2024 and run.created_at.tzinfo is not None
        new = queued(store)                          # the new columns are usable
        assert store.get(new).executor == "local" and new == 2      # the id sequence goes on
    # the upgraded layout is the ORM's layout
    engine = create_engine(url)
    insp = inspect(engine)
    for table in Base.metadata.sorted_tables:
        assert {c["name"] for c in insp.get_columns(table.name)} == {c.name for c in table.columns}, table.name
    if not sqlite_backend(db_url):                  # what SQLite has implicitly: 64-bit ids, unbounded text
        types = {c["name"]: str(c["type"]) for c in insp.get_columns("runs")}
        assert types["id"] == "BIGINT" and types["recipe"] == types["device"] == "TEXT"
        assert {c["name"]: str(c["type"]) for c in insp.get_columns("epochs")}["run_id"] == "BIGINT"
    engine.dispose()
    with Store.open(db_url) as store:               # a name longer than any VARCHAR of version 1
        rec = parse_recipe(RECIPE.replace("name: tiny", "name: " + "x" * 300))
        long = store.create_run(new_run(rec.name, rec.text, rec.config_for(1), prov=Code()),
                                host="h" * 300)
        assert store.get(long).recipe == "x" * 300


def test_refuses_bad_databases(tmp_path):
    newer = tmp_path / "newer.db"
    with Store.open(newer) as store:
        queued(store)
    con = sqlite3.connect(newer)
    con.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    con.commit()
    con.close()
    before = sha(newer)
    with pytest.raises(StoreError, match="newer kni-workbench"):
        Store.open(newer)
    assert sha(newer) == before

    junk = tmp_path / "notes.txt"
    junk.write_text("not a database\n" * 10)
    with pytest.raises(StoreError, match="not a SQLite database"):
        Store.open(junk)
    assert junk.read_text() == "not a database\n" * 10

    other = tmp_path / "other.db"
    con = sqlite3.connect(other)
    con.execute("CREATE TABLE things (x)")
    con.commit()
    con.close()
    with pytest.raises(StoreError, match="not a kni run database"):
        Store.open(other)

    with pytest.raises(StoreError, match="no run database"):
        Store.open(tmp_path / "missing.db", create=False)
    assert not (tmp_path / "missing.db").exists()
    with pytest.raises(StoreError, match="folder"):
        Store.open(tmp_path)


def test_locked_database(db):
    with Store.open(db) as store:
        run_id = queued(store)
    con = sqlite3.connect(db, isolation_level=None)
    con.execute("BEGIN IMMEDIATE")                  # another writer holds the lock
    try:
        locked = Store.open(db, timeout=0.2)
        assert locked.get(run_id).id == run_id       # WAL: readers still read
        with pytest.raises(StoreError, match="locked"):
            locked.delete([run_id])
        locked.close()
    finally:
        con.execute("ROLLBACK")
        con.close()
    with Store.open(db) as store:
        assert store.get(run_id).status == QUEUED


def test_cli_errors_leave_runs_untouched(tmp_path, monkeypatch):
    db = str(tmp_path / "runs.db")
    with Store.open(db) as store:
        run_id = queued(store)
        store.claim(run_id, dead_pid(), liveness.this_host())
        store.finish(run_id, CANCELLED, error="cancelled by SIGINT")
    before = sha(db)
    runner = CliRunner()
    recipe = tmp_path / "r.yaml"
    recipe.write_text(RECIPE)
    cases = [
        (["show", "42", "--db", db], "no run with id 42"),
        (["rm", "42", str(run_id), "--yes", "--db", db], "no run with id 42"),
        (["run", str(recipe), "--set", "train.epochz=3", "--db", db], "did you mean"),
        (["run", str(recipe), "--set", "train.epochs", "--db", db], "--set"),
        (["runs", "--status", "sleeping", "--db", db], "--status"),
        (["runs", "--db", str(recipe)], "not a SQLite database"),
        (["compare", "--db", str(tmp_path / "nope.db")], "no run database"),
    ]
    for args, message in cases:
        res = runner.invoke(app, args)
        assert res.exit_code == 2, (args, res.output)
        assert message in res.stderr, (args, res.stderr)
    assert sha(db) == before                        # not a byte changed
    with Store.open(db) as store:
        assert [r.id for r in store.runs()] == [run_id]
    # asks before removing; 'n' keeps the run
    res = runner.invoke(app, ["rm", str(run_id), "--db", db], input="n\n")
    assert res.exit_code == 1 and "nothing removed" in res.stderr
    with Store.open(db) as store:
        assert store.get(run_id).status == CANCELLED
    res = runner.invoke(app, ["runs", "--json", "--db", db])
    assert res.exit_code == 0 and '"status": "cancelled"' in res.stdout
    res = runner.invoke(app, ["rm", str(run_id), "--yes", "--json", "--db", db])
    assert res.exit_code == 0 and f'"removed": [{run_id}]' in res.stdout
    with Store.open(db) as store:
        assert store.runs() == [] and store.epochs(run_id) == []
    res = runner.invoke(app, ["runs", "--json", "--db", str(tmp_path / "none.db")])
    assert res.exit_code == 0 and res.stdout.strip() == "[]" and not (tmp_path / "none.db").exists()


def test_live_runs_cannot_be_removed(db_url):
    with Store.open(db_url) as store:
        run_id = queued(store)                      # owned by this (live) process
    res = CliRunner().invoke(app, ["rm", str(run_id), "--yes", "--db", db_url])
    assert res.exit_code == 2 and "cancel it first" in res.stderr
    with Store.open(db_url) as store:
        assert store.get(run_id).status == QUEUED


def test_url_resolution(tmp_path, monkeypatch):
    assert store_engine.resolve_url("sqlite:///x.db") == "sqlite:///x.db"
    assert store_engine.resolve_url(tmp_path / "a.db") == f"sqlite:///{tmp_path / 'a.db'}"
    monkeypatch.setenv("KNI_DB", str(tmp_path / "env.db"))
    assert store_engine.resolve_url(None).endswith("env.db")
    with pytest.raises(StoreError):
        Store.open("nosuchdialect://x/y")


# --------------------------------------------------------------------------------------------
# faults (issue 7): reused pids, damaged values, huge ids, read-only commands


def set_row(sql, db, run_id: int, **values) -> None:
    """Change a run row behind the store's back (as another program or a bit flip would)."""
    sql(db, f"UPDATE runs SET {', '.join(f'{k} = :{k}' for k in values)} WHERE id = :run_id",
        run_id=run_id, **values)


def sleeper() -> subprocess.Popen:
    """A live process unrelated to any run (stands for whatever got a run's pid after a reboot)."""
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])


def test_a_reused_pid_does_not_keep_a_run_alive(db_url, sql):
    db = db_url
    other = sleeper()
    try:
        with Store.open(db) as store:
            legacy, rebooted, ours, frozen = (queued(store, s) for s in (1, 2, 3, 4))
            for i in (legacy, rebooted, ours, frozen):
                store.claim(i, other.pid, liveness.this_host())
        now = utcnow()
        months, recent = now - timedelta(days=330), now - timedelta(seconds=40)
        set_row(sql, db, legacy, heartbeat_at=months, pid_start=None)  # a row from before pid_start: 11 months silent
        set_row(sql, db, rebooted, heartbeat_at=recent, pid_start="another-boot:4242")  # the pid is someone else's
        set_row(sql, db, ours, heartbeat_at=recent)                    # stale, but its own process still lives
        set_row(sql, db, frozen, heartbeat_at=months)                  # its own process, silent for 11 months
        with Store.open(db) as store:
            seen = {r.id: Store.effective_status(r) for r in store.runs()}
            assert seen == {legacy: CRASHED, rebooted: CRASHED, ours: RUNNING, frozen: CRASHED}
            assert sorted(store.refresh_crashed()) == sorted([legacy, rebooted, frozen])
            assert "another process" in store.get(rebooted).error
            assert "no heartbeat for" in store.get(legacy).error
            assert store.get(ours).status == RUNNING
            assert store.get(ours).pid_start == liveness.process_start(other.pid) is not None
        assert other.poll() is None
    finally:
        other.kill()
        other.wait()


def test_cancel_never_signals_a_process_that_is_not_the_runs(db_url, sql):
    db = db_url
    stranger, own = sleeper(), sleeper()
    try:
        with Store.open(db) as store:
            legacy, rebooted, remote, real = (queued(store, s) for s in (1, 2, 3, 4))
            for i in (legacy, rebooted):
                store.claim(i, stranger.pid, liveness.this_host())
            store.claim(remote, stranger.pid, "another-host")
            store.claim(real, own.pid, liveness.this_host())
        months = utcnow() - timedelta(days=330)
        set_row(sql, db, legacy, heartbeat_at=months, pid_start=None)
        set_row(sql, db, rebooted, pid_start="another-boot:4242")   # heartbeat fresh: only the identity tells
        set_row(sql, db, remote, heartbeat_at=months)
        res = CliRunner().invoke(app, ["cancel", str(legacy), str(rebooted), str(remote), str(real), "--db", db])
        assert res.exit_code == 0, res.output
        assert stranger.poll() is None                              # never signalled
        assert own.wait(30) == -15                                  # the run's own process was (SIGTERM)
        assert res.stderr.count("nothing signalled") == 3 and "sent SIGTERM to run" in res.stderr
        with Store.open(db) as store:
            assert [store.get(i).status for i in (legacy, rebooted, remote, real)] == [CRASHED] * 3 + [RUNNING]
            fresh_remote = queued(store, 5)
            store.claim(fresh_remote, 4242, "another-host")
        # a live run of another host: no signal reaches it; it is asked through its row
        res = CliRunner().invoke(app, ["cancel", str(fresh_remote), "--db", db])
        assert res.exit_code == 0 and "asked run" in res.stderr and "another-host" in res.stderr, res.output
        with Store.open(db) as store:
            assert store.get(fresh_remote).status == RUNNING and store.cancel_requested(fresh_remote)
            assert not store.cancel_requested(real) and not store.request_cancel(legacy)   # ended: nothing asked
    finally:
        for p in (stranger, own):
            p.kill()
            p.wait()


def test_a_live_row_with_a_damaged_heartbeat_can_be_ended(db, sql):
    """A damaged heartbeat is read as None, but the stored text is not NULL: the crash's compare
    and set compared ``heartbeat_at IS NULL`` and never matched, so the row could never be
    cancelled, removed or resumed. (SQLite only: PostgreSQL cannot store such a value.)"""
    with Store.open(db) as store:
        cancelled, removed, alive = (queued(store, s) for s in (1, 2, 3))
        for i in (cancelled, removed):
            store.claim(i, dead_pid(), liveness.this_host())
            store.finish(i, COMPLETED)
        store.claim(alive, os.getpid(), liveness.this_host())
    for i in (cancelled, removed, alive):
        sql(db, "UPDATE runs SET status = 'running', heartbeat_at = 'garbage', finished_at = NULL WHERE id = :i", i=i)
    runner = CliRunner()
    res = runner.invoke(app, ["cancel", str(cancelled), "--db", db])
    assert res.exit_code == 0 and "marked crashed" in res.stderr, res.output
    res = runner.invoke(app, ["rm", str(removed), "--yes", "--db", db])
    assert res.exit_code == 0, res.output
    with Store.open(db) as store:
        run = store.get(cancelled)
        assert run.status == CRASHED and "heartbeat is damaged" in run.error
        assert store.missing([removed]) == [removed]
        # its own process is alive: a damaged heartbeat counts as stale, the pid decides
        assert store.refresh_crashed() == [] and store.get(alive).status == RUNNING
        store.heartbeat(alive)                             # a beat meanwhile makes it readable again
        stale_read = replace(store.get(alive), heartbeat_at=None)
        assert not store.mark_crashed(stale_read, "read before the beat")
        assert store.get(alive).status == RUNNING


def test_a_heartbeat_in_the_future_does_not_keep_a_dead_run_alive(db_url, sql):
    """Clock skew: a heartbeat dated ahead used to make every age negative, so 'not stale yet'
    forever. Here the pid decides; from another host, a beat more than a minute ahead proves nothing."""
    db = db_url
    with Store.open(db) as store:
        dead, ours, near, far = (queued(store, s) for s in (1, 2, 3, 4))
        store.claim(dead, dead_pid(), liveness.this_host())
        store.claim(ours, os.getpid(), liveness.this_host())
        store.claim(near, 4242, "another-host")
        store.claim(far, 4242, "another-host")
    ahead = utcnow() + timedelta(hours=2)
    for i in (dead, ours, far):
        set_row(sql, db, i, heartbeat_at=ahead)
    set_row(sql, db, near, heartbeat_at=utcnow() + timedelta(seconds=20))   # clocks a little apart
    with Store.open(db, readonly=True) as reader:
        shown = {r.id: r.status for r in reader.runs()}
        assert shown == {dead: CRASHED, ours: RUNNING, near: RUNNING, far: CRASHED}
        assert "in the future" in reader.get(dead).error
    with Store.open(db) as store:
        assert sorted(store.refresh_crashed()) == sorted([dead, far])
        assert store.get(ours).status == RUNNING and store.get(near).status == RUNNING


def test_a_read_only_folder_falls_back_to_a_snapshot_for_any_user(db, monkeypatch):
    """A non-root user's ``mode=ro`` open in a read-only folder fails with SQLITE_READONLY_DIRECTORY
    (or _CANTINIT), "attempt to write a readonly database" - not "unable to open", which is what
    root gets (and what the fallback looked for). Root cannot be made to see that error, so the
    sqlite3 module's answer is given here as that user gets it."""
    with Store.open(db) as store:
        run_id = queued(store)
    real_connect = store_engine.sqlite3.connect

    class Refusing:
        def __init__(self, name):
            self.name = name

        def execute(self, *args):
            e = sqlite3.OperationalError("attempt to write a readonly database")
            e.sqlite_errorname = self.name
            raise e

        def close(self):
            pass

    def refusing(name):                 # only the plain mode=ro open fails, as in such a folder
        return lambda database, *a, **k: (Refusing(name) if str(database).endswith("?mode=ro")
                                           else real_connect(database, *a, **k))

    for name in ("SQLITE_READONLY_DIRECTORY", "SQLITE_READONLY_CANTINIT", "SQLITE_CANTOPEN"):
        monkeypatch.setattr(store_engine.sqlite3, "connect", refusing(name))
        with Store.open(db, readonly=True) as reader:
            assert reader.snapshot and [r.id for r in reader.runs()] == [run_id], name
    monkeypatch.setattr(store_engine.sqlite3, "connect", refusing("SQLITE_CORRUPT"))
    with pytest.raises(StoreError, match="readonly"):       # any other error is reported, not papered over
        Store.open(db, readonly=True)
    # without error names (an older sqlite3 module): by the message
    assert store_engine.needs_snapshot(sqlite3.OperationalError("attempt to write a readonly database"))
    assert store_engine.needs_snapshot(sqlite3.OperationalError("unable to open database file"))
    assert not store_engine.needs_snapshot(sqlite3.OperationalError("database disk image is malformed"))
    # a writer on such a file: the file or its folder is at fault, not the command
    message = str(store_engine.explain(sqlite3.OperationalError("attempt to write a readonly database"), db))
    assert "not writable" in message and "opened read-only" not in message


@pytest.mark.parametrize("command", [["show"], ["rm", "--yes"], ["cancel"], ["compare"], ["export", "--csv", "-"]])
def test_run_ids_beyond_64_bits(db_url, command):
    db = db_url
    with Store.open(db) as store:
        queued(store)
    for big in (2 ** 63, 2 ** 64 + 5):
        res = CliRunner().invoke(app, [command[0], str(big), *command[1:], "--db", db])
        assert res.exit_code == 2, res.output
        assert f"no run with id {big}" in res.stderr and "Traceback" not in res.output
        assert not isinstance(res.exception, OverflowError)
    with Store.open(db) as store:
        assert store.missing([2 ** 63, 1]) == [2 ** 63] and store.epochs(2 ** 70) == []
        assert len(store.runs()) == 1


def test_damaged_values_are_shown_and_never_used(db_url, sql):
    db = db_url
    sqlite = sqlite_backend(db)
    with Store.open(db) as store:
        a, b = queued(store, 1), queued(store, 2)
        for i in (a, b):
            store.claim(i, dead_pid(), "h")
            store.add_epoch(i, result(1, 0.7), result(1, 0.7))
            store.finish(i, COMPLETED, best=result(1, 0.7))
    if sqlite:                                                         # PostgreSQL's timestamps cannot be garbage
        set_row(sql, db, a, created_at="garbage", started_at=12)       # unreadable dates
    else:
        set_row(sql, db, a, best_valid_acc=1.5)
    set_row(sql, db, b, best_test_auc=-5.65)                           # a bit flip
    sql(db, "UPDATE epochs SET test_auc = -5.65, train_seconds = -1 WHERE run_id = :b", b=b)
    before = sha(db) if sqlite else None
    runner = CliRunner()
    res = runner.invoke(app, ["runs", "--json", "--db", db])
    assert res.exit_code == 0, res.output
    listed = {r["id"]: r for r in json.loads(res.stdout)}
    if sqlite:
        assert listed[a]["created_at"] is None and listed[a]["started_at"] is None
        assert [d.split(":")[0] for d in listed[a]["damaged"]] == ["created_at", "started_at"]
    else:
        assert listed[a]["valid_acc"] is None and listed[a]["damaged"] == ["best_valid_acc: 1.5 is outside [0, 1]"]
    assert listed[b]["test_auc"] is None and listed[b]["damaged"] == ["best_test_auc: -5.65 is outside [0, 1]"]
    res = runner.invoke(app, ["runs", "--db", db])
    assert res.exit_code == 0 and res.stdout.count("completed damaged") == 2 and "-5.65" in res.stderr
    res = runner.invoke(app, ["compare", "--json", "--db", db])
    assert res.exit_code == 0, res.output
    group = json.loads(res.stdout)["groups"][0]
    assert group["n"] == 2 and group["test_auc_mean"] == pytest.approx(0.69)   # the good run's value only
    res = runner.invoke(app, ["show", str(b), "--no-plot", "--db", db])
    assert res.exit_code == 0 and "epoch 1 test_auc: -5.65 is outside [0, 1]" in res.stdout
    assert "epoch 1 train_seconds: -1" in res.stdout
    if sqlite:
        res = runner.invoke(app, ["show", str(a), "--no-plot", "--db", db])
        assert res.exit_code == 0 and "created ? (damaged)" in res.stdout
        assert sha(db) == before
    from workbench.tui.data import RunData  # the TUI's reader keeps going too
    with Store.open(db) as store:
        data = RunData(store)
        data.poll_now(force_full=True)
        assert data.error is None and sorted(data.runs) == [a, b]
        assert data.runs[a].damage and (data.runs[a].created_at is None or not sqlite)
        data.watch([b])
        assert data.epochs[b][0].test_auc is None and data.epochs[b][0].damage


def test_read_only_commands_never_write(tmp_path):
    runner = CliRunner()
    reading = [["runs"], ["show", "1"], ["compare"], ["export", "--csv", "-"]]
    foreign = tmp_path / "foreign.db"
    con = sqlite3.connect(foreign)
    con.execute("CREATE TABLE things (x)")
    con.commit()
    con.close()
    before = sha(foreign)
    for args in reading + [["rm", "1", "--yes"], ["cancel", "1"]]:
        res = runner.invoke(app, [*args, "--db", str(foreign)])
        assert res.exit_code == 2 and f"{foreign}: a database, but not a kni run database" in res.stderr, args
    assert sha(foreign) == before
    con = sqlite3.connect(foreign)
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    con.close()

    empty = tmp_path / "empty.db"
    empty.touch()
    res = runner.invoke(app, ["runs", "--db", str(empty)])
    assert res.exit_code == 0 and "no runs yet" in res.stderr
    for args in reading[1:]:
        res = runner.invoke(app, [*args, "--db", str(empty)])
        assert res.exit_code == 2 and "no run database here" in res.stderr, args
    assert empty.stat().st_size == 0 and sorted(os.listdir(tmp_path)) == ["empty.db", "foreign.db"]

    old = tmp_path / "old.db"                 # an older layout is read as it is, not migrated
    engine = create_engine(f"sqlite:///{old}")
    with engine.begin() as conn:
        for _, _, step in migrations.MIGRATIONS[:2]:
            step(conn)
        conn.execute(text("INSERT INTO meta VALUES ('schema_version', '2')"))
        conn.execute(text(
            "INSERT INTO runs (recipe, recipe_text, config_json, config_hash, dataset, model, seed, device, "
            "status, created_at, max_epochs, select_on, stopped_early, best_epoch, best_test_auc, git_commit) "
            "VALUES ('old', 'name: old', '{}', 'abc', 'bc', 'KNI', 3, 'cpu', 'completed', '2024-01-01 00:00:00', "
            "5, 'valid', 0, 2, 0.75, 'c0ffee')"))
        conn.execute(text("INSERT INTO epochs (run_id, epoch, test_auc) VALUES (1, 1, 0.7), (1, 2, 0.75)"))
    engine.dispose()
    before = sha(old)
    res = runner.invoke(app, ["runs", "--json", "--db", str(old)])
    assert res.exit_code == 0, res.output
    assert [(r["recipe"], r["epochs"], r["test_auc"], r["git_commit"]) for r in json.loads(res.stdout)] == \
           [("old", 2, 0.75, "c0ffee")]
    res = runner.invoke(app, ["show", "1", "--json", "--db", str(old)])
    assert res.exit_code == 0 and len(json.loads(res.stdout)["epochs"]) == 2
    assert sha(old) == before
    with Store.open(old, readonly=True) as store:
        assert store.schema_version() == 2
        with pytest.raises(StoreError, match="read-only"):
            store.delete([1])
    with Store.open(old) as store:             # a writer upgrades it
        assert store.schema_version() == migrations.SCHEMA_VERSION


@contextmanager
def read_only_folder(folder):
    """``folder`` made unwritable: by permissions for a normal user; root ignores those, so
    with the immutable attribute (chattr +i) there."""
    if os.geteuid() != 0:
        folder.chmod(0o555)
        undo = lambda: folder.chmod(0o755)                         # noqa: E731
    elif shutil.which("chattr") and subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode == 0:
        undo = lambda: subprocess.run(["chattr", "-i", str(folder)], check=True)   # noqa: E731
    else:
        message = "running as root on a file system without chattr +i: cannot make a folder read-only"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    try:
        with pytest.raises(OSError):
            (folder / "probe").touch()
        yield
    finally:
        undo()


def test_read_only_commands_work_in_a_read_only_folder(tmp_path):
    folder = tmp_path / "archive"
    folder.mkdir()
    db = str(folder / "runs.db")
    with Store.open(db) as store:
        run_id = queued(store)
        store.claim(run_id, dead_pid(), "h")
        store.add_epoch(run_id, result(1, 0.7), result(1, 0.7))
        store.finish(run_id, COMPLETED, best=result(1, 0.7))
    assert os.listdir(folder) == ["runs.db"]
    runner = CliRunner()
    with read_only_folder(folder):
        res = runner.invoke(app, ["runs", "--db", db])
        assert res.exit_code == 0 and "read-only snapshot" in " ".join(res.stdout.split()), res.output
        for args in (["runs", "--json"], ["show", str(run_id), "--json"], ["compare", "--json"],
                     ["export", "--csv", "-"]):
            res = runner.invoke(app, [*args, "--db", db])
            assert res.exit_code == 0, (args, res.output)
        assert json.loads(runner.invoke(app, ["show", str(run_id), "--json", "--db", db]).stdout)["epochs"][0][
                   "test_auc"] == pytest.approx(0.69)
        res = runner.invoke(app, ["rm", str(run_id), "--yes", "--db", db])
        assert res.exit_code == 2 and "cannot open the database for writing" in res.stderr
    assert os.listdir(folder) == ["runs.db"]


def test_transient_errors_are_retried_with_bounds(db):
    with Store.open(db) as store:
        run_id = queued(store)
        full = store_engine.explain(sqlite3.OperationalError("database or disk is full"), store.where)
        assert full.transient and "disk is full" in str(full)
        assert store_engine.explain(sqlite3.OperationalError("database is locked"), store.where).transient
        assert not store_engine.explain(sqlite3.OperationalError("no such table: x"), store.where).transient
        calls = []

        def flaky():
            calls.append(1)
            if len(calls) < 3:
                raise full
            return store.get(run_id).id

        waits = []
        assert errors.retry_write(flaky, patience=30, on_wait=waits.append) == run_id
        assert len(calls) == 3 and waits == [full, full]
        with pytest.raises(StoreError, match="still failing after"):
            errors.retry_write(lambda: (_ for _ in ()).throw(full), patience=0.6)
        calls.clear()
        with pytest.raises(StoreError) as info:          # not transient: no retry
            errors.retry_write(lambda: calls.append(1) or store.get(2 ** 63), patience=30)
        assert len(calls) == 1 and "no run with id" in str(info.value)
        stop = []
        with pytest.raises(StoreError, match="disk is full"):   # a stop request ends the waiting
            errors.retry_write(lambda: (_ for _ in ()).throw(full), patience=600, on_wait=stop.append,
                           stop=lambda: bool(stop))


# --------------------------------------------------------------------------------------------
# concurrency (issue 9): four run processes and a reader at once lose nothing, on either backend

WRITER = """
import os, sys, time
from kni_core.results import EpochResult, FitSummary
from workbench.recipe import parse_recipe
from workbench.runs.listener import StoreListener
from workbench.runs.provenance import Code
from workbench.runs.rows import new_run
from workbench.store.repository import Store
from workbench.store.liveness import this_host
db, seed, n, go = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
print("ready", flush=True)
while not os.path.exists(go):                     # all four start together
    time.sleep(0.01)
store = Store.open(db)                            # the first ones race to create the layout
rec = parse_recipe(sys.stdin.read())
run = store.create_run(new_run(rec.name, rec.text, rec.config_for(seed), prov=Code()))
assert store.claim(run, os.getpid(), this_host())
listener = StoreListener(store, run, "valid")     # the writes of a run process, retries included
for e in range(1, n + 1):
    r = EpochResult(seed, e, 1.0 / e, 0.5 + e / 1000, 0.6, 0.7, 0.5 + seed / 100 + e / 10000, 0.6, 0.7, 0.01, 0.01)
    listener.epoch(r)
    store.heartbeat(run)
listener.finished(FitSummary(seed, n, r, n, False))
print(run, flush=True)
"""


def test_a_busy_new_file_opens_now_and_turns_wal_later(tmp_path):
    """Switching a new file to WAL needs it to itself: while another process reads it, a writer's
    open does not wait out its busy timeout and fail; a later open makes the switch."""
    db = tmp_path / "runs.db"
    Store.open(db).close()
    con = sqlite3.connect(db, isolation_level=None)
    con.execute("PRAGMA journal_mode = DELETE")            # as a file whose creator could not switch
    con.execute("BEGIN")
    con.execute("SELECT count(*) FROM runs").fetchone()     # another process reading it
    try:
        start = time.monotonic()
        with Store.open(db):
            pass
        assert time.monotonic() - start < 5
        assert con.execute("PRAGMA journal_mode").fetchone()[0].lower() == "delete"
    finally:
        con.execute("COMMIT")
        con.close()
    with Store.open(db) as store:
        queued(store)
    assert sqlite3.connect(db).execute("PRAGMA journal_mode").fetchone()[0].lower() == "wal"


def test_opening_the_database_again_keeps_this_processs_locks(tmp_path):
    """A process with a live store opens the file again (a command run in-process, the TUI's
    reader). Closing any descriptor of the file would drop this process's POSIX locks: another
    process closing its connection would then take itself for the last, checkpoint and delete
    the WAL under the live store (seen as "database disk image is malformed" in a sweep resumed
    in-process). The WAL survives, and the live store's writes with it."""
    db = tmp_path / "runs.db"
    live = Store.open(db)
    first = queued(live)
    assert (tmp_path / "runs.db-wal").exists()
    Store.open(db, readonly=True).close()
    Store.open(db).close()
    subprocess.run([sys.executable, "-c", "import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); "
                    "c.execute('SELECT count(*) FROM runs').fetchone(); c.close()", str(db)], check=True)
    assert (tmp_path / "runs.db-wal").exists()             # this process still holds the file
    second = queued(live)
    live.close()
    assert sqlite3.connect(db).execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    with Store.open(db, readonly=True) as store:
        assert sorted(r.id for r in store.runs()) == [first, second]


def test_four_writers_and_a_reader_lose_nothing(db_url, tmp_path):
    n = 40
    go = tmp_path / "go"
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, db_url, str(seed), str(n), str(go)],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for seed in (1, 2, 3, 4)]
    try:
        for w in writers:
            w.stdin.write(RECIPE)
            w.stdin.close()
            assert w.stdout.readline().strip() == "ready", w.stderr.read()
        go.touch()
        reads, seen = 0, {}
        reader = None
        while any(w.poll() is None for w in writers):
            if reader is None:
                try:
                    reader = Store.open(db_url, readonly=True)
                except StoreError:                 # not created yet
                    continue
            runs = reader.runs()
            for r in runs:                         # one statement, one snapshot: the row and its count agree
                assert r.best_epoch == (r.n_epochs or None), r
                assert r.n_epochs >= seen.get(r.id, 0)
                seen[r.id] = r.n_epochs
            for run_id, epochs in reader.epochs_of(seen).items():
                assert [e.epoch for e in epochs] == list(range(1, len(epochs) + 1))
            reads += 1
            time.sleep(0.02)
        assert [w.wait(120) for w in writers] == [0] * 4, [w.stderr.read()[-2000:] for w in writers]
    finally:
        for w in writers:
            if w.poll() is None:
                w.kill()
                w.wait()
    assert reads > 0
    if reader is not None:
        reader.close()
    with Store.open(db_url) as store:
        runs = store.runs()
        assert sorted(r.seed for r in runs) == [1, 2, 3, 4] and {r.status for r in runs} == {COMPLETED}
        epochs = store.epochs_of([r.id for r in runs])
        for r in runs:
            assert r.n_epochs == n and r.best_epoch == n
            assert [e.epoch for e in epochs[r.id]] == list(range(1, n + 1))
            assert [e.test_auc for e in epochs[r.id]] == pytest.approx(
                [0.5 + r.seed / 100 + e / 10000 for e in range(1, n + 1)])
        assert store.schema_version() == migrations.SCHEMA_VERSION


# --------------------------------------------------------------------------------------------
# PostgreSQL specifics (issue 9)


def test_postgres_urls_and_a_missing_driver(monkeypatch):
    assert store_engine.resolve_url("postgresql://kni@db.lab/runs") == "postgresql+psycopg://kni@db.lab/runs"
    assert store_engine.resolve_url("postgres://kni@db.lab/runs") == "postgresql+psycopg://kni@db.lab/runs"
    assert store_engine.resolve_url("postgresql+psycopg://kni@db.lab/runs") == "postgresql+psycopg://kni@db.lab/runs"
    monkeypatch.setitem(sys.modules, "psycopg", None)          # as if the extra were not installed
    with pytest.raises(StoreError, match=r'pip install "kni-workbench\[postgres\]"'):
        Store.open("postgresql://kni:secret@127.0.0.1:1/runs")
    res = CliRunner().invoke(app, ["runs", "--db", "postgresql://kni:secret@127.0.0.1:1/runs"])
    assert res.exit_code == 2 and "kni-workbench[postgres]" in res.stderr and "Traceback" not in res.output
    assert "secret" not in res.stderr                            # the password is never shown


def test_postgres_errors_are_classified():
    psycopg = pytest.importorskip("psycopg") if not os.environ.get("CI") else __import__("psycopg")
    errors = psycopg.errors
    transient = [errors.LockNotAvailable("canceling statement due to lock timeout"),
                 errors.DeadlockDetected("deadlock detected"), errors.SerializationFailure("could not serialize"),
                 errors.DiskFull("could not extend file"), errors.AdminShutdown("terminating connection"),
                 errors.TooManyConnections("sorry, too many clients already"),
                 psycopg.OperationalError("connection failed: Connection refused")]
    for e in transient:
        assert store_engine.explain(e, "db").transient, e
    assert "locked" in str(store_engine.explain(transient[0], "db"))
    assert "disk is full" in str(store_engine.explain(transient[3], "db"))
    assert "cannot reach" in str(store_engine.explain(transient[-1], "db"))
    for e, words in ((errors.ReadOnlySqlTransaction("read-only"), "opened read-only"),
                     (errors.InvalidCatalogName('database "x" does not exist'), "createdb"),
                     (errors.InsufficientPrivilege("permission denied for table runs"), "for writing"),
                     (errors.UndefinedTable('relation "x" does not exist'), "does not exist")):
        explained = store_engine.explain(e, "db")
        assert not explained.transient and words in str(explained), (e, explained)


@pytest.mark.postgres
def test_postgres_refuses_bad_databases(postgres_db, postgres_server, sql):
    with Store.open(postgres_db) as store:
        queued(store)
    sql(postgres_db, "UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    with pytest.raises(StoreError, match="newer kni-workbench"):
        Store.open(postgres_db)
    assert sql(postgres_db, "SELECT count(*) FROM runs")[0][0] == 1            # untouched
    sql(postgres_db, "DROP SCHEMA public CASCADE; CREATE SCHEMA public; CREATE TABLE things (x int)")  # every table
    for readonly in (False, True):
        with pytest.raises(StoreError, match="not a kni run database"):
            Store.open(postgres_db, readonly=readonly)
    missing = postgres_db.rsplit("/", 1)[0] + "/no_such_database"
    with pytest.raises(StoreError, match="no such database.*createdb"):
        Store.open(missing)
    res = CliRunner().invoke(app, ["runs", "--db", missing])
    assert res.exit_code == 2 and "no such database" in res.stderr
    closed = "postgresql://kni@127.0.0.1:1/x"                 # nothing listens on port 1
    with pytest.raises(StoreError, match="cannot reach the database server") as info:
        Store.open(closed)
    assert info.value.transient


@pytest.mark.postgres
def test_postgres_readers_never_write(postgres_db, sql):
    from sqlalchemy.exc import DBAPIError
    with Store.open(postgres_db) as store:
        run_id = queued(store)
    with Store.open(postgres_db, readonly=True) as reader:
        assert reader.get(run_id).status == QUEUED
        with pytest.raises(DBAPIError, match="read-only transaction"):   # its sessions cannot write at all
            with reader.reader.begin() as conn:
                conn.execute(text("DELETE FROM runs"))
        with pytest.raises(StoreError, match="read-only"):
            reader.delete([run_id])
    assert sql(postgres_db, "SELECT count(*) FROM runs")[0][0] == 1
    # an older layout (version 3, as that release wrote it) is not upgraded by a reader; a writer upgrades it
    sql(postgres_db, "DROP SCHEMA public CASCADE; CREATE SCHEMA public")            # every table, views too
    engine = create_engine(postgres_db)
    with engine.begin() as conn:
        for _, _, step in migrations.MIGRATIONS[:3]:
            step(conn)
        conn.execute(text("INSERT INTO meta VALUES ('schema_version', '3')"))
        conn.execute(text(
            "INSERT INTO runs (recipe, recipe_text, config_json, config_hash, dataset, model, seed, device, "
            "status, created_at, max_epochs, select_on, stopped_early) VALUES ('old', 'name: old', '{}', 'abc', "
            "'bc', 'KNI', 3, 'cpu', 'completed', '2024-01-01 00:00:00', 5, 'valid', false)"))
    engine.dispose()
    res = CliRunner().invoke(app, ["runs", "--db", postgres_db])
    assert res.exit_code == 2 and "a writing command" in res.stderr and "upgrades it" in res.stderr
    assert sql(postgres_db, "SELECT value FROM meta WHERE key = 'schema_version'")[0][0] == "3"
    with Store.open(postgres_db) as store:
        assert store.schema_version() == migrations.SCHEMA_VERSION
        assert [(r.recipe, r.executor) for r in store.runs()] == [("old", None)]


@pytest.mark.postgres
def test_postgres_lock_waits_are_bounded_and_retried(postgres_db):
    from sqlalchemy import create_engine
    with Store.open(postgres_db) as store:
        run_id = queued(store)
    other = create_engine(postgres_db).connect()                  # another session holds the row
    try:
        other.execute(text("SELECT * FROM runs WHERE id = :i FOR UPDATE"), {"i": run_id})
        locked = Store.open(postgres_db, timeout=0.3)
        assert locked.get(run_id).status == QUEUED                # MVCC: readers still read
        with pytest.raises(StoreError, match="locked") as info:
            locked.delete([run_id])
        assert info.value.transient
        other.rollback()                                          # released: the retried write goes through
        assert errors.retry_write(lambda: locked.delete([run_id]), patience=10) == 1
        locked.close()
    finally:
        other.close()


def test_one_process_at_a_time_drives_a_sweep(db_url):
    """kni resume --sweep claims the sweep: a live holder on this host, or a holder on another
    host (unless --take-over), refuses a second driver; a dead holder's claim is taken."""
    import json as _json
    import subprocess
    import sys

    from workbench.store.liveness import process_start
    from workbench.store.schema import Meta

    def hold(pid: int, host: str) -> None:
        with store._write() as s:
            row = s.get(Meta, "sweep-driver:1")
            value = _json.dumps({"pid": pid, "host": host, "pid_start": process_start(pid), "since": "then"})
            if row is None:
                s.add(Meta(key="sweep-driver:1", value=value))
            else:
                row.value = value

    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        with Store.open(db_url) as store:
            hold(sleeper.pid, liveness.this_host())
            with pytest.raises(StoreError, match=f"already being resumed by pid {sleeper.pid}"):
                store.claim_sweep(1)
            with pytest.raises(StoreError, match=f"already being resumed by pid {sleeper.pid}"):
                store.claim_sweep(1, take_over=True)         # alive here: no take-over
            hold(4242, "lab-2")
            with pytest.raises(StoreError, match="lab-2.*--take-over"):
                store.claim_sweep(1)
            store.claim_sweep(1, take_over=True)
            store.claim_sweep(1)                             # ours already
            sleeper.kill()
            sleeper.wait()
            hold(sleeper.pid, liveness.this_host())                   # gone: its claim is taken
            store.claim_sweep(1)
            store.release_sweep(1)
            with store._read() as s:
                assert s.get(Meta, "sweep-driver:1") is None
    finally:
        sleeper.kill()
