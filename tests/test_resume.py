"""No training lost (issue 18): a run continued from its last-epoch state produces, epoch by
epoch, the numbers of the run that was never interrupted - bitwise, on CPU."""

from __future__ import annotations

import dataclasses
import json
import re

import pytest
import torch

from kni_core import resume
from kni_core.config import DatasetConfig, ModelConfig, RunConfig, TrainConfig
from kni_core.data import prepare
from kni_core.models.mf import MFConfig
from kni_core.models.ripplenet import RippleNetConfig
from kni_core.train import Trainer

EPOCHS = 4


def config(model, **train) -> RunConfig:
    return RunConfig(dataset=DatasetConfig(name="synthetic", min_relation_triples=1, synthetic={"preset": "tiny"}),
                     model=model, train=TrainConfig(**{"epochs": EPOCHS, "patience": 0, **train}), device="cpu",
                     seed=3).validate()


MODELS = {
    "kni": ModelConfig(hop_n_sample=[1, 4], max_degree=16, hidden=16),      # dropout and neighbour sampling
    "mf": MFConfig(dim=4),
    "ripplenet": RippleNetConfig(dim=4, n_memory=4),
}


def numbers(results):
    return [(r.epoch, r.train_loss, r.valid_auc, r.valid_logloss, r.test_auc, r.test_acc) for r in results]


@pytest.mark.parametrize("name", sorted(MODELS))
@pytest.mark.parametrize("stop_after", [1, 3])
def test_a_resumed_run_is_bitwise_the_uninterrupted_one(tmp_path, name, stop_after):
    cfg = config(MODELS[name])
    data = prepare(cfg)
    whole = list(Trainer(cfg, data).fit())

    first = Trainer(cfg, data)
    run = first.fit()
    done = [next(run) for _ in range(stop_after)]
    resume.save(tmp_path / "last.pt", resume.capture(first, {"run": 1}))
    del first, run                                      # the process dies here

    state = resume.read(tmp_path / "last.pt", config=cfg.to_dict(), identity={"run": 1})
    second = Trainer(cfg, data)
    rest = list(second.fit(resume=state))
    assert numbers(done + rest) == numbers(whole)       # exact equality of floats: bitwise
    assert second.summary.best_epoch == max(whole, key=lambda r: r.valid_auc).epoch
    assert second.summary.epochs_run == EPOCHS


def test_a_run_that_had_stopped_early_ends_at_once_when_resumed(tmp_path):
    cfg = config(MODELS["mf"], patience=1, lr=0.05, epochs=30)     # overfits fast: stops early
    data = prepare(cfg)
    whole = list(Trainer(cfg, data).fit())
    assert len(whole) < 30
    first = Trainer(cfg, data)
    for _ in first.fit():
        pass
    state = resume.capture(first)
    second = Trainer(cfg, data)
    assert list(second.fit(resume=state)) == []
    assert second.summary.stopped_early and second.summary.epochs_run == len(whole)


def test_a_damaged_or_foreign_state_is_refused(tmp_path):
    from kni_core.checkpoint import CheckpointMissing, CheckpointUnreadable
    cfg = config(MODELS["mf"])
    trainer = Trainer(cfg, prepare(cfg))
    next(trainer.fit())
    path = tmp_path / "last.pt"
    resume.save(path, resume.capture(trainer, {"run": 1, "created": "a"}))
    with pytest.raises(CheckpointUnreadable, match="belongs to another run"):
        resume.read(path, identity={"run": 1, "created": "b"})
    other = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, lr=0.5)).validate()
    with pytest.raises(CheckpointUnreadable, match="another configuration"):
        resume.read(path, config=other.to_dict())
    with pytest.raises(CheckpointMissing, match="missing"):
        resume.read(tmp_path / "none.pt")
    state = torch.load(path, weights_only=True)     # a byte of the torch generator changed; the weights hold
    state["rng"]["torch"][100] ^= 1
    torch.save(state, path)
    with pytest.raises(CheckpointUnreadable, match="damaged .its optimizer state, generators or history"):
        resume.read(path)
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(CheckpointUnreadable, match="cannot be read"):
        resume.read(path)


