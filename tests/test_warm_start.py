"""Run processes forked from the warm forkserver (workbench.runs.warm_start) are the processes a
cold start gives: the same numbers, their output in the launcher's log file, a session of their
own, and a life of their own when the launcher exits."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from kni_core.data import prepare
from workbench.recipe import parse_recipe
from workbench.runs import warm_start
from workbench.runs.child import EXIT_CANCELLED
from workbench.runs.launcher import spawn, starts_warm
from workbench.runs.provenance import Code
from workbench.runs.rows import new_run
from workbench.store.repository import Store
from workbench.store.statuses import CANCELLED, RUNNING

from helpers import tiny_recipe, wait_for

TIMEOUT = 120
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def no_gpu_here(monkeypatch):
    """Warm starts are for machines without a GPU; the suite also runs on one (scripts/gpu-check)."""
    monkeypatch.setattr("workbench.runs.launcher.visible_gpus", lambda device: [])


def queue(store: Store, seed: int, epochs: int) -> int:
    rec = parse_recipe(tiny_recipe("warm", epochs=epochs))
    cfg = rec.config_for(seed)
    prepare(cfg)
    return store.create_run(new_run(rec.name, rec.text, cfg, prov=Code()))


def numbers(store: Store, run_id: int) -> list[tuple]:
    return [(e.epoch, e.train_loss, e.valid_auc, e.valid_logloss, e.valid_acc, e.test_auc, e.test_logloss,
             e.test_acc) for e in store.epochs(run_id)]


def test_a_warm_run_has_the_numbers_of_a_cold_one(tmp_path, monkeypatch):
    store = Store.open(str(tmp_path / "runs.db"))
    warm_id, cold_id = queue(store, 7, epochs=3), queue(store, 7, epochs=3)
    warm = spawn(store.url, warm_id, threads=1)
    assert isinstance(warm, warm_start.WarmProcess)
    assert warm.wait(TIMEOUT) == 0
    monkeypatch.setenv("KNI_WARM_START", "0")
    cold = spawn(store.url, cold_id, threads=1)
    assert isinstance(cold, subprocess.Popen)
    assert cold.wait(TIMEOUT) == 0
    assert len(numbers(store, warm_id)) == 3
    assert numbers(store, warm_id) == numbers(store, cold_id)          # bitwise
    assert store.get(warm_id).pid == warm.pid
    store.close()


def test_a_warm_run_writes_to_the_log_in_a_session_of_its_own_and_ends_cancelled(tmp_path):
    store = Store.open(str(tmp_path / "runs.db"))
    run_id = queue(store, 1, epochs=500)
    log = tempfile.TemporaryFile()
    proc = spawn(store.url, run_id, log_file=log)
    try:
        assert wait_for(lambda: len(store.epochs(run_id)) >= 1, TIMEOUT)
        assert os.getsid(proc.pid) == proc.pid           # a Ctrl-C in the launcher's terminal misses it
        proc.terminate()
        assert proc.wait(TIMEOUT) == EXIT_CANCELLED
    finally:
        proc.kill()
    log.seek(0)
    assert "kni_core.data.prepare: reused the preprocessed cache" in log.read().decode()   # its logging
    assert store.get(run_id).status == CANCELLED
    store.close()


def test_a_warm_run_outlives_the_launcher_that_started_it(tmp_path):
    """The launcher exits normally (multiprocessing would join its children then) while its run
    trains on; the run is then cancelled through its pid, and records that itself."""
    store = Store.open(str(tmp_path / "runs.db"))
    run_id = queue(store, 1, epochs=500)
    launcher = (f"import sys; from workbench.runs import launcher, warm_start\n"
                f"launcher.visible_gpus = lambda device: []\n"
                f"proc = launcher.spawn({store.url!r}, {run_id})\n"
                f"assert isinstance(proc, warm_start.WarmProcess)\n"
                f"print(proc.pid, flush=True)\n")
    said = tmp_path / "launcher.out"        # a file: multiprocessing's resource tracker holds a pipe till the runs end
    with said.open("w") as out:
        done = subprocess.run([sys.executable, "-c", launcher], cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                              timeout=TIMEOUT)
    assert done.returncode == 0, said.read_text()
    pid = int(said.read_text())
    try:
        assert wait_for(lambda: len(store.epochs(run_id)) >= 1, TIMEOUT)
        run = store.get(run_id)
        assert run.status == RUNNING and run.pid == pid
        os.kill(pid, signal.SIGTERM)
        assert wait_for(lambda: store.get(run_id).status == CANCELLED, TIMEOUT)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    store.close()


def test_runs_start_cold_on_a_gpu_machine_or_when_asked(monkeypatch):
    assert starts_warm(None)
    assert not starts_warm("0")                          # a GPU run: CUDA_VISIBLE_DEVICES before CUDA loads
    monkeypatch.setattr("workbench.runs.launcher.visible_gpus", lambda device: ["0", "1"])
    assert not starts_warm(None)                         # a CPU run beside GPUs: never fork near CUDA
    monkeypatch.setattr("workbench.runs.launcher.visible_gpus", lambda device: [])
    monkeypatch.setenv("KNI_WARM_START", "0")
    assert not starts_warm(None)
