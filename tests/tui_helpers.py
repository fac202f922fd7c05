"""What the workbench tests share: a database seeded with fixed rows and timestamps (and the
fixed clock the app is given), the recipes folder, the app, and waiting on the pilot."""

from __future__ import annotations

import asyncio
import functools
import json
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from sqlalchemy.orm import Session

from kni_core.config import DatasetConfig, EvalConfig, ModelConfig, RunConfig, TrainConfig
from workbench.store.liveness import process_start, this_host
from workbench.store.repository import Store
from workbench.store.schema import EpochRow as Epoch, RunRow as Run  # rows written as a run process writes them
from workbench.store.statuses import CANCELLED, COMPLETED, CRASHED, FAILED, RUNNING
from workbench.tui.app import WorkbenchApp

from helpers import tiny_recipe

T0 = datetime(2025, 1, 15, 9, 0, 0, tzinfo=timezone.utc)
NOW = T0 + timedelta(hours=1)
BROKEN = """\
name: broken
dataset: {name: synthetic}
model:
  hop_n_sample: [1, 4]
  temprature: 3
"""
TRACEBACK = """\
Traceback (most recent call last):
  File "workbench/runner.py", line 261, in child_main
    execute(cfg, [listener], checkpoint=args.checkpoint)
  File "kni_core/train.py", line 140, in fit
    loss = total / count
ZeroDivisionError: division by zero
"""


def sync(test):
    """Run an async test body with asyncio.run (no pytest-asyncio plugin needed)."""
    @functools.wraps(test)
    def wrapper(*args, **kwargs):
        asyncio.run(test(*args, **kwargs))
    return wrapper



def write_recipes(folder: Path, *, epochs: int = 3) -> Path:
    folder.mkdir(exist_ok=True)
    (folder / "quickstart.yaml").write_text(tiny_recipe("quickstart", epochs=epochs, description="tiny synthetic recipe for the workbench tests"))
    (folder / "broken.yaml").write_text(BROKEN)
    return folder


def config(seed: int, kg: bool = True, epochs: int = 5, preset: str = "tiny") -> RunConfig:
    return RunConfig(name="quickstart" if kg else "quickstart-ni",
                     dataset=DatasetConfig(name="synthetic", min_relation_triples=1, synthetic={"preset": preset}),
                     model=ModelConfig(kg=kg, hop_n_sample=[1, 4], max_degree=16),
                     train=TrainConfig(epochs=epochs, patience=0), eval=EvalConfig(n_eval=2),
                     seed=seed, device="cpu").validate()


def metrics(seed: int, epoch: int, kg: bool) -> dict:
    base = 0.70 if kg else 0.66
    auc = base + 0.03 * epoch - 0.004 * epoch * epoch + 0.006 * seed
    return {"train_loss": 0.69 - 0.02 * epoch - 0.001 * seed, "valid_auc": auc, "valid_logloss": 0.70 - auc / 4,
            "valid_acc": auc - 0.05, "test_auc": auc - 0.01 + 0.002 * seed, "test_logloss": 0.71 - auc / 4,
            "test_acc": auc - 0.06, "train_seconds": 1.5 + 0.1 * seed, "eval_seconds": 0.5}


def add_run(session: Session, *, run_id: int, cfg: RunConfig, status: str, n_epochs: int, kg: bool = True,
            pid: int = 4242, host: str = "lab-1", error: str | None = None, traceback: str | None = None) -> None:
    created = T0 + timedelta(minutes=run_id)
    started = created + timedelta(seconds=5)
    epochs = [Epoch(run_id=run_id, epoch=e, created_at=started + timedelta(seconds=10 * e),
                    **metrics(cfg.seed, e, kg)) for e in range(1, n_epochs + 1)]
    best = max(epochs, key=lambda e: e.valid_auc) if epochs else None
    live = status == RUNNING
    end = started + timedelta(seconds=10 * n_epochs + 3)
    run = Run(id=run_id, recipe=cfg.name, recipe_path=f"recipes/{cfg.name}.yaml",
              recipe_text=f"name: {cfg.name}\nseeds: [{cfg.seed}]\n",
              config_json=json.dumps(cfg.to_dict(), sort_keys=True), config_hash=cfg.config_hash(),
              dataset="synthetic-" + cfg.dataset.synthetic["preset"], model="KNI" if kg else "NI", seed=cfg.seed,
              device="cpu", status=status, pid=pid, host=host, created_at=created, started_at=started,
              pid_start=process_start(pid) if host == this_host() else None,   # as a run process records it
              finished_at=None if live else end, heartbeat_at=NOW - timedelta(seconds=2) if live else end,
              max_epochs=cfg.train.epochs, select_on="valid", stopped_early=False,
              best_epoch=best.epoch if best else None, error=error, traceback=traceback,
              package_version="0.1.0", git_commit="0123456789ab")
    if best is not None:
        for f in ("valid_auc", "valid_logloss", "valid_acc", "test_auc", "test_logloss", "test_acc"):
            setattr(run, f"best_{f}", getattr(best, f))
    session.add(run)
    session.flush()
    session.add_all(epochs)


def seed_db(path: Path, running_pid: int | None = None) -> Store:
    """Two configurations (KNI, NI) x seeds 1-3 completed, a failed, a crashed, a cancelled
    run and (given a live pid) a running one; fixed timestamps throughout."""
    store = Store.open(path)
    with Session(store.writer) as s, s.begin():
        n = 0
        for kg in (True, False):
            for seed in (1, 2, 3):
                n += 1
                add_run(s, run_id=n, cfg=config(seed, kg), status=COMPLETED, n_epochs=5, kg=kg)
        add_run(s, run_id=7, cfg=config(4), status=FAILED, n_epochs=2, error="ZeroDivisionError: division by zero",
                traceback=TRACEBACK)
        add_run(s, run_id=8, cfg=config(5), status=CRASHED, n_epochs=1,
                error="the process (pid 4242 on lab-1) is gone and its last heartbeat was 31 s ago; no end was "
                      "recorded (killed, out of memory or power cut)")
        add_run(s, run_id=9, cfg=config(6), status=CANCELLED, n_epochs=3, error="cancelled by SIGTERM")
        if running_pid is not None:
            add_run(s, run_id=10, cfg=config(7), status=RUNNING, n_epochs=2, pid=running_pid, host=this_host())
    return store


def make_app(store: Store, recipes: Path | None = None, **kw) -> WorkbenchApp:
    return WorkbenchApp(store, recipes or write_recipes(Path("recipes")), clock=lambda: NOW, gpus=[], **kw)


async def mark_runs(app, pilot, run_ids) -> None:
    """Mark ``run_ids`` in the Runs tab, one after another, as space does."""
    runs = app.query_one("#runs-pane")
    for run_id in run_ids:
        runs.select_run(run_id)
        await pilot.press("space")


async def until(pilot, predicate, timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return
        await pilot.pause(0.1)
    assert predicate(), f"timed out after {timeout:.0f} s waiting for {what}"


def cell(app, table_id: str, row: int | str, column: str) -> str:
    table = app.screen.query_one(table_id)
    value = table.get_cell(str(row), column)
    return getattr(value, "plain", str(value))
