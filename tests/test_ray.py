"""The Ray executor (issue 9): a real local Ray instance and a two-node Ray cluster, both on
this machine, bounded in time and shut down at the end of their test. Ray is heavy: the tests
that start it are few, small and marked ``ray`` (``-m ray`` selects them); without Ray they
skip, except under CI, where they fail. The tests without the mark check what needs no Ray
running: a clear error without the extra, no ``import ray`` on startup, the recipe key."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from workbench.cli import app
from workbench.recipe import RecipeError, parse_recipe
from workbench.runs.launcher import Launcher
from workbench.runs.provenance import Code
from workbench.runs.rows import new_run
from workbench.store.liveness import this_host
from workbench.store.repository import Store
from workbench.store.statuses import CANCELLED, COMPLETED, CRASHED, RUNNING

from helpers import tiny_recipe, wait_for

#: Seconds any one wait of these tests may take (Ray starts slowly on a loaded 2-core machine).
TIMEOUT = 180


def need_ray():
    """The ray module; skip without it (fail under CI: the dev extra installs it)."""
    try:
        import ray
    except ImportError:
        if os.environ.get("CI"):
            pytest.fail('CI is set but Ray is not installed (pip install -e ".[dev]" installs it)', pytrace=False)
        pytest.skip("Ray is not installed (the ray extra)")
    return ray


def recipe_file(tmp_path: Path, name: str = "tiny", epochs: int = 2, extra: str = "") -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(tiny_recipe(name, epochs=epochs) + extra)
    return path


# --------------------------------------------------------------------------------------------
# without a Ray instance


def test_without_the_ray_extra_the_error_names_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)              # as if Ray were not installed
    db = str(tmp_path / "runs.db")
    runner = CliRunner()
    for args in (["--executor", "ray"], []):
        recipe = recipe_file(tmp_path, extra="" if args else "executor: ray\n")
        res = runner.invoke(app, ["run", str(recipe), "--db", db, *args])
        assert res.exit_code == 2, res.output
        assert 'pip install "kni-workbench[ray]"' in res.stderr and "Traceback" not in res.output
    res = runner.invoke(app, ["runs", "--json", "--db", db])
    assert res.exit_code == 0 and json.loads(res.stdout) == []  # nothing was queued


def test_the_executor_key_and_option_are_validated(tmp_path):
    rec = parse_recipe(tiny_recipe("t", epochs=1) + "executor: ray\n")
    assert rec.executor == "ray" and rec.to_dict()["executor"] == "ray"
    assert parse_recipe(tiny_recipe("t", epochs=1)).executor == "local"
    # not part of the configuration: a run executed by Ray joins the local runs' group
    assert rec.base.config_hash() == parse_recipe(tiny_recipe("t", epochs=1)).base.config_hash()
    with pytest.raises(RecipeError) as info:
        parse_recipe(tiny_recipe("t", epochs=1) + "executor: slurm\n", path="r.yaml")
    assert str(info.value) == "r.yaml:8: executor: expected one of local, ray, got 'slurm'"
    with pytest.raises(RecipeError, match="--set executor=dask: expected one of local, ray"):
        parse_recipe(tiny_recipe("t", epochs=1), overrides=["executor=dask"])
    res = CliRunner().invoke(app, ["run", str(recipe_file(tmp_path)), "--executor", "dask",
                                   "--db", str(tmp_path / "runs.db")])
    assert res.exit_code == 2 and "--executor: expected one of local, ray, got 'dask'" in res.stderr
    from workbench.recipe import EXECUTORS as recipe_executors
    from workbench.store.records import EXECUTORS as store_executors
    assert recipe_executors == store_executors


def test_commands_never_import_ray(tmp_path):
    """Importing Ray takes seconds: the commands that do not use it never import it."""
    db = str(tmp_path / "runs.db")
    recipe = recipe_file(tmp_path, epochs=1)
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from workbench.cli import app\n"
        "import workbench.runs.ray_executor, workbench.tui.app\n"
        "for args in (['run', sys.argv[1], '--db', sys.argv[2]], ['runs', '--db', sys.argv[2]],\n"
        "             ['compare', '--all', '--db', sys.argv[2]], ['show', '1', '--db', sys.argv[2]]):\n"
        "    res = CliRunner().invoke(app, args)\n"
        "    assert res.exit_code == 0, (args, res.output)\n"
        "print(sorted(m for m in sys.modules if m == 'ray' or m.startswith('ray.')))\n")
    out = subprocess.run([sys.executable, "-c", code, str(recipe), db], capture_output=True, text=True,
                         timeout=TIMEOUT, env={**os.environ})
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().splitlines()[-1] == "[]"


# --------------------------------------------------------------------------------------------
# a local Ray instance started by kni run


@pytest.mark.ray
def test_kni_run_on_a_local_ray_instance_gives_the_local_numbers(tmp_path, monkeypatch):
    """`kni run --executor ray` starts a local Ray instance, runs each seed as a task writing the
    same rows as a local run, and shuts Ray down at its end; one thread each way, the numbers
    are the same as the local executor's."""
    ray = need_ray()
    monkeypatch.setenv("OMP_NUM_THREADS", "1")                # the local runs' threads: as the tasks'
    recipe = recipe_file(tmp_path)
    db = str(tmp_path / "runs.db")
    runner = CliRunner()
    res = runner.invoke(app, ["run", str(recipe), "--seeds", "1,2", "--jobs", "2", "--json", "--db", db])
    assert res.exit_code == 0, res.output
    local = [json.loads(line) for line in res.stdout.splitlines()]
    try:
        res = runner.invoke(app, ["run", str(recipe), "--seeds", "1,2", "--executor", "ray", "--ray-cpus", "1",
                                  "--json", "--db", db])
        assert res.exit_code == 0, res.output
        assert not ray.is_initialized()                        # the command's Ray instance has ended
    finally:
        ray.shutdown()
    remote = [json.loads(line) for line in res.stdout.splitlines()]
    key = lambda e: (e["event"], e["seed"], e.get("epoch", 0))            # noqa: E731
    drop = lambda e: {k: v for k, v in e.items() if not k.endswith("_seconds") and k != "run_id"}   # noqa: E731
    assert [drop(e) for e in sorted(remote, key=key)] == [drop(e) for e in sorted(local, key=key)]
    assert len([e for e in remote if e["event"] == "epoch"]) == 4
    with Store.open(db) as store:
        runs = store.runs()
        assert [(r.seed, r.executor, r.status, r.n_epochs) for r in runs] == [
            (1, "local", COMPLETED, 2), (2, "local", COMPLETED, 2), (1, "ray", COMPLETED, 2), (2, "ray", COMPLETED, 2)]
        ray_runs = runs[2:]
        assert all(r.host == this_host() and r.pid not in (None, os.getpid()) and r.pid_start for r in ray_runs)
        assert len({r.config_hash for r in runs}) == 1         # one group: the executor is not configuration
    res = runner.invoke(app, ["show", str(ray_runs[0].id), "--no-plot", "--db", db])
    assert res.exit_code == 0 and "executor ray" in res.stdout
    res = runner.invoke(app, ["compare", "--all", "--json", "--db", db])
    assert json.loads(res.stdout)["groups"][0]["n"] == 2        # one run per seed counts


# --------------------------------------------------------------------------------------------
# a two-node cluster: runs spread over the nodes, a dead node's run crashed, Ctrl-C cancels


def _ancestors(pid: int, depth: int = 6) -> list[int]:
    """pid's parent, grandparent... (from /proc)."""
    out = []
    for _ in range(depth):
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            break
        pid = int(stat[stat.rindex(")") + 2:].split()[1])
        if pid <= 1:
            break
        out.append(pid)
    return out


@pytest.mark.ray
@pytest.mark.postgres
def test_two_node_cluster_spreads_runs_and_a_dead_nodes_run_crashes(postgres_db):
    """Two nodes of one CPU each, two runs of one CPU each (on PostgreSQL, the store a cluster
    shares): one run per node; the worker node is killed: its run ends crashed, with its
    epochs; then a stop request (Ctrl-C) cancels the other through Ray, its epochs kept."""
    ray = need_ray()
    from ray.cluster_utils import Cluster

    from workbench.runs.ray_executor import RayExecutor
    cluster = None
    store = Store.open(postgres_db)
    try:
        cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
        worker = cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes(timeout=TIMEOUT)
        ray.init(address=cluster.address, log_to_driver=False)
        raylets = {node: node.all_processes["raylet"][0].process.pid for node in (cluster.head_node, worker)}
        from workbench.runs.ray_executor import ExecutorError
        with pytest.raises(ExecutorError, match="largest node of the cluster has 1"):   # 2 CPUs in all, 1 per node
            RayExecutor(cpus_per_run=2).__enter__()
        with pytest.raises(ExecutorError, match="no node of the Ray cluster has a GPU"):
            RayExecutor(device="cuda").__enter__()
        assert ray.is_initialized()                              # a connection it did not make stays open
        # Far more epochs than the test lasts: waiting out the node's death took long enough on a
        # fast machine for a 200-epoch run to finish before the stop request (completed, not cancelled).
        rec = parse_recipe(tiny_recipe("long", epochs=20000))
        ids = [store.create_run(new_run(rec.name, rec.text, rec.config_for(s), prov=Code()), executor="ray")
               for s in (1, 2)]
        statuses: dict = {}
        with RayExecutor(cpus_per_run=1, device="cpu") as executor:
            assert not executor.started_locally                  # the cluster's connection is used as it is
            launcher = Launcher(store, jobs=2, executor=executor, poll=0.2, grace=TIMEOUT)
            thread = threading.Thread(target=lambda: statuses.update(launcher.run(ids)), daemon=True)
            thread.start()
            assert wait_for(lambda: all(len(store.epochs(i)) >= 1 for i in ids), TIMEOUT), \
                [(r.status, r.error) for r in store.runs()]
            node_of = {}
            for run in store.runs(ids=ids):
                assert run.status == RUNNING and run.host == this_host() and run.executor == "ray"
                up = _ancestors(run.pid)
                node_of[run.id] = next(node for node, pid in raylets.items() if pid in up)
            assert set(node_of.values()) == {cluster.head_node, worker}       # spread over both nodes
            victim = next(i for i, node in node_of.items() if node is worker)
            survivor = next(i for i in ids if i != victim)
            victim_pid = store.get(victim).pid
            cluster.remove_node(worker, allow_graceful=False)              # the node dies
            assert wait_for(lambda: store.get(victim).status == CRASHED, TIMEOUT)
            assert wait_for(lambda: not Path(f"/proc/{victim_pid}").exists(), 30)   # its run process died with it
            n_survivor = len(store.epochs(survivor))
            assert store.get(survivor).status == RUNNING
            assert wait_for(lambda: len(store.epochs(survivor)) > n_survivor, TIMEOUT)   # unaffected
            launcher.request_stop()                                         # Ctrl-C: Ray cancels the task
            thread.join(TIMEOUT)
            assert not thread.is_alive()
        assert statuses == {victim: CRASHED, survivor: CANCELLED}
        crashed, cancelled = store.get(victim), store.get(survivor)
        assert "NodeDiedError" in crashed.error and crashed.n_epochs >= 1
        assert [e.epoch for e in store.epochs(victim)] == list(range(1, crashed.n_epochs + 1))
        assert "SIGTERM" in cancelled.error and cancelled.n_epochs > n_survivor and cancelled.best_epoch
    finally:
        store.close()
        ray.shutdown()
        if cluster is not None:
            cluster.shutdown()


@pytest.mark.ray
def test_a_run_on_a_dead_node_is_retried_on_another_and_ends_as_if_never_interrupted(tmp_path):
    """kni run --executor ray --retries 1, as the launcher does it: the only node with a CPU
    dies after the run's second epoch; a new node joins; the run resumes there from its
    last-epoch state and ends, epoch by epoch, bitwise as the same seed trained uninterrupted."""
    ray = need_ray()
    import torch
    from ray.cluster_utils import Cluster

    from kni_core.data import prepare
    from kni_core.train import Trainer
    from workbench.runs.ray_executor import RayExecutor
    rec = parse_recipe(tiny_recipe("retry", epochs=150))     # long enough to outlive the kill by far
    cfg = rec.config_for(1)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)                                 # the threads of a 1-CPU task's run
    try:
        expected = [(r.epoch, r.train_loss, r.valid_auc, r.test_auc) for r in Trainer(cfg, prepare(cfg)).fit()]
    finally:
        torch.set_num_threads(threads)
    cluster = None
    store = Store.open(tmp_path / "runs.db")
    try:
        cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False})
        first = cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes(timeout=TIMEOUT)
        ray.init(address=cluster.address, log_to_driver=False)
        run_id = store.create_run(new_run(rec.name, rec.text, cfg, prov=Code()), executor="ray")
        statuses: dict = {}
        retried: list = []
        with RayExecutor(cpus_per_run=1, device="cpu") as executor:
            launcher = Launcher(store, executor=executor, poll=0.2, retries=1,
                                on_retry=lambda i, message: retried.append(message))
            thread = threading.Thread(target=lambda: statuses.update(launcher.run([run_id])), daemon=True)
            thread.start()
            assert wait_for(lambda: len(store.epochs(run_id)) >= 2 and store.get(run_id).last_state_bytes, TIMEOUT)
            cluster.remove_node(first, allow_graceful=False)            # the node dies, its run with it
            cluster.add_node(num_cpus=1)                                 # another one joins
            thread.join(TIMEOUT * 2)
            assert not thread.is_alive()
        run = store.get(run_id)
        assert statuses == {run_id: COMPLETED}, (run.status, run.error)
        assert len(retried) == 1 and "retry 1 of 1: continues after epoch" in retried[0]
        (crashed, completed) = store.attempts(run)
        assert crashed.status == CRASHED and "NodeDiedError" in crashed.error and crashed.epochs >= 2
        assert completed.status == COMPLETED and run.n_epochs == 150
        assert [(e.epoch, e.train_loss, e.valid_auc, e.test_auc) for e in store.epochs(run_id)] == expected
    finally:
        store.close()
        ray.shutdown()
        if cluster is not None:
            cluster.shutdown()


