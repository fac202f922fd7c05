"""A run process that was superseded writes nothing more: ``kni resume`` claimed its row while
it was stopped (SIGSTOP, a frozen VM), or its id went to another run after ``kni rm``. Every
write of a run process matches its owner (pid, host, claim time); the launcher that started it
never ends an attempt it did not start. On SQLite and PostgreSQL (``db_url``)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import timedelta

import pytest

from kni_core.train import EpochResult
from workbench.recipe import parse_recipe
from workbench.runs import launcher as launcher_module
from workbench.runs.child import EXIT_SUPERSEDED
from workbench.runs.launcher import Launcher, spawn
from workbench.runs.provenance import Code
from workbench.runs.resume import plan
from workbench.runs.rows import new_run
from workbench.store.errors import RunGone, Superseded
from workbench.store.liveness import this_host
from workbench.store.records import utcnow
from workbench.store.repository import Store
from workbench.store.statuses import COMPLETED, CRASHED, FAILED, RUNNING

from helpers import tiny_recipe, wait_for

TIMEOUT = 120


def queued(store: Store, seed: int = 1, epochs: int = 3) -> int:
    rec = parse_recipe(tiny_recipe("stale", epochs=epochs))
    return store.create_run(new_run(rec.name, rec.text, rec.config_for(seed), prov=Code()))


def result(epoch: int, auc: float = 0.7) -> EpochResult:
    return EpochResult(1, epoch, 0.5, auc, 0.6, 0.65, auc - 0.01, 0.61, 0.6, 1.0, 0.5)


def crash_and_resume(store: Store, run_id: int) -> None:
    """What a reader and ``kni resume`` do to a row whose process looks dead: crashed, then
    requeued for a new attempt."""
    later = utcnow() + timedelta(hours=1)                   # long past the abandoned bound
    assert store.refresh_crashed(now=later) == [run_id]
    p = plan(store, run_id, restart=True)
    store.requeue_to_resume(p.run, p.from_epoch, p.best)


def test_a_superseded_process_writes_nothing_into_the_new_attempts_row(db_url):
    with Store.open(db_url) as store:
        run_id = queued(store)
        old = store.claim(run_id, 4242, this_host())
        store.add_epoch(run_id, result(1), result(1), owner=old)
        crash_and_resume(store, run_id)
        new = store.claim(run_id, 4343, this_host())
        assert new is not None and new != old
        before = store.get(run_id)

        writes = {
            "epoch": lambda: store.add_epoch(run_id, result(2), result(2), owner=old),
            "end": lambda: store.finish(run_id, FAILED, error="boom", owner=old),
            "heartbeat": lambda: store.heartbeat(run_id, owner=old),
            "start": lambda: store.record_start(run_id, "cuda:9", {"users": 1}, {"env": 1}, owner=old),
            "checkpoint": lambda: store.set_checkpoint(run_id, "elsewhere.pt", owner=old),
            "progress": lambda: store.record_progress(run_id, {"epoch": 9}, owner=old),
            "last state": lambda: store.record_last_state(run_id, 1, 1.0, owner=old),
        }
        for what, write in writes.items():
            with pytest.raises(Superseded, match="belongs to another attempt") as info:
                write()
            assert "pid 4343" in str(info.value) and "pid 4242" in str(info.value), what
        after = store.get(run_id)
        assert after == before and after.status == RUNNING and after.pid == 4343
        assert store.epochs(run_id) == [] and after.progress is None and after.checkpoint is None

        # the new attempt writes as usual
        store.add_epoch(run_id, result(1), result(1), owner=new)
        assert store.finish(run_id, COMPLETED, best=result(1), owner=new)
        assert store.get(run_id).status == COMPLETED and [e.epoch for e in store.epochs(run_id)] == [1]


def test_the_heartbeat_revives_only_a_crashed_row_its_process_owns(db_url):
    with Store.open(db_url) as store:
        mine, taken = queued(store, 1), queued(store, 2)
        owner = store.claim(mine, 4242, this_host())
        stale = store.claim(taken, 4242, "another-host")
        later = utcnow() + timedelta(hours=1)
        assert sorted(store.refresh_crashed(now=later)) == sorted([mine, taken])
        assert store.heartbeat(mine, owner=owner) and store.get(mine).status == RUNNING   # wrongly taken for dead
        assert store.finish(mine, COMPLETED, owner=owner)
        assert not store.heartbeat(mine, owner=owner)                    # ended: nothing revived
        assert store.get(mine).status == COMPLETED

        crash = store.get(taken)
        p = plan(store, taken, restart=True)
        store.requeue_to_resume(p.run, p.from_epoch, p.best)             # queued again: no process yet
        with pytest.raises(Superseded, match="no process yet"):
            store.heartbeat(taken, owner=stale)
        assert store.get(taken).status == "queued" and crash.status == CRASHED


def test_an_id_reused_after_kni_rm_is_another_run(tmp_path):
    """SQLite gives a removed run's id to the next run (no AUTOINCREMENT): a process of the
    removed run must not write into the new one."""
    with Store.open(tmp_path / "runs.db") as store:
        run_id = queued(store)
        old = store.claim(run_id, 4242, this_host())
        assert store.delete([run_id]) == 1
        with pytest.raises(RunGone) as info:
            store.add_epoch(run_id, result(1), result(1), owner=old)
        assert not isinstance(info.value, Superseded)
        assert queued(store) == run_id                                   # the id is reused
        with pytest.raises(Superseded):
            store.add_epoch(run_id, result(1), result(1), owner=old)
        assert not store.epochs(run_id) and store.get(run_id).status == "queued"


def test_the_launcher_never_ends_an_attempt_it_did_not_start(tmp_path, monkeypatch):
    """The launcher's run process is stopped; meanwhile its run is resumed by another command,
    whose process claims the row; then the first process exits: the first launcher leaves the
    row to the new attempt (it used to mark it crashed)."""
    store = Store.open(tmp_path / "runs.db")
    run_id = queued(store)

    def superseded_then_exits(url, i, **kwargs):
        store.claim(i, 4242, this_host())
        crash_and_resume(store, i)
        store.claim(i, os.getpid(), this_host())                         # the new attempt's process
        return subprocess.Popen([sys.executable, "-c", f"raise SystemExit({EXIT_SUPERSEDED})"])

    monkeypatch.setattr(launcher_module, "spawn", superseded_then_exits)
    problems = []
    launcher = Launcher(store, poll=0.05, on_problem=lambda i, m: problems.append((i, m)))
    assert launcher.run([run_id]) == {run_id: "superseded"}
    assert [i for i, _ in problems] == [run_id] and "another attempt" in problems[0][1]
    run = store.get(run_id)
    assert run.status == RUNNING and run.pid == os.getpid() and run.error is None
    store.close()


def stop_between_writes(store: Store, run_id: int, pid: int) -> None:
    """SIGSTOP ``pid`` and mark its run crashed. Stopped inside a write, it holds SQLite's write
    lock, so nothing can mark it until it goes on: then it is continued and stopped again."""
    later = utcnow() + timedelta(hours=1)
    for _ in range(100):
        os.kill(pid, signal.SIGSTOP)
        if store.refresh_crashed(now=later) == [run_id]:
            return
        assert store.get(run_id).status == RUNNING, f"run {run_id} ended before it was stopped"
        os.kill(pid, signal.SIGCONT)
        time.sleep(0.05)
    raise AssertionError(f"run {run_id} could not be marked crashed while its process was stopped")


def test_a_stopped_run_process_resumed_elsewhere_stops_when_continued(tmp_path):
    """The audit's case with real processes: a run process is stopped (SIGSTOP) and taken for
    crashed, the run is resumed in a new process, then the old one is continued (SIGCONT): it
    stops without writing (no duplicate epoch, no ``failed``), and the new attempt completes
    with every epoch."""
    db = tmp_path / "runs.db"
    store = Store.open(db)
    run_id = queued(store, epochs=60)      # not over before the SIGSTOP lands
    logs = {name: open(tmp_path / f"{name}.log", "wb") for name in ("old", "new")}
    old = spawn(store.url, run_id, log_file=logs["old"])
    new = None
    try:
        assert wait_for(lambda: len(store.epochs(run_id)) >= 1, TIMEOUT)
        stop_between_writes(store, run_id, old.pid)
        p = plan(store, run_id, restart=True)
        store.requeue_to_resume(p.run, p.from_epoch, p.best)
        new = spawn(store.url, run_id, log_file=logs["new"])
        assert wait_for(lambda: store.get(run_id).pid == new.pid, TIMEOUT)
        os.kill(old.pid, signal.SIGCONT)
        assert old.wait(TIMEOUT) == EXIT_SUPERSEDED, (tmp_path / "old.log").read_text()
        assert new.wait(TIMEOUT) == 0, (tmp_path / "new.log").read_text()
    finally:
        for p in (old, new):
            if p is not None and p.poll() is None:
                os.kill(p.pid, signal.SIGCONT)
                p.kill()
                p.wait()
        for f in logs.values():
            f.close()
    assert "belongs to another attempt" in (tmp_path / "old.log").read_text()
    run = store.get(run_id)
    assert run.status == COMPLETED and run.pid == new.pid and run.error is None
    assert [e.epoch for e in store.epochs(run_id)] == list(range(1, run.n_epochs + 1)) and run.n_epochs == 60
    store.close()


def test_a_superseded_process_replaces_none_of_the_runs_files(tmp_path):
    """The CI's case: stopped between its last owned epoch and the state write, the old process,
    continued, replaced the new attempt's last-epoch state with its own epoch, and the new attempt
    refused it ("holds epoch 7, the run stores 1"). Files are now replaced only by their owner."""
    import torch

    from kni_core.checkpoint import write_atomically
    with Store.open(tmp_path / "runs.db") as store:
        run_id = queued(store)
        old = store.claim(run_id, 4242, this_host())
        store.add_epoch(run_id, result(1), result(1), owner=old)
        crash_and_resume(store, run_id)
        new = store.claim(run_id, 4343, this_host())
        store.check_owner(run_id, new)                          # the new attempt's: it may write
        with pytest.raises(Superseded):
            store.check_owner(run_id, old)
        path = tmp_path / "run-1.last.pt"
        write_atomically(path, {"epoch": 1}, lambda: store.check_owner(run_id, new))
        with pytest.raises(Superseded):
            write_atomically(path, {"epoch": 7}, lambda: store.check_owner(run_id, old))
        assert torch.load(path, weights_only=True) == {"epoch": 1}
        assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []
