"""Progress inside an epoch: the Trainer's hook, the tracker's estimates, what the run process
stores (progress and resources) and how readers show it."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from kni_core.config import (
    DatasetConfig,
    EvalConfig,
    ModelConfig,
    RunConfig,
    TrainConfig,
)
from kni_core.data import prepare
from kni_core.train import Trainer
from workbench.runs import progress as pg, resources
from workbench.runs.provenance import Code


def tiny(epochs: int = 2, batch_size: int = 64) -> RunConfig:
    return RunConfig(dataset=DatasetConfig(name="synthetic", min_relation_triples=1, synthetic={"preset": "tiny"}),
                     model=ModelConfig(hop_n_sample=[1, 4], max_degree=16),
                     train=TrainConfig(epochs=epochs, patience=0, batch_size=batch_size),
                     eval=EvalConfig(n_eval=2, batch_size=64), seed=1, device="cpu").validate()


def test_trainer_reports_every_step_of_every_phase():
    cfg = tiny()
    data = prepare(cfg)
    calls: list[tuple[str, int, int]] = []
    trainer = Trainer(cfg, data, progress=lambda *a: calls.append(a))
    results = list(trainer.fit())
    steps = -(-len(data.train) // cfg.train.batch_size)
    for epoch in range(len(results)):
        train = [c for c in calls if c[0] == "train"][epoch * steps:(epoch + 1) * steps]
        assert train == [("train", k, steps) for k in range(1, steps + 1)]
    for phase in ("valid", "test"):
        mine = [c for c in calls if c[0] == phase]
        total = mine[0][2]
        assert total >= 1 and len(mine) == total * len(results)
        assert [c[1] for c in mine[:total]] == list(range(1, total + 1))
    # per epoch: all of train, then valid, then test
    order = [c[0] for c in calls]
    first = order[:order.index("test") + 1]
    assert first == sorted(first, key=pg.PHASES.index)
    # the hook changes nothing: the same seed gives the same numbers without it
    again = list(Trainer(cfg, data).fit())
    assert [r.valid_auc for r in again] == [r.valid_auc for r in results]


class FakeClock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_tracker_estimates_phase_epoch_and_run():
    clock = FakeClock()
    t = pg.ProgressTracker(max_epochs=10, clock=clock)
    t.start()
    clock.t += 4                                    # 4 of 8 train batches in 4 s
    t.update("train", 4, 8)
    snap = t.snapshot()
    assert (snap["epoch"], snap["phase"], snap["done"], snap["total"]) == (1, "train", 4, 8)
    assert snap["rate"] == 1.0 and snap["phase_left"] == 4.0
    assert snap["epoch_left"] is None and snap["run_left"] is None     # evaluation not timed yet
    clock.t += 4
    t.update("train", 8, 8)
    clock.t += 3
    t.update("valid", 3, 3)                         # valid took 3 s
    clock.t += 2
    t.update("test", 2, 2)                          # test took 2 s
    clock.t += 1                                    # commit
    t.epoch_done(1)
    assert t.durations == {"train": 8, "valid": 3, "test": 2} and t.epoch_seconds == [14]
    clock.t += 2
    t.update("train", 2, 8)                         # epoch 2: a quarter of train in 2 s
    snap = t.snapshot()
    assert snap["epoch"] == 2 and snap["phase_left"] == 6.0
    assert snap["epoch_left"] == 6.0 + 3 + 2
    assert snap["run_left"] == 11.0 + 8 * 14        # 8 more epochs of the mean length
    assert snap["epoch_mean"] == 14


def test_a_resumed_run_counts_from_the_epoch_it_trains_first():
    """kni resume of a run stopped after epoch 3 of 6: its first snapshot says epoch 4."""
    from workbench.runs.child import progress_tracker
    from workbench.store.records import Run

    cfg = RunConfig(train=TrainConfig(epochs=6))
    tracker = progress_tracker(Run(id=1, n_epochs=3), cfg)
    tracker.update("train", 5, 10)
    snap = tracker.snapshot()
    assert (snap["epoch"], snap["epochs"]) == (4, 6)
    assert progress_tracker(Run(id=2, n_epochs=0), cfg).snapshot()["epoch"] == 1


def test_reader_counts_down_and_describes():
    at = datetime(2025, 1, 1, 12, 0, 0, tzinfo=timezone.utc)
    text = json.dumps({"epoch": 3, "epochs": 20, "phase": "train", "done": 40, "total": 79, "rate": 12.34,
                       "phase_left": 3.2, "epoch_left": 10.0, "run_left": 250.0, "epoch_mean": 14.0,
                       "at": at.isoformat()})
    p = pg.parse(text)
    assert p is not None and pg.describe(p) == "train 40/79 12.3/s"
    later = at + timedelta(seconds=5)
    assert p.left("run_left", later) == 245.0 and p.left("phase_left", later) == 0.0
    assert pg.eta_text(p, later) == "≤4m05s"
    assert p.fraction(later) == pytest.approx(1 - 5 / 14)
    first = pg.parse(json.dumps({"epoch": 1, "epochs": 20, "phase": "valid", "done": 1, "total": 4,
                                 "rate": 2.0, "phase_left": 1.5, "epoch_left": None, "run_left": None,
                                 "at": at.isoformat()}))
    assert pg.eta_text(first, at) == "valid 2s"
    assert pg.parse(None) is None and pg.parse("{broken") is None and pg.parse('{"epoch": "x"}') is None
    assert [pg.clock_text(s) for s in (None, 5, 65, 3725)] == ["-", "5s", "1m05s", "1h02m"]


def test_resource_sample_of_this_process(monkeypatch):
    import torch
    out = resources.sample("cpu")
    assert out["peak_rss_mb"] > 10 and out["cpu_threads"] == torch.get_num_threads()
    assert out["gpu_name"] is None and out["peak_gpu_mb"] is None
    # on a CUDA device: the name and the peak allocated memory torch reports
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i: f"Fake GPU {i}")
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda i: 3 * 2 ** 30)
    out = resources.sample("cuda:1 (CUDA_VISIBLE_DEVICES=3)")
    assert out["gpu_name"] == "Fake GPU 1" and out["peak_gpu_mb"] == 3072.0


def test_run_process_stores_progress_and_resources(tmp_path):
    """The run process (a real child) writes its position and its resource use to its own row
    while it trains; a reader sees them."""
    import os
    import signal

    from workbench.recipe import parse_recipe
    from workbench.runs.launcher import spawn
    from workbench.runs.rows import new_run
    from workbench.store.repository import Store
    from workbench.store.statuses import CANCELLED, RUNNING

    from helpers import wait_for

    store = Store.open(str(tmp_path / "runs.db"))
    rec = parse_recipe("name: long\ndataset: {name: synthetic, min_relation_triples: 1, synthetic: {preset: tiny}}\n"
                       "model: {hop_n_sample: [1, 4], max_degree: 16}\ntrain: {epochs: 500, patience: 0}\n"
                       "eval: {n_eval: 2}\ndevice: cpu\n")
    cfg = rec.config_for(1)
    prepare(cfg)
    run_id = store.create_run(new_run(rec.name, rec.text, cfg, prov=Code()))
    proc = spawn(store.url, run_id)
    try:
        def stored() -> bool:
            run = store.get(run_id)
            p = pg.parse(run.progress)
            return run.status == RUNNING and p is not None and p.epoch >= 3 and run.peak_rss_mb is not None
        assert wait_for(stored, 90), store.get(run_id).progress
        run = store.get(run_id)
        p = pg.parse(run.progress)
        assert p.epochs == 500 and p.epoch_mean is not None and p.epoch_mean > 0
        assert p.left("run_left") is not None                   # every phase has been timed
        assert run.peak_rss_mb > 50 and run.cpu_threads >= 1
        assert run.gpu_name is None and run.peak_gpu_mb is None  # a CPU run
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        proc.wait(60)
    assert store.get(run_id).status == CANCELLED
    store.close()
