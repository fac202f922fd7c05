"""The run lifecycle with real child processes: concurrent writers, SIGKILL -> crashed,
SIGINT -> cancelled with epochs kept, an exception -> failed with the traceback, and a
launcher that is interrupted or loses a child; on SQLite and PostgreSQL (``db_url``)."""

from __future__ import annotations

import errno
import json
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import threading

import pytest
import torch
from sqlalchemy import event
from typer.testing import CliRunner

from kni_core.config import RunConfig
from kni_core.data import prepare
from kni_core.train import Trainer
from workbench.cli import app
from workbench.recipe import parse_recipe
from workbench.runs import launcher as launcher_module
from workbench.runs.child import EXIT_CANCELLED, EXIT_REMOVED
from workbench.runs.execute import execute
from workbench.runs.launcher import Launcher, assign_gpus, spawn
from workbench.runs.listener import StoreListener
from workbench.runs.provenance import Code
from workbench.runs.rows import new_run
from workbench.store.errors import StoreError
from workbench.store.repository import Store
from workbench.store.statuses import CANCELLED, COMPLETED, CRASHED, FAILED, RUNNING

from helpers import tiny_recipe, wait_for

TIMEOUT = 90


def queue(store: Store, seed: int, epochs: int = 100_000, name: str = "long", **dataset) -> int:
    """A queued run; by default one that trains until it is stopped (warm-started, 200 tiny epochs
    could end before a cancel through the row arrived)."""
    rec = parse_recipe(tiny_recipe(name, epochs=epochs))
    cfg = rec.config_for(seed)
    for k, v in dataset.items():
        setattr(cfg.dataset, k, v)
    if not dataset:
        prepare(cfg)                                  # as kni run does before spawning
    return store.create_run(new_run(rec.name, rec.text, cfg, prov=Code()))


def has_epochs(store: Store, run_id: int, n: int = 1):
    return lambda: len(store.epochs(run_id)) >= n


def test_signals_and_exceptions_in_run_processes(tmp_path, db_url):
    """Three run processes at once: one killed with SIGKILL, one interrupted with SIGINT, one
    whose configuration raises."""
    db = db_url
    store = Store.open(db)
    killed, interrupted = queue(store, 1), queue(store, 2)
    failing = queue(store, 3, path=str(tmp_path / "no-such-folder"))
    procs = {i: spawn(store.url, i) for i in (killed, interrupted, failing)}

    assert wait_for(has_epochs(store, killed), TIMEOUT) and wait_for(has_epochs(store, interrupted, 2), TIMEOUT)
    os.kill(procs[killed].pid, signal.SIGKILL)
    os.kill(procs[interrupted].pid, signal.SIGINT)
    assert procs[killed].wait(TIMEOUT) == -signal.SIGKILL
    assert procs[interrupted].wait(TIMEOUT) == EXIT_CANCELLED
    assert procs[failing].wait(TIMEOUT) == 1

    # SIGINT: cancelled, every finished epoch kept, best-so-far recorded
    run = store.get(interrupted)
    assert run.status == CANCELLED and "SIGINT" in run.error and run.finished_at is not None
    assert run.n_epochs >= 2 and [e.epoch for e in store.epochs(interrupted)] == list(range(1, run.n_epochs + 1))
    assert run.best_epoch is not None and run.best_test_auc is not None

    # an exception: failed, with the message and the traceback
    run = store.get(failing)
    assert run.status == FAILED and "no such folder" in run.error
    assert run.traceback.startswith("Traceback") and "DataError" in run.traceback and run.n_epochs == 0

    # SIGKILL: nothing was recorded, the row still says running; readers see crashed
    run = store.get(killed)
    n_killed = len(store.epochs(killed))
    assert run.status == RUNNING and n_killed >= 1
    assert Store.effective_status(run, stale=0) == CRASHED
    res = CliRunner().invoke(app, ["runs", "--json", "--db", db], env={"KNI_STALE_SECONDS": "0"})
    assert res.exit_code == 0, res.output
    listed = {r["id"]: r for r in json.loads(res.stdout)}
    assert listed[killed]["status"] == CRASHED and listed[killed]["epochs"] == n_killed
    assert listed[interrupted]["status"] == CANCELLED and listed[failing]["status"] == FAILED
    assert store.get(killed).status == RUNNING                 # kni runs only reads ...
    assert store.refresh_crashed(stale=0) == [killed]          # ... a writer records it
    assert store.get(killed).status == CRASHED and "gone" in store.get(killed).error
    assert len(store.epochs(killed)) == n_killed               # epochs all there
    res = CliRunner().invoke(app, ["show", str(failing), "--db", db])
    assert res.exit_code == 0 and "DataError" in res.stdout
    store.close()