# --------------------------------------------------------------------------------------------
# the workbench: the executor chosen in the start dialog, on a PostgreSQL store


@pytest.mark.ray
@pytest.mark.postgres
def test_workbench_starts_ray_runs_on_postgres(tmp_path, monkeypatch, postgres_db):
    """kni-workbench on PostgreSQL: the start dialog offers the executor (Ray is installed),
    ray is chosen, the detached launcher runs the seeds as tasks of its own local Ray instance
    and the Runs tab shows them live until they complete."""
    import asyncio

    from textual.widgets import Input, Select

    from workbench.tui.app import WorkbenchApp
    from workbench.tui.screens.dialogs import StartDialog
    need_ray()
    monkeypatch.chdir(tmp_path)
    recipes = tmp_path / "recipes"
    recipes.mkdir()
    recipe_file(recipes, name="quickstart", epochs=2)
    store = Store.open(postgres_db)

    async def until(pilot, predicate, timeout: float, what: str) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end and not predicate():
            await pilot.pause(0.2)
        assert predicate(), f"timed out after {timeout:.0f} s waiting for {what}"

    async def body() -> None:
        app = WorkbenchApp(store, recipes, gpus=[])
        async with app.run_test(size=(120, 40)) as pilot:
            await pilot.pause()                     # mounted before the test reaches in
            assert app.query_one("#recipes-pane").select_name("quickstart")
            await pilot.press("s")
            await until(pilot, lambda: isinstance(app.screen, StartDialog), 10, "the start dialog")
            dialog = app.screen
            assert dialog.query_one("#executor", Select).value == "local"     # the recipe's (default) executor
            dialog.query_one("#seeds", Input).value = "1..2"
            dialog.query_one("#jobs", Input).value = "2"
            dialog.query_one("#executor", Select).value = "ray"
            await pilot.click("#start")
            await until(pilot, lambda: len(app.data.runs) == 2, 60, "two queued runs")
            await until(pilot, lambda: any(r.n_epochs for r in app.data.runs.values()), TIMEOUT, "a first epoch")
            await until(pilot, lambda: all(app.data.status(r) == COMPLETED for r in app.data.runs.values()),
                        TIMEOUT, "both runs completed")
            launches = list(app.launches)
        for launch in launches:                     # the launcher (and its Ray instance) ends with its runs
            assert launch.proc.wait(TIMEOUT) == 0
    asyncio.run(body())
    runs = store.runs()
    assert [(r.seed, r.executor, r.status, r.n_epochs) for r in runs] == [(1, "ray", COMPLETED, 2),
                                                                         (2, "ray", COMPLETED, 2)]
    store.close()
