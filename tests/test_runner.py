"""The run lifecycle with real child processes: concurrent writers, SIGKILL -> crashed,
SIGINT -> cancelled with epochs kept, an exception -> failed with the traceback, and a
launcher that is interrupted or loses a child."""

from __future__ import annotations

import json
import os
import signal
import threading

import pytest
from typer.testing import CliRunner

from kni_core.data import prepare
from workbench.cli import app
from workbench.recipe import parse_recipe
from workbench.runner import EXIT_CANCELLED, Launcher, assign_gpus, new_run, spawn
from workbench.store import CANCELLED, COMPLETED, CRASHED, FAILED, RUNNING, Store, wait_for

TINY = """\
name: {name}
dataset: {{name: synthetic, min_relation_triples: 1, synthetic: {{preset: tiny}}}}
model: {{hop_n_sample: [1, 4], max_degree: 16}}
train: {{epochs: {epochs}, patience: 0}}
eval: {{n_eval: 2}}
seeds: [1]
device: cpu
"""
TIMEOUT = 90


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return str(tmp_path_factory.mktemp("cache"))


@pytest.fixture(autouse=True)
def _env(cache, monkeypatch):
    monkeypatch.setenv("KNI_CACHE_DIR", cache)
    monkeypatch.delenv("KNI_DB", raising=False)
    monkeypatch.delenv("KNI_STALE_SECONDS", raising=False)


def queue(store: Store, seed: int, epochs: int = 200, name: str = "long", **dataset) -> int:
    rec = parse_recipe(TINY.format(name=name, epochs=epochs))
    cfg = rec.config_for(seed)
    for k, v in dataset.items():
        setattr(cfg.dataset, k, v)
    if not dataset:
        prepare(cfg)                                  # as kni run does before spawning
    return store.create_run(new_run(rec.name, rec.text, cfg, prov=(None, None)))


def has_epochs(store: Store, run_id: int, n: int = 1):
    return lambda: len(store.epochs(run_id)) >= n


def test_signals_and_exceptions_in_run_processes(tmp_path):
    """Three run processes at once: one killed with SIGKILL, one interrupted with SIGINT, one
    whose configuration raises."""
    db = str(tmp_path / "runs.db")
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
    assert store.get(killed).status == CRASHED                 # written back, epochs all there
    assert len(store.epochs(killed)) == n_killed
    res = CliRunner().invoke(app, ["show", str(failing), "--db", db])
    assert res.exit_code == 0 and "DataError" in res.stdout
    store.close()


def test_launcher_loses_a_child_then_is_interrupted(tmp_path):
    """jobs=1 over three runs: the first child is SIGKILLed (the launcher marks it crashed at
    once), the launcher is stopped during the second (SIGTERM -> cancelled, epochs kept) and
    the third never starts (cancelled)."""
    store = Store.open(tmp_path / "runs.db")
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
    assert "SIGTERM" in second.error and second.n_epochs >= 2 and second.best_epoch is not None
    assert third.started_at is None and third.n_epochs == 0
    assert [e[0] for e in ended] == [ids[0], ids[2], ids[1]]   # the queue is cancelled at once
    store.close()


def test_kni_run_two_seeds_in_parallel(tmp_path):
    """`kni run --jobs 2 --json`: two processes write the same database at the same time; the
    JSON lines are those of console.JsonLines; seeds added later join the group."""
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(TINY.format(name="tiny", epochs=3))
    db = str(tmp_path / "runs.db")
    runner = CliRunner()
    res = runner.invoke(app, ["run", str(recipe), "--seeds", "1,2", "--jobs", "2", "--json", "--db", db])
    assert res.exit_code == 0, res.output
    events = [json.loads(line) for line in res.stdout.splitlines()]
    epochs = [e for e in events if e["event"] == "epoch"]
    ends = [e for e in events if e["event"] == "end"]
    assert sorted((e["seed"], e["epoch"]) for e in epochs) == [(s, n) for s in (1, 2) for n in (1, 2, 3)]
    assert set(epochs[0]) == {"event", "run_id", "seed", "epoch", "train_loss", "valid_auc", "valid_logloss",
                              "valid_acc", "test_auc", "test_logloss", "test_acc", "train_seconds", "eval_seconds"}
    assert sorted(e["seed"] for e in ends) == [1, 2]
    assert set(ends[0]) == {"event", "run_id", "seed", "best_epoch", "test_auc", "test_logloss", "test_acc"}

    with Store.open(db) as store:
        runs = store.runs()
        assert [(r.seed, r.status, r.n_epochs) for r in runs] == [(1, COMPLETED, 3), (2, COMPLETED, 3)]
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
    assert [(r["seed"], r["status"], r["epochs"]) for r in listed] == [(1, COMPLETED, 3), (2, COMPLETED, 3)]
    assert {"id", "recipe", "dataset", "model", "seed", "status", "epochs", "pid", "best_epoch", "test_auc"} <= \
           set(listed[0])
    res = runner.invoke(app, ["compare", "--recipe", "tiny", "--json", "--db", db])
    group = json.loads(res.stdout)["groups"]
    assert len(group) == 1 and group[0]["n"] == 2 and group[0]["seeds"] == "1 2"


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