def test_launcher_loses_a_child_then_is_interrupted(db_url):
    """jobs=1 over three runs: the first child is SIGKILLed (the launcher marks it crashed at
    once), the launcher is stopped during the second (SIGTERM -> cancelled, epochs kept) and
    the third never starts (cancelled)."""
    store = Store.open(db_url)
    ids = [queue(store, s) for s in (1, 2, 3)]
    ended: list[tuple[int, str, int]] = []
    launcher: Launcher

    def on_epoch(run, result):
        if run.id == ids[0] and result.epoch == 1:
            os.kill(store.get(run.id).pid, signal.SIGKILL)
        if run.id == ids[1] and result.epoch == 2:
            launcher.request_stop()

    launcher = Launcher(store, jobs=1, on_epoch=on_epoch, poll=0.1,
                        on_end=lambda run, epochs: ended.append((run.id, run.status, len(epochs))))
    statuses = {}
    worker = threading.Thread(target=lambda: statuses.update(launcher.run(ids)))
    worker.start()
    worker.join(2 * TIMEOUT)
    assert not worker.is_alive()
    assert statuses == {ids[0]: CRASHED, ids[1]: CANCELLED, ids[2]: CANCELLED}
    first, second, third = (store.get(i) for i in ids)
    assert "killed by signal 9" in first.error and first.n_epochs >= 1
    assert first.error.splitlines()[0].endswith("without recording an end")    # what a summary shows alone
    assert "SIGTERM" in second.error and second.n_epochs >= 2 and second.best_epoch is not None
    assert third.started_at is None and third.n_epochs == 0
    assert [e[0] for e in ended] == [ids[0], ids[2], ids[1]]   # the queue is cancelled at once
    store.close()


def test_kni_run_two_seeds_in_parallel(tmp_path, db_url):
    """`kni run --jobs 2 --json`: two processes write the same database at the same time; the
    JSON lines are those of console.JsonLines; seeds added later join the group."""
    n_epochs = 30
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(tiny_recipe("tiny", epochs=n_epochs))     # warm-started, 3 tiny epochs take 0.5 s: too short
    db = db_url                                               # to overlap surely on 2 busy cores
    runner = CliRunner()
    res = runner.invoke(app, ["run", str(recipe), "--seeds", "1,2", "--jobs", "2", "--json", "--db", db])
    assert res.exit_code == 0, res.output
    events = [json.loads(line) for line in res.stdout.splitlines()]
    epochs = [e for e in events if e["event"] == "epoch"]
    ends = [e for e in events if e["event"] == "end"]
    assert sorted((e["seed"], e["epoch"]) for e in epochs) == [(s, n) for s in (1, 2) for n in range(1, n_epochs + 1)]
    assert set(epochs[0]) == {"event", "run_id", "seed", "epoch", "train_loss", "valid_auc", "valid_logloss",
                              "valid_acc", "test_auc", "test_logloss", "test_acc", "train_seconds", "eval_seconds"}
    assert sorted(e["seed"] for e in ends) == [1, 2]
    assert set(ends[0]) == {"event", "run_id", "seed", "best_epoch", "test_auc", "test_logloss", "test_acc"}

    with Store.open(db) as store:
        runs = store.runs()
        assert [(r.seed, r.status, r.n_epochs, r.executor) for r in runs] == \
               [(1, COMPLETED, n_epochs, "local"), (2, COMPLETED, n_epochs, "local")]
        a, b = runs
        assert a.pid != b.pid and a.pid != os.getpid()
        assert a.started_at < b.finished_at and b.started_at < a.finished_at     # they overlapped
        assert a.config_hash == b.config_hash
        for r, end in zip(runs, sorted(ends, key=lambda e: e["seed"])):
            assert (r.best_epoch, r.best_test_auc) == (end["best_epoch"], end["test_auc"])
            assert end["run_id"] == r.id and {e["run_id"] for e in epochs if e["seed"] == r.seed} == {r.id}
            stored = store.epochs(r.id)
            streamed = [e for e in epochs if e["seed"] == r.seed]
            assert [x.test_auc for x in stored] == [e["test_auc"] for e in sorted(streamed, key=lambda e: e["epoch"])]

    res = runner.invoke(app, ["runs", "--json", "--db", db, "--recipe", "tiny"])
    listed = json.loads(res.stdout)
    assert [(r["seed"], r["status"], r["epochs"]) for r in listed] == [(1, COMPLETED, n_epochs), (2, COMPLETED, n_epochs)]
    assert {"id", "recipe", "dataset", "model", "seed", "status", "epochs", "pid", "best_epoch", "test_auc"} <= \
           set(listed[0])
    res = runner.invoke(app, ["compare", "--recipe", "tiny", "--json", "--db", db])
    group = json.loads(res.stdout)["groups"]
    assert len(group) == 1 and group[0]["n"] == 2 and group[0]["seeds"] == "1 2"


