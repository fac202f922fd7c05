"""The run database: rows, WAL, crash detection, migrations and bad input."""

from __future__ import annotations

import hashlib
import os
import sqlite3
import subprocess
import sys
from datetime import timedelta

import pytest
from sqlalchemy import create_engine, inspect, text
from typer.testing import CliRunner

from kni_core.train import EpochResult
from workbench import store as st
from workbench.cli import app
from workbench.recipe import parse_recipe
from workbench.runner import new_run
from workbench.store import (CANCELLED, COMPLETED, CRASHED, FAILED, QUEUED, RUNNING, Store, StoreError, utcnow)

RECIPE = """\
name: tiny
dataset: {name: synthetic, min_relation_triples: 1, synthetic: {preset: tiny}}
model: {hop_n_sample: [1, 4], max_degree: 16}
train: {epochs: 3}
eval: {n_eval: 2}
device: cpu
"""


@pytest.fixture(autouse=True)
def _env(tmp_path, monkeypatch):
    monkeypatch.setenv("KNI_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("KNI_DB", raising=False)
    monkeypatch.delenv("KNI_STALE_SECONDS", raising=False)


@pytest.fixture
def db(tmp_path):
    return str(tmp_path / "runs.db")


def queued(store: Store, seed: int = 1) -> int:
    rec = parse_recipe(RECIPE)
    return store.create_run(new_run(rec.name, rec.text, rec.config_for(seed), prov=(None, None)))


def result(epoch: int, auc: float = 0.7) -> EpochResult:
    return EpochResult(1, epoch, 0.5, auc, 0.6, 0.65, auc - 0.01, 0.61, float("nan"), 1.0, 0.5)


def sha(path) -> str:
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_rows_and_wal(db):
    with Store.open(db) as store:
        run_id = queued(store)
        run = store.get(run_id)
        assert (run.status, run.pid, run.seed, run.recipe, run.dataset, run.model) == \
               (QUEUED, os.getpid(), 1, "tiny", "synthetic-tiny", "KNI")
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
        assert store.schema_version() == st.SCHEMA_VERSION
    con = sqlite3.connect(db)
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    con.close()


def test_crash_detection(db):
    with Store.open(db) as store:
        gone, alive, remote, fresh = (queued(store, s) for s in (1, 2, 3, 4))
        store.claim(gone, dead_pid(), st.this_host())
        store.claim(alive, os.getpid(), st.this_host())
        store.claim(remote, os.getpid(), "another-host")
        store.claim(fresh, dead_pid(), st.this_host())
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


def test_migration_from_first_version(tmp_path):
    path = tmp_path / "old.db"
    engine = create_engine(f"sqlite:///{path}")
    with engine.begin() as conn:                    # a database as version 1 wrote it
        st.MIGRATIONS[0][2](conn)
        conn.execute(text("INSERT INTO meta VALUES ('schema_version', '1')"))
        conn.execute(text(
            "INSERT INTO runs (recipe, recipe_text, config_json, config_hash, dataset, model, seed, device, "
            "status, created_at, max_epochs, select_on, stopped_early, best_epoch, best_test_auc) VALUES "
            "('old', 'name: old', '{}', 'abc', 'bc', 'KNI', 3, 'cpu', 'completed', '2024-01-01 00:00:00', 5, "
            "'valid', 0, 2, 0.75)"))
        conn.execute(text("INSERT INTO epochs (run_id, epoch, test_auc) VALUES (1, 1, 0.7), (1, 2, 0.75)"))
    cols_v1 = {c["name"] for c in inspect(engine).get_columns("runs")}
    engine.dispose()
    assert "git_commit" not in cols_v1
    with Store.open(path) as store:
        assert store.schema_version() == st.SCHEMA_VERSION == st.MIGRATIONS[-1][0]
        run = store.get(1)
        assert (run.recipe, run.seed, run.best_test_auc, run.n_epochs, run.git_commit) == ("old", 3, 0.75, 2, None)
        assert run.created_at.year == 2024 and run.created_at.tzinfo is not None
        queued(store)                               # the new columns are usable
    # the upgraded layout is the ORM's layout
    engine = create_engine(f"sqlite:///{path}")
    insp = inspect(engine)
    for table in st.Base.metadata.sorted_tables:
        assert {c["name"] for c in insp.get_columns(table.name)} == {c.name for c in table.columns}, table.name
    engine.dispose()


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
        store.claim(run_id, dead_pid(), st.this_host())
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


def test_live_runs_cannot_be_removed(db):
    with Store.open(db) as store:
        run_id = queued(store)                      # owned by this (live) process
    res = CliRunner().invoke(app, ["rm", str(run_id), "--yes", "--db", db])
    assert res.exit_code == 2 and "cancel it first" in res.stderr
    with Store.open(db) as store:
        assert store.get(run_id).status == QUEUED


def test_url_resolution(tmp_path, monkeypatch):
    assert st.resolve_url("sqlite:///x.db") == "sqlite:///x.db"
    assert st.resolve_url(tmp_path / "a.db") == f"sqlite:///{tmp_path / 'a.db'}"
    monkeypatch.setenv("KNI_DB", str(tmp_path / "env.db"))
    assert st.resolve_url(None).endswith("env.db")
    with pytest.raises(StoreError):
        Store.open("nosuchdialect://x/y")