class _SignalWhilePickled:
    """Sends ``kni cancel``'s signal while torch.save is half-way through the file."""

    def __init__(self, guard):
        self.guard = guard

    def __reduce__(self):
        self.guard.interrupt("kni cancel (asked through the database)")
        return (int, (7,))


def test_a_cancel_during_the_last_epoch_state_write_waits_for_the_whole_file(tmp_path, monkeypatch):
    """The run process cancels by raising from its signal handler: raised inside torch.save, the
    zip writer's own error hid the cancellation (the run ended failed; seen in CI). The write
    is shielded: the run is cancelled once the file is whole."""
    import signal

    from workbench.runs.errors import Cancelled
    from workbench.runs.execute import LastEpoch
    from workbench.runs.last_state import LastStateWriter
    from workbench.runs.listener import SignalGuard
    cfg = config(MODELS["mf"])
    trainer = Trainer(cfg, prepare(cfg))
    next(trainer.fit())
    guard = SignalGuard()
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    real_capture = resume.capture
    monkeypatch.setattr(resume, "capture", lambda t, identity: {**real_capture(t, identity),
                                                                "probe": _SignalWhilePickled(guard)})
    path = tmp_path / "last.pt"
    guard.install()
    try:
        with pytest.raises(Cancelled, match="kni cancel"):
            LastStateWriter(LastEpoch(path, {"run": 1}), shield=guard.section).after_epoch(trainer)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    import torch
    assert torch.load(path, weights_only=False)["probe"] == 7       # written whole, then cancelled


# --------------------------------------------------------------------------------------------
# kni resume: the run process killed, the run continued in its own row


ROOT = __import__("pathlib").Path(__file__).resolve().parents[1]
QUICKSTART = ROOT / "recipes" / "quickstart.yaml"


def stored_runs(db) -> list:
    """The runs a database holds so far; none while a starting process has not created it."""
    from workbench.store.repository import Store
    try:
        with Store.open(db, readonly=True) as store:
            return store.runs()
    except Exception:                            # noqa: BLE001 - not created yet
        return []


def kill_after(db, epochs: int, *args: str):
    """``kni run quickstart`` in a process of its own; SIGKILL to the run process once ``epochs``
    epochs are stored and a last-epoch state written (the state may be an epoch behind the rows:
    resuming drops the epochs it does not hold). Returns the run (crashed, as any reader sees it)."""
    import os
    import signal
    import subprocess
    import sys

    from workbench.store.repository import Store

    from helpers import wait_for
    proc = subprocess.Popen([sys.executable, "-m", "workbench.cli", "run", str(QUICKSTART), "--seeds", "1", "--db",
                             str(db), "--json", *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        def reached() -> bool:
            runs = stored_runs(db)
            return bool(runs) and runs[0].n_epochs >= epochs and runs[0].pid is not None \
                and runs[0].last_state_bytes is not None
        assert wait_for(reached, 120, every=0.05)
        with Store.open(db, readonly=True) as store:
            os.kill(store.runs()[0].pid, signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        proc.kill()
    with Store.open(db) as store:
        store.refresh_crashed()
        return store.runs()[0]


def state_file(db, run_id: int):
    from workbench.runs.checkpoints import last_state_path
    from workbench.store.repository import Store
    with Store.open(db, readonly=True) as store:
        return last_state_path(store.url, run_id)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    from typer.testing import CliRunner

    from workbench.cli import app
    from workbench.store.repository import Store
    db = tmp_path_factory.mktemp("whole") / "runs.db"
    res = CliRunner().invoke(app, ["run", str(QUICKSTART), "--seeds", "1", "--set", "train.epochs=6", "--db", str(db)])
    assert res.exit_code == 0, res.output
    with Store.open(db, readonly=True) as store:
        return [(e.epoch, e.train_loss, e.valid_auc, e.test_auc) for e in store.epochs(1)]


def test_kill_after_epoch_3_then_kni_resume_gives_the_uninterrupted_run(tmp_path, uninterrupted):
    from typer.testing import CliRunner

    from workbench.cli import app
    from workbench.store.records import run_seconds
    from workbench.store.repository import Store
    db = tmp_path / "runs.db"
    run = kill_after(db, 3, "--set", "train.epochs=6")
    assert run.status == "crashed" and 3 <= run.n_epochs < 6
    assert state_file(db, run.id).is_file()
    res = CliRunner().invoke(app, ["resume", str(run.id), "--db", str(db)])
    assert res.exit_code == 0, res.output
    # the kill may land while epoch 3's state is being written: the run then continues after the
    # state before, and trains that epoch again
    after = int(re.search(r"continues after epoch (\d+)", res.output).group(1))
    assert 1 <= after <= run.n_epochs
    with Store.open(db, readonly=True) as store:
        (again,) = store.runs()
        epochs = [(e.epoch, e.train_loss, e.valid_auc, e.test_auc) for e in store.epochs(run.id)]
        attempts = store.attempts(again)
    assert (again.id, again.status, again.n_epochs, again.config_hash) == (run.id, "completed", 6, run.config_hash)
    assert epochs == uninterrupted                                     # every float equal: bitwise
    assert [(a.status, a.epochs) for a in attempts] == [("crashed", run.n_epochs), ("completed", 6)]
    assert attempts[0].ended_at == run.heartbeat_at != run.finished_at   # its last sign of life, not when noticed
    spans = [(a.ended_at - a.started_at).total_seconds() for a in attempts]
    assert again.earlier_seconds == pytest.approx(spans[0])             # the run's time: both attempts
    assert run_seconds(again) == pytest.approx(sum(spans), abs=1e-3)
    assert not state_file(db, run.id).exists()               # completed: nothing left to resume
    shown = CliRunner().invoke(app, ["show", str(run.id), "--json", "--db", str(db)]).stdout
    assert [a["status"] for a in __import__("json").loads(shown)["attempts"]] == ["crashed", "completed"]
    assert __import__("json").loads(shown)["run"]["seconds"] == pytest.approx(sum(spans), abs=1e-3)
    assert " in 2 attempts" in CliRunner().invoke(app, ["show", str(run.id), "--db", str(db)]).stdout


def test_kni_run_retries_a_crashed_run_from_its_last_epoch(tmp_path, uninterrupted):
    """kni run --retries 1: the run process killed after epoch 3 is resumed by the launcher
    itself, and the run ends as the uninterrupted one."""
    from workbench.store.repository import Store
    db = tmp_path / "runs.db"
    run = kill_after(db, 3, "--set", "train.epochs=6", "--retries", "1")      # waits for kni run to exit
    with Store.open(db, readonly=True) as store:
        epochs = [(e.epoch, e.train_loss, e.valid_auc, e.test_auc) for e in store.epochs(run.id)]
        attempts = [(a.status, a.epochs >= 3) for a in store.attempts(run)]
    assert (run.status, run.n_epochs) == ("completed", 6)
    assert epochs == uninterrupted
    assert attempts == [("crashed", True), ("completed", True)]


def test_resume_refuses_what_it_cannot_continue_and_changes_nothing(tmp_path):
    import shutil

    from typer.testing import CliRunner

    from workbench.cli import app
    from workbench.store.repository import Store
    db = tmp_path / "runs.db"
    run = kill_after(db, 1, "--set", "train.epochs=50")
    state = state_file(db, run.id)
    kept = state.read_bytes()

    def refused(*expected: str) -> None:
        res = CliRunner().invoke(app, ["resume", str(run.id), "--db", str(db)])
        assert res.exit_code == 2, res.output
        for text in expected:
            assert text in res.output, res.output
        with Store.open(db, readonly=True) as store:
            now = store.get(run.id)
        assert (now.status, now.n_epochs) == ("crashed", run.n_epochs)          # nothing changed

    state.unlink()
    refused("cannot resume", "missing", "nothing resumed")
    state.write_bytes(kept[:len(kept) // 2])
    refused("cannot resume", "cannot be read")
    # another database's run 1, with its own last-epoch state, copied into this folder
    other = tmp_path / "other" / "runs.db"
    other.parent.mkdir()
    kill_after(other, 1, "--set", "train.epochs=50")
    shutil.copy(state_file(other, 1), state)
    refused("belongs to another run")
    state.write_bytes(kept)
    res = CliRunner().invoke(app, ["resume", "7", "--db", str(db)])
    assert res.exit_code == 2 and "no run with id 7" in res.output


def test_restart_trains_a_run_without_its_state_again_from_epoch_1(tmp_path, uninterrupted):
    from typer.testing import CliRunner

    from workbench.cli import app
    from workbench.store.repository import Store
    db = tmp_path / "runs.db"
    run = kill_after(db, 2, "--set", "train.epochs=6")
    state_file(db, run.id).unlink()
    res = CliRunner().invoke(app, ["resume", str(run.id), "--restart", "--db", str(db)])
    assert res.exit_code == 0, res.output
    assert "starts again from epoch 1" in res.output
    with Store.open(db, readonly=True) as store:
        again = store.get(run.id)
        epochs = [(e.epoch, e.train_loss, e.valid_auc, e.test_auc) for e in store.epochs(run.id)]
    assert (again.status, again.n_epochs) == ("completed", 6)
    assert epochs == uninterrupted                     # its stored epochs replaced, not appended to


def test_a_completed_run_extended_with_epochs_is_the_longer_run(tmp_path, uninterrupted):
    """kni resume --epochs: a 4-epoch run that kept its last-epoch state, continued to 6, has
    the 6-epoch run's numbers and joins its group (train.epochs is part of the configuration)."""
    import dataclasses

    from typer.testing import CliRunner

    from workbench.cli import app
    from workbench.recipe import load_recipe
    from workbench.store.repository import Store
    db = tmp_path / "runs.db"

    def cli(*args: str):
        return CliRunner().invoke(app, [*args, "--db", str(db)])
    res = cli("run", str(QUICKSTART), "--seeds", "1", "--set", "train.epochs=4", "--set", "train.keep_last=true")
    assert res.exit_code == 0, res.output
    with Store.open(db, readonly=True) as store:
        before = store.get(1)
    for args, expected in ((("--epochs", "4"), "not more than the 4 it was to run"), ((), "completed")):
        refused = cli("resume", "1", *args)
        assert refused.exit_code == 2 and expected in refused.output, refused.output
    res = cli("resume", "1", "--epochs", "6")
    assert res.exit_code == 0, res.output
    cfg = load_recipe(QUICKSTART).config_for(1)
    longer = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, epochs=6)).validate()
    assert "continues after epoch 4 to epoch 6" in res.output and longer.config_hash()[:8] in res.output
    with Store.open(db, readonly=True) as store:
        run = store.get(1)
        epochs = [(e.epoch, e.train_loss, e.valid_auc, e.test_auc) for e in store.epochs(1)]
    assert (run.status, run.n_epochs, run.max_epochs, run.config["train"]["epochs"]) == ("completed", 6, 6, 6)
    assert run.config_hash == longer.config_hash() != before.config_hash
    assert epochs == uninterrupted                                          # bitwise the 6-epoch run


def test_resume_on_another_device_keeps_the_group_and_refuses_a_device_this_machine_lacks(tmp_path, uninterrupted):
    import torch
    from typer.testing import CliRunner

    from workbench.cli import app
    from workbench.store.repository import Store
    db = tmp_path / "runs.db"
    run = kill_after(db, 2, "--set", "train.epochs=6")
    assert run.config["device"] == "auto"
    if not torch.cuda.is_available():
        res = CliRunner().invoke(app, ["resume", str(run.id), "--device", "cuda", "--db", str(db)])
        assert res.exit_code == 2 and "--device cuda" in res.output and "nothing resumed" in res.output
        with Store.open(db, readonly=True) as store:
            assert (store.get(run.id).status, store.get(run.id).config["device"]) == ("crashed", "auto")
    res = CliRunner().invoke(app, ["resume", str(run.id), "--device", "cpu", "--db", str(db)])
    assert res.exit_code == 0, res.output
    assert "on device cpu (it ran on auto" in " ".join(res.output.split())
    with Store.open(db, readonly=True) as store:
        again = store.get(run.id)
        epochs = [(e.epoch, e.train_loss, e.valid_auc, e.test_auc) for e in store.epochs(run.id)]
    assert (again.status, again.config["device"], again.config_hash) == ("completed", "cpu", run.config_hash)
    if not torch.cuda.is_available():                     # auto was the CPU: the same numbers
        assert epochs == uninterrupted


def test_a_completed_run_without_its_state_is_not_extended(tmp_path):
    from typer.testing import CliRunner

    from workbench.cli import app
    db = tmp_path / "runs.db"
    res = CliRunner().invoke(app, ["run", str(QUICKSTART), "--seeds", "1", "--set", "train.epochs=1", "--db", str(db)])
    assert res.exit_code == 0, res.output
    refused = CliRunner().invoke(app, ["resume", "1", "--epochs", "3", "--db", str(db)])
    assert refused.exit_code == 2 and "train.keep_last: true" in refused.output, refused.output


def test_a_running_or_completed_run_is_not_resumed(tmp_path):
    import os

    from typer.testing import CliRunner

    from workbench.cli import app
    from workbench.runs.rows import new_run
    from workbench.store.liveness import this_host
    from workbench.store.repository import Store

    from tui_helpers import config
    db = tmp_path / "runs.db"
    with Store.open(db) as store:
        live = store.create_run(new_run("live", "", config(1), None, None))
        assert store.claim(live, os.getpid(), this_host())              # this process: alive, beating
        done = store.create_run(new_run("done", "", config(2), None, None))
        assert store.claim(done, os.getpid(), this_host()) and store.finish(done, "completed")
    for run_id, text in ((live, f"is running (pid {os.getpid()}"), (done, "is completed")):
        res = CliRunner().invoke(app, ["resume", str(run_id), "--db", str(db)])
        assert res.exit_code == 2 and text in res.output and "nothing resumed" in res.output, res.output
    with Store.open(db, readonly=True) as store:
        assert store.get(live).status == "running" and store.get(done).status == "completed"


def test_the_workbench_resumes_a_crashed_run_with_r(tmp_path, in_tmp_path, uninterrupted):
    import asyncio
    from datetime import datetime, timezone

    from workbench.store.repository import Store
    from workbench.tui.screens.dialogs import ConfirmDialog

    from tui_helpers import make_app, until
    db = tmp_path / "runs.db"
    run = kill_after(db, 2, "--set", "train.epochs=6")

    async def body():
        store = Store.open(db)
        app = make_app(store)
        app.data.clock = lambda: datetime.now(timezone.utc)
        async with app.run_test(size=(120, 40)) as pilot:
            await pilot.pause()                     # mounted before the test reaches in
            app.query_one("#main-tabs").active = "runs"
            await until(pilot, lambda: run.id in app.data.runs, 10, "the run")
            app.query_one("#runs-pane").select_run(run.id)
            app.query_one("#runs-table").focus()
            await pilot.press("R")
            await until(pilot, lambda: isinstance(app.screen, ConfirmDialog), 5, "the confirmation")
            await pilot.press("y")
            await until(pilot, lambda: app.data.runs[run.id].status == "completed", 120, "the resumed run to end")
        with Store.open(db, readonly=True) as reader:
            epochs = [(e.epoch, e.train_loss, e.valid_auc, e.test_auc) for e in reader.epochs(run.id)]
            assert len(reader.attempts(reader.get(run.id))) == 2
        assert epochs == uninterrupted
        store.close()

    asyncio.run(body())


SWEEP = """\
name: tiny-grid
dataset: {name: synthetic, min_relation_triples: 1, synthetic: {preset: small}}
model: {hop_n_sample: [1, 4], max_degree: 16, hidden: 16}
train: {epochs: 10, patience: 0}   # enough that Ctrl-C lands before the running point ends
eval: {n_eval: 2}
seeds: [1]
device: cpu
sweep:
  grid:
    train.lr: [1.0e-3, 3.0e-3, 1.0e-2]
"""


def ranking(db) -> list:

    from typer.testing import CliRunner

    from workbench.cli import app
    res = CliRunner().invoke(app, ["compare", "--sweep", "1", "--json", "--db", str(db)])
    assert res.exit_code == 0, res.output
    return [(p["point"], p["params"], p["n"], p["valid_auc_mean"], p["test_auc_mean"])
            for p in json.loads(res.stdout)["points"]]


TPE = SWEEP.replace("  grid:\n    train.lr: [1.0e-3, 3.0e-3, 1.0e-2]\n",
                    "  tpe: {n: 3, seed: 0, n_startup_trials: 2, space: {train.lr: {loguniform: [1.0e-3, 1.0e-2]}}}\n")


@pytest.mark.parametrize("method", ["grid", "tpe"])
def test_a_sweep_interrupted_by_ctrl_c_and_resumed_ends_as_the_sweep_run_through(tmp_path, method):
    """Grid: the cancelled and never-started runs resume. TPE: the cancelled point resumes,
    then the replayed search asks the point the interrupted one never asked."""
    import os
    import signal
    import subprocess
    import sys

    from typer.testing import CliRunner

    from workbench.cli import app
    from workbench.store.repository import Store

    from helpers import wait_for
    if method == "tpe":
        from helpers import needs_optuna
        needs_optuna()
    recipe = tmp_path / f"{method}.yaml"
    recipe.write_text(SWEEP if method == "grid" else TPE)
    whole = tmp_path / "whole.db"
    res = CliRunner().invoke(app, ["run", str(recipe), "--db", str(whole)])
    assert res.exit_code == 0, res.output

    db = tmp_path / "runs.db"
    proc = subprocess.Popen([sys.executable, "-m", "workbench.cli", "run", str(recipe), "--db", str(db), "--json"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)

    def mid_way() -> bool:
        runs = stored_runs(db)
        return any(r.status == "completed" for r in runs) and any(
            r.status == "running" and r.last_state_bytes is not None for r in runs)
    try:
        assert wait_for(mid_way, 180, every=0.05)
        os.killpg(proc.pid, signal.SIGINT)        # Ctrl-C: the whole foreground group
        proc.wait(timeout=120)
    finally:
        proc.kill()
    with Store.open(db, readonly=True) as store:
        statuses = [r.status for r in store.runs()]
        errors = [r.error for r in store.runs() if r.status == "cancelled"]
    assert "completed" in statuses and "cancelled" in statuses, statuses
    assert len(statuses) == (3 if method == "grid" else 2)     # TPE: point 3 was never asked
    assert "cancelled by SIGINT" in errors and not any("SIGTERM" in e for e in errors), errors  # what the user did
    state = lambda: json.loads(CliRunner().invoke(app, ["sweeps", "--json", "--db", str(db)]).stdout)[0]["state"]  # noqa: E731
    assert state() == "interrupted"
    res = CliRunner().invoke(app, ["resume", "--sweep", "1", "--db", str(db)])
    assert res.exit_code == 0, res.output
    if method == "tpe":
        assert "its search replays the 2 point(s) it asked and asks the 1 it never asked" in res.output
    assert state() == "done"
    assert ranking(db) == ranking(whole)         # the same points, values (bitwise) and order


def test_a_sweep_whose_driver_was_killed_is_marked_done_once_resuming_made_it_whole(tmp_path):
    """A killed driver records no end (kni sweeps: interrupted); once kni resume --sweep has
    ended its every run, with all its points and its rerun seeds, the sweep is done."""
    from workbench.recipe import parse_recipe
    from workbench.runs.provenance import Code
    from workbench.runs.rows import new_run
    from workbench.store.repository import Store
    from workbench.sweeps.resume import finish_if_whole
    rec = parse_recipe(SWEEP)
    with Store.open(tmp_path / "runs.db") as store:
        sid = store.create_sweep(name="s", recipe_text=SWEEP, method="grid",
                                 spec={"grid": {}, "rerun": {"seeds": [1, 2]}}, seeds=[1], planned=2)
        ids = []
        for point, seed in ((1, 1), (2, 1), (2, 2)):
            new = dataclasses.replace(new_run(rec.name, rec.text, rec.config_for(seed), prov=Code()),
                                      sweep_id=sid, sweep_point=point, sweep_params="{}")
            ids.append(store.create_run(new))
        store.finish(ids[0], "completed")
        store.finish(ids[1], "completed")
        store.finish(ids[2], "cancelled")
        assert not finish_if_whole(store, sid)                 # a stopped run: not whole
        store.requeue_to_resume(store.get(ids[2]), 0, None)    # kni resume --sweep, and it completes
        store.finish(ids[2], "completed")
        assert finish_if_whole(store, sid) and store.get_sweep(sid).finished_at is not None
        assert not finish_if_whole(store, sid)                 # once


def test_a_tpe_point_the_recipe_refused_counts_as_asked(tmp_path):
    """The last point TPE asked was no valid configuration (no runs): the sweep read interrupted
    for ever, and each kni resume --sweep asked it again."""
    from workbench.cli.sweeps import sweep_state
    from workbench.recipe import parse_recipe
    from workbench.runs.provenance import Code
    from workbench.runs.rows import new_run
    from workbench.store.repository import Store
    from workbench.sweeps.resume import finish_if_whole
    rec = parse_recipe(SWEEP)
    with Store.open(tmp_path / "runs.db") as store:
        sid = store.create_sweep(name="s", recipe_text=SWEEP, method="tpe", spec={"grid": {}}, seeds=[1], planned=2)
        new = dataclasses.replace(new_run(rec.name, rec.text, rec.config_for(1), prov=Code()),
                                  sweep_id=sid, sweep_point=1, sweep_params="{}")
        store.finish(store.create_run(new), "completed")
        assert not finish_if_whole(store, sid)                 # point 2 never asked, as far as it knows
        store.note_invalid_point(sid, 2)
        store.note_invalid_point(sid, 2)
        assert store.invalid_points(sid) == {2}
        assert finish_if_whole(store, sid)
        assert sweep_state(store.get_sweep(sid), store.runs(sweep=sid), store.invalid_points(sid)) == "done"
        assert sweep_state(store.get_sweep(sid), store.runs(sweep=sid)) == "interrupted"


def test_a_grid_sweep_stopped_before_its_rerun_says_so_and_resume_runs_the_rerun(tmp_path):
    """A Ctrl-C in the last search run skipped the rerun: the sweep read "done", kni resume
    --sweep had nothing to resume, and the 1-seed point stood in for the chosen one."""
    from typer.testing import CliRunner

    from workbench.cli import app

    from helpers import tiny_recipe
    recipe = tmp_path / "r.yaml"
    recipe.write_text(tiny_recipe("g", epochs=2) + "sweep:\n  grid:\n    train.lr: [1.0e-3, 1.0e-2]\n"
                      "  rerun: {seeds: 1..3}\n")
    whole = tmp_path / "whole.db"
    res = CliRunner().invoke(app, ["run", str(recipe), "--db", str(whole)])
    assert res.exit_code == 0, res.output
    invoke = lambda db, *a: CliRunner().invoke(app, [*a, "--db", str(db)])                # noqa: E731
    choice = lambda db: {k: v for k, v in json.loads(invoke(db, "compare", "--best-of-sweeps", "1", "--json").stdout)[  # noqa: E731
        "sweeps"][0].items() if k != "seconds"}
    db = tmp_path / "runs.db"
    db.write_bytes(whole.read_bytes())
    reruns = [str(r.id) for r in stored_runs(db) if r.seed != 1]
    assert len(reruns) == 2
    assert invoke(db, "rm", *reruns, "--yes").exit_code == 0                # as if the stop came before them
    state = lambda: json.loads(invoke(db, "sweeps", "--json").stdout)[0]["state"]          # noqa: E731
    assert state() == "interrupted"
    res = invoke(db, "resume", "--sweep", "1")
    assert res.exit_code == 0, res.output
    assert "then the best point on validation runs the rerun: seeds it has not run" in " ".join(res.output.split())
    assert state() == "done"
    assert ranking(db) == ranking(whole) and choice(db) == choice(whole)    # the same rerun, bit for bit
    res = invoke(db, "resume", "--sweep", "1")
    assert res.exit_code == 2 and "its best point ran its rerun: seeds; nothing to resume" in " ".join(
        res.output.split())