def test_kni_cancel_reaches_a_run_of_another_host_through_its_row(db_url, sql):
    """A run on another machine (a Ray node): no signal reaches it, so kni cancel asks through
    the row and the run process stops at its next heartbeat, cancelled with its epochs kept."""
    import tempfile
    store = Store.open(db_url)
    run_id = queue(store, 1)
    output = tempfile.TemporaryFile()                # the run process's own words, if it ends otherwise
    proc = spawn(store.url, run_id, log_file=output)
    try:
        assert wait_for(has_epochs(store, run_id), TIMEOUT)
        sql(db_url, "UPDATE runs SET host = 'node-7' WHERE id = :i", i=run_id)   # as seen from another host
        res = CliRunner().invoke(app, ["cancel", str(run_id), "--db", db_url])
        assert res.exit_code == 0 and f"asked run {run_id} on node-7" in res.stderr, res.output
        code = proc.wait(TIMEOUT)
        output.seek(0)
        assert code == EXIT_CANCELLED, output.read().decode("utf-8", "replace")[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    run = store.get(run_id)
    assert run.status == CANCELLED and "kni cancel" in run.error and run.n_epochs >= 1
    assert [e.epoch for e in store.epochs(run_id)] == list(range(1, run.n_epochs + 1))
    store.close()


def test_gpu_assignment():
    assert assign_gpus([], {}) is None
    busy: dict[str, int] = {}
    picks = []
    for _ in range(5):
        g = assign_gpus(["0", "1", "2"], busy)
        busy[g] = busy.get(g, 0) + 1
        picks.append(g)
    assert picks == ["0", "1", "2", "0", "1"]
    busy["0"] -= 1
    assert assign_gpus(["0", "1", "2"], busy) in ("0", "2")


# --------------------------------------------------------------------------------------------
# database and checkpoint faults (issue 7)


def disk_full(store: Store, when=lambda statement: True) -> None:
    """Make ``store``'s writes fail as SQLite does when the disk is full (for statements
    ``when`` accepts)."""
    @event.listens_for(store.writer, "before_cursor_execute")
    def _full(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith(("INSERT", "UPDATE", "DELETE")) and when(statement):
            raise sqlite3.OperationalError("database or disk is full")


def dies_at_once(url, run_id, **kwargs):
    """A run process that exits without recording anything."""
    return subprocess.Popen([sys.executable, "-c", "raise SystemExit(1)"])


def run_in_thread(launcher: Launcher, ids: list[int]) -> dict:
    statuses: dict = {}
    worker = threading.Thread(target=lambda: statuses.update(launcher.run(ids)), daemon=True)
    worker.start()
    worker.join(TIMEOUT)
    assert not worker.is_alive(), "the launcher hangs"
    return statuses


def test_launcher_with_a_full_disk_ends_quietly(tmp_path, monkeypatch, caplog):
    """The child exits, the launcher cannot record that: a bounded, quiet retry, then the
    run is reported (not 2,216 identical warnings and a hang)."""
    store = Store.open(tmp_path / "runs.db")
    run_id = queue(store, 1, epochs=2)
    monkeypatch.setattr(launcher_module, "spawn", dies_at_once)
    disk_full(store)
    problems = []
    launcher = Launcher(store, poll=0.05, patience=1.0, on_problem=lambda i, m: problems.append((i, m)))
    with caplog.at_level(logging.WARNING):
        statuses = run_in_thread(launcher, [run_id])
    assert statuses == {run_id: FAILED}
    assert [i for i, _ in problems] == [run_id] and "disk is full" in problems[0][1]
    assert "could not be recorded" in problems[0][1] and launcher.problems == dict(problems)
    assert len([r for r in caplog.records if "disk is full" in r.getMessage()]) <= 1
    store.close()


def test_launcher_obeys_a_stop_while_the_disk_is_full(tmp_path, monkeypatch):
    store = Store.open(tmp_path / "runs.db")
    ids = [queue(store, s, epochs=2) for s in (1, 2)]
    monkeypatch.setattr(launcher_module, "spawn", dies_at_once)
    failed_once = threading.Event()

    def refuse(statement):
        if "status" in statement:            # the end of the first run
            failed_once.set()
        return True

    disk_full(store, refuse)
    launcher = Launcher(store, poll=0.05, patience=600.0)        # it would wait 10 minutes ...
    threading.Thread(target=lambda: failed_once.wait(TIMEOUT) and launcher.request_stop(), daemon=True).start()
    statuses = run_in_thread(launcher, ids)                      # ... but a Ctrl-C ends it now
    assert statuses == {ids[0]: CANCELLED, ids[1]: CANCELLED}
    assert set(launcher.problems) == set(ids)
    assert store.get(ids[1]).status == "queued" and store.get(ids[1]).started_at is None
    store.close()


def test_a_full_disk_fails_the_run_clearly_and_keeps_its_epochs(tmp_path, monkeypatch):
    monkeypatch.setenv("KNI_DB_PATIENCE", "1")
    store = Store.open(tmp_path / "runs.db")
    run_id = queue(store, 1, epochs=3)
    store.claim(run_id, os.getpid(), "test-host")
    disk_full(store, lambda sql: "INSERT INTO epochs" in sql and len(store.epochs(run_id)) >= 1)
    listener = StoreListener(store, run_id, "valid")
    cfg = RunConfig.from_dict(json.loads(store.get(run_id).config_json))
    with pytest.raises(StoreError, match="disk is full"):
        execute(cfg, [listener])
    run = store.get(run_id)
    assert run.status == FAILED and "disk is full" in run.error and "still failing after" in run.error
    assert [e.epoch for e in store.epochs(run_id)] == [1]
    store.close()


def test_a_write_lock_costs_time_not_epochs(tmp_path, monkeypatch):
    """Another program holds the write lock longer than the busy timeout: the run process
    retries the epoch it just computed and completes with every epoch (none missing, however
    many it ran before early stopping: enough that it cannot finish before the lock is taken)."""
    db = tmp_path / "runs.db"
    store = Store.open(db)
    run_id = queue(store, 1, epochs=60)
    monkeypatch.setenv("KNI_DB_TIMEOUT", "0.5")
    log_path = tmp_path / "child.log"
    with open(log_path, "wb") as log_file:
        proc = spawn(store.url, run_id, log_file=log_file)
        assert wait_for(has_epochs(store, run_id), TIMEOUT)
        lock = sqlite3.connect(db, isolation_level=None)
        lock.execute("BEGIN IMMEDIATE")
        try:
            # the first write to meet the lock retries: the epoch's, or the last-epoch state's size
            assert wait_for(lambda: "could not store " in log_path.read_text() or proc.poll() is not None, TIMEOUT)
            assert proc.poll() is None, log_path.read_text()
        finally:
            lock.execute("ROLLBACK")
            lock.close()
        assert proc.wait(TIMEOUT) == 0, log_path.read_text()
    run = store.get(run_id)
    assert run.status == COMPLETED and run.n_epochs > 2
    assert [e.epoch for e in store.epochs(run_id)] == list(range(1, run.n_epochs + 1))
    store.close()


def test_removing_a_live_runs_row_stops_it_and_fails_kni_run(tmp_path):
    recipe = tmp_path / "long.yaml"
    recipe.write_text(tiny_recipe("long", epochs=100_000))     # stopped from elsewhere, never to its end
    db = tmp_path / "runs.db"

    def remove_when_training():
        con = None
        try:
            assert wait_for(lambda: db.exists() and sqlite3.connect(db).execute(
                "SELECT count(*) FROM sqlite_master WHERE name = 'epochs'").fetchone()[0] == 1, TIMEOUT)
            con = sqlite3.connect(db, timeout=30)
            assert wait_for(lambda: con.execute("SELECT count(*) FROM epochs").fetchone()[0] > 0, TIMEOUT)
            con.execute("DELETE FROM epochs")
            con.execute("DELETE FROM runs")                   # by hand, as kni rm refuses a live run
            con.commit()
        finally:
            if con is not None:
                con.close()

    remover = threading.Thread(target=remove_when_training, daemon=True)
    remover.start()
    res = CliRunner().invoke(app, ["run", str(recipe), "--db", str(db)])
    remover.join(TIMEOUT)
    out = res.stdout + res.stderr
    assert res.exit_code == 1, out
    assert "removed" in out and f"exit status {EXIT_REMOVED}" in out


def cancel_from_elsewhere(db, run_id: int) -> threading.Thread:
    """What ``kni cancel RUN`` in another terminal does, once the run has stored an epoch."""
    from workbench.runs.control import cancel

    def go():
        with Store.open(db) as store:
            assert wait_for(has_epochs(store, run_id), TIMEOUT)
            cancel(store, run_id)
    thread = threading.Thread(target=go, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize("command", ["run", "resume"])
def test_a_run_cancelled_from_another_terminal_makes_the_command_exit_1(tmp_path, command):
    """130 says that this command was stopped (Ctrl-C, SIGTERM); a run that another terminal
    cancelled is a run that did not complete: 1 (it used to be 130 for either)."""
    recipe = tmp_path / "long.yaml"
    recipe.write_text(tiny_recipe("long", epochs=100_000))     # stopped from elsewhere, never to its end
    db = tmp_path / "runs.db"
    with Store.open(db) as store:
        if command == "run":
            args, run_id = ["run", str(recipe)], 1
        else:                                 # a run cancelled before it started, resumed
            run_id = queue(store, 1)
            store.mark(run_id, CANCELLED, "cancelled before it started")
            args = ["resume", str(run_id)]
    canceller = cancel_from_elsewhere(db, run_id)
    res = CliRunner().invoke(app, [*args, "--db", str(db)])
    canceller.join(TIMEOUT)
    assert res.exit_code == 1, res.output
    with Store.open(db) as store:
        run = store.get(run_id)
    assert run.status == CANCELLED and "SIGTERM" in run.error and run.n_epochs >= 1


def test_checkpoint_writes_are_atomic(tmp_path, monkeypatch):
    rec = parse_recipe(tiny_recipe("ck", epochs=1))
    cfg = rec.config_for(1)
    trainer = Trainer(cfg, prepare(cfg))
    path = tmp_path / "ck" / "best.pt"
    trainer.save(path)
    good = path.read_bytes()
    assert torch.load(path, weights_only=False)["config"]["seed"] == 1

    def full_disk_save(obj, f, *args, **kwargs):
        if isinstance(f, (str, os.PathLike)):
            f = open(f, "wb")
        f.write(b"\x80\x02partial")
        f.flush()
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", full_disk_save)
    with pytest.raises(OSError, match="No space left"):
        trainer.save(path)
    assert path.read_bytes() == good and os.listdir(path.parent) == ["best.pt"]


def test_a_checkpoint_that_cannot_be_saved_keeps_the_epoch(tmp_path, monkeypatch):
    """The epoch is stored before its checkpoint is written; the failure is clear."""
    seen: list[int] = []
    ended: list[BaseException] = []

    class Collect:
        def started(self, start): pass
        def epoch(self, result): seen.append(result.epoch)
        def finished(self, summary): pass
        def failed(self, error): ended.append(error)

    def no_space(self, path, before_replace=None):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Trainer, "save", no_space)
    cfg = parse_recipe(tiny_recipe("ck", epochs=3)).config_for(1)
    from workbench.runs.execute import CheckpointError
    with pytest.raises(CheckpointError, match="No space left on device"):
        execute(cfg, [Collect()], checkpoint=str(tmp_path / "best.pt"))
    assert seen == [1] and isinstance(ended[0], CheckpointError) and "stored epochs are kept" in str(ended[0])
