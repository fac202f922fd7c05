"""Sweeps (issue 9): the ``sweep:`` section of recipes, its points, the sweep rows, Optuna's
studies kept in the run database, pruning in the run process, TPE's ask-and-tell, the ranking
of ``kni compare --sweep`` and the commands around them."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
import threading
from pathlib import Path

import pytest
from typer.testing import CliRunner

from kni_core.results import EpochResult
from workbench import analysis as cmp
from workbench.cli import app
from workbench.recipe import RecipeError, load_recipe, parse_recipe
from workbench.recipe.sweep import (
    MAX_POINTS,
    SweepError,
    SweepSpec,
    require_optuna,
)
from workbench.runs.errors import Pruned
from workbench.runs.provenance import Code
from workbench.store.errors import StoreError
from workbench.store.liveness import this_host
from workbench.store.repository import Store
from workbench.store.statuses import CANCELLED, COMPLETED, FAILED, PRUNED, QUEUED
from workbench.sweeps.driver import SweepDriver

from helpers import needs_optuna

ROOT = Path(__file__).resolve().parents[1]
BASE = """\
name: s
dataset: {name: synthetic, min_relation_triples: 1, synthetic: {preset: tiny}}
model: {hop_n_sample: [1, 4], max_degree: 16}
train: {epochs: 3, patience: 0}
eval: {n_eval: 2}
seeds: [1, 2]
device: cpu
"""


def recipe(sweep: str, base: str = BASE, **kw):
    return parse_recipe(base + sweep, "sw.yaml", **kw)


def mistakes(text: str, **kw) -> list[RecipeError]:
    with pytest.raises(RecipeError) as info:
        parse_recipe(text, "sw.yaml", **kw)
    return getattr(info.value, "errors", None) or [info.value]


# --------------------------------------------------------------------------------------------
# the recipe section


def test_a_grid_is_every_combination_each_a_group_of_its_own():
    rec = recipe("sweep:\n  grid:\n    model.hop_n_sample: [[1, 4], [1, 8]]\n    model.temperature: [1, 10, 100]\n",
                 overrides=["train.epochs=2"])
    assert rec.sweep.method == "grid" and rec.sweep.keys == ["model.hop_n_sample", "model.temperature"]
    points = rec.sweep.points()
    assert points == [{"model.hop_n_sample": h, "model.temperature": t}
                      for h in ([1, 4], [1, 8]) for t in (1.0, 10.0, 100.0)]
    assert all(isinstance(p["model.temperature"], float) for p in points)     # 10 and 10.0 hash alike
    configs = [rec.config_for_point(p, seed) for p in points for seed in rec.seeds]
    assert len({c.config_hash() for c in configs}) == 6                       # one group per point
    assert {(c.model.hop_n_sample[1], c.model.temperature, c.seed) for c in configs} == \
           {(h, t, s) for h in (4, 8) for t in (1.0, 10.0, 100.0) for s in (1, 2)}
    assert {c.train.epochs for c in configs} == {2}                          # --set applies to every point
    assert rec.base.model.temperature == 10.0 and rec.base.model.hop_n_sample == [1, 4]   # base untouched
    assert rec.to_dict()["sweep"] == {"grid": {"model.hop_n_sample": [[1, 4], [1, 8]],
                                               "model.temperature": [1.0, 10.0, 100.0]}}


def test_random_points_are_seeded_drawn_within_their_distributions_and_crossed_with_the_grid():
    space = ("    space:\n      train.l2: {loguniform: [1.0e-8, 1.0e-4]}\n      model.max_degree: {int: [8, 12]}\n"
             "      model.dropout: {uniform: [0.1, 0.3]}\n      model.temperature: {choice: [1, 100]}\n"
             "      train.batch_size: {logint: [64, 1024]}\n")
    rec = recipe("sweep:\n  grid:\n    model.hop_n_sample: [[1, 4], [1, 8]]\n  random:\n    n: 25\n    seed: 3\n"
                 + space)
    points = rec.sweep.points()
    assert rec.sweep.method == "grid+random" and len(points) == 50
    draws = [{k: v for k, v in p.items() if k != "model.hop_n_sample"} for p in points]
    assert draws[:25] == draws[25:]                   # each grid combination gets the same draws: paired
    assert all(1e-8 <= d["train.l2"] <= 1e-4 and 8 <= d["model.max_degree"] <= 12
               and 0.1 <= d["model.dropout"] <= 0.3 and d["model.temperature"] in (1.0, 100.0)
               and 64 <= d["train.batch_size"] <= 1024 for d in draws)
    assert {d["model.max_degree"] for d in draws} == {8, 9, 10, 11, 12}      # both ends included
    assert all(isinstance(d["model.max_degree"], int) for d in draws)
    logs = sorted(math.log10(d["train.l2"]) for d in draws[:25])
    assert logs[0] < -7 and logs[-1] > -5                                     # spread over the decades
    again = recipe("sweep:\n  grid:\n    model.hop_n_sample: [[1, 4], [1, 8]]\n  random:\n    n: 25\n    seed: 3\n"
                   + space)
    assert again.sweep.points() == points                                     # the seed decides the points
    other = recipe("sweep:\n  random:\n    n: 25\n    seed: 4\n" + space)
    assert other.sweep.points() != draws[:25]
    for p in points[:5]:
        rec.config_for_point(p, 1)                                            # every point is a valid config
    # a draw that repeats a point is dropped: two choices give at most two points
    few = recipe("sweep:\n  random:\n    n: 20\n    space:\n      model.temperature: {choice: [1, 100]}\n")
    assert sorted(p["model.temperature"] for p in few.sweep.points()) == [1.0, 100.0]
    assert few.sweep.planned == 20 and few.sweep.random.seed == 0


@pytest.mark.parametrize("sweep, line, key, message", [
    ("  grid:\n    model.temprature: [1, 10]\n", 10, "sweep.grid.model.temprature", "did you mean 'temperature'?"),
    ("  grid:\n    modle.kg: [true]\n", 10, "sweep.grid.modle.kg", "unknown section 'modle'"),
    ("  grid:\n    model.temperature: []\n", 10, "sweep.grid.model.temperature", "got an empty list"),
    ("  grid:\n    model.temperature: 5\n", 10, "sweep.grid.model.temperature", "expected a list of the values"),
    ("  grid:\n    model.temperature:\n      - 10\n      - 0\n", 12, "sweep.grid.model.temperature",
     "value 2 of the list: expected a value >= 0.0001; got 0"),
    ("  grid:\n    model.kg: [true, 3]\n", 10, "sweep.grid.model.kg", "value 2 of the list: expected true or false"),
    ("  grid:\n    model.hidden: [32, 32]\n", 10, "sweep.grid.model.hidden", "listed twice"),
    ("  grid:\n    seeds: [1, 2]\n", 10, "sweep.grid.seeds", "the seeds are the sweep's other axis"),
    ("  grid:\n    model: [1]\n", 10, "sweep.grid.model", "written dotted"),
    ("  grid: [1, 2]\n", 9, "sweep.grid", "expected a mapping of SECTION.KEY: [values to try]"),
    ("  gird:\n    model.kg: [true]\n", 9, "sweep.gird", "did you mean 'grid'?"),
    ("  random:\n    n: 0\n    space: {train.l2: {uniform: [0, 1]}}\n", 10, "sweep.random.n", "expected an integer >= 1"),
    (f"  random:\n    n: {MAX_POINTS + 1}\n    space: {{train.l2: {{uniform: [0, 1]}}}}\n", 10, "sweep.random.n",
     "at most"),
    ("  random:\n    space: {train.l2: {uniform: [0, 1]}}\n", 9, "sweep.random.n", "missing"),
    ("  random:\n    n: 2\n", 9, "sweep.random.space", "missing"),
    ("  random:\n    n: 2\n    space:\n      train.l2: {loguniform: [0, 1.0e-4]}\n", 12,
     "sweep.random.space.train.l2", "expected lo > 0"),
    ("  random:\n    n: 2\n    space:\n      train.l2: {uniform: [1.0e-4, 1.0e-8]}\n", 12,
     "sweep.random.space.train.l2", "expected lo < hi"),
    ("  random:\n    n: 2\n    space:\n      model.max_degree: {uniform: [8, 64]}\n", 12,
     "sweep.random.space.model.max_degree", "takes integers; use {int: [lo, hi]}"),
    ("  random:\n    n: 2\n    space:\n      model.activation: {uniform: [0, 1]}\n", 12,
     "sweep.random.space.model.activation", "is not a number; list its values with {choice: [...]}"),
    ("  random:\n    n: 2\n    space:\n      model.temperature: {uniform: [0, 10]}\n", 12,
     "sweep.random.space.model.temperature", "lo: expected a value >= 0.0001"),
    ("  random:\n    n: 2\n    space:\n      model.max_degree: {int: [8, 9.5]}\n", 12,
     "sweep.random.space.model.max_degree", "hi: expected an integer"),
    ("  random:\n    n: 2\n    space:\n      train.lr: {normal: [0, 1]}\n", 12, "sweep.random.space.train.lr",
     "unknown distribution 'normal'"),
    ("  random:\n    n: 2\n    space:\n      train.lr: 0.1\n", 12, "sweep.random.space.train.lr",
     "expected a distribution"),
    ("  random:\n    n: 2\n    space:\n      model.activation: {choice: [relu, sigmoid]}\n", 12,
     "sweep.random.space.model.activation", "choice 2: expected one of relu, tanh, selu, identity"),
    ("  tpe:\n    n: 3\n    space: {train.lr: {loguniform: [1.0e-4, 1.0e-2]}}\n  grid:\n    model.kg: [true]\n",
     9, "sweep.tpe", "cannot be combined with grid"),
    ("  grid:\n    train.lr: [0.1]\n  random:\n    n: 2\n    space:\n      train.lr: {uniform: [0.1, 0.2]}\n", 14,
     "sweep.random.space.train.lr", "swept twice"),
    ("  prune: {pruner: median}\n", 8, "sweep", "expected grid, random or tpe"),
    ("  grid: {model.kg: [true]}\n  prune: {pruner: medain}\n", 10, "sweep.prune.pruner",
     "expected one of median, successive_halving"),
    ("  grid: {model.kg: [true]}\n  prune: {pruner: median, reduction_factor: 3}\n", 10,
     "sweep.prune.reduction_factor", "not an option of the median pruner; it takes n_startup_trials"),
    ("  grid: {model.kg: [true]}\n  prune: {pruner: successive_halving, reduction_factor: 1}\n", 10,
     "sweep.prune.reduction_factor", "expected an integer >= 2"),
    ("  grid: {model.kg: [true]}\n  prune: {n_warmup_steps: 2}\n", 10, "sweep.prune.pruner", "missing"),
    ("  grid:\n    model.hop_n_sample:\n      - [1, 4]\n      - [4, 1]\n", 12, "sweep.grid.model.hop_n_sample",
     "starting with 1 (the centre node)"),
])
def test_each_sweep_mistake_names_its_line_and_key(sweep, line, key, message):
    errors = mistakes(BASE + "sweep:\n" + sweep)
    assert len(errors) == 1, [str(e) for e in errors]
    e = errors[0]
    assert (e.path, e.line, e.key) == ("sw.yaml", line, key) and message in e.message, str(e)
    assert str(e).startswith(f"sw.yaml:{line}: {key}: ")


def test_every_sweep_mistake_is_reported_at_once_in_file_order():
    text = BASE.replace("max_degree: 16", "max_degree: 0") + (
        "sweep:\n  grid:\n    model.temprature: [1]\n    train.lr: []\n"
        "  random:\n    n: -1\n    space:\n      train.l2: {loguniform: [0, 1]}\n"
        "  prune: {pruner: median, n_startup_trials: -2}\n")
    errors = mistakes(text)
    assert [(e.line, e.key) for e in errors] == [
        (3, "model.max_degree"), (10, "sweep.grid.model.temprature"), (11, "sweep.grid.train.lr"),
        (13, "sweep.random.n"), (15, "sweep.random.space.train.l2"), (16, "sweep.prune.n_startup_trials")]


def test_a_bad_prune_section_does_not_hide_a_bad_point():
    errors = mistakes(BASE + "sweep:\n  grid:\n    dataset.split: [[0.6, 0.2, 0.2], [0.5, 0.5, 0.5]]\n"
                             "  prune: {pruner: nope}\n")
    assert [(e.line, e.key) for e in errors] == [(10, "sweep.grid.dataset.split"), (11, "sweep.prune.pruner")]


def test_set_applies_to_every_point_but_cannot_set_a_swept_key_or_the_sweep():
    sweep = "sweep:\n  grid:\n    model.temperature: [1, 100]\n"
    errors = mistakes(BASE + sweep, overrides=["model.temperature=5", "sweep.grid.train.lr=[1]"])
    assert [(e.origin, e.key) for e in errors] == [("--set sweep.grid.train.lr=[1]", "sweep.grid.train.lr"),
                                                   ("--set model.temperature=5", "model.temperature")]
    assert "the recipe's sweep varies model.temperature (line 10)" in errors[1].message
    assert "cannot be set from the command line" in errors[0].message


def test_shipped_sweep_recipes_validate():
    quick = load_recipe(ROOT / "recipes" / "quickstart-sweep.yaml")
    assert quick.sweep.method == "grid" and len(quick.sweep.points()) == 6 and quick.seeds == [1, 2]
    assert quick.sweep.prune.pruner == "median" and quick.base.dataset.name == "synthetic"
    assert quick.sweep.prune.options == {"n_startup_trials": 4, "n_warmup_steps": 2, "interval_steps": 1}
    bc = load_recipe(ROOT / "recipes" / "bc-sweep.yaml")
    assert bc.base.dataset.name == "bc" and bc.seeds == [1, 2] and bc.sweep.prune is None
    assert set(bc.sweep.keys) == {"model.hop_n_sample", "model.temperature"} and len(bc.sweep.points()) == 6


def test_a_stored_spec_reads_back_the_same():
    rec = recipe("sweep:\n  random:\n    n: 4\n    seed: 2\n    space:\n      train.l2: {loguniform: [1.0e-8, 1.0e-4]}\n"
                 "      model.hop_n_sample: {choice: [[1, 4], [1, 8]]}\n"
                 "  prune: {pruner: successive_halving, min_resource: 2}\n")
    back = SweepSpec.from_dict(json.loads(json.dumps(rec.sweep.to_dict())))
    assert back == rec.sweep and back.points() == rec.sweep.points()
    assert back.prune.options == {"min_resource": 2, "reduction_factor": 4, "min_early_stopping_rate": 0,
                                  "bootstrap_count": 0}
    tpe = recipe("sweep:\n  tpe:\n    n: 5\n    space: {model.temperature: {logint: [1, 100]}}\n")
    assert SweepSpec.from_dict(tpe.sweep.to_dict()) == tpe.sweep and tpe.sweep.tpe.n_startup_trials == 10
    assert tpe.sweep.points() == [] and tpe.sweep.planned == 5 and tpe.sweep.needs_optuna == ["sweep.tpe"]


# --------------------------------------------------------------------------------------------
# the store: sweeps, run columns, the journal


def test_sweep_rows_and_the_runs_of_a_sweep(tmp_path):
    from workbench.runs.rows import new_run
    rec = recipe("sweep:\n  grid:\n    model.temperature: [1, 100]\n")
    with Store.open(tmp_path / "runs.db") as store:
        sid = store.create_sweep(name=rec.name, recipe_text=rec.text, method="grid", spec=rec.sweep.to_dict(),
                                 seeds=rec.seeds, planned=2)
        ids = []
        for n, params in enumerate(rec.sweep.points(), start=1):
            new = dataclasses.replace(new_run(rec.name, rec.text, rec.config_for_point(params, 1), prov=Code()),
                                      sweep_id=sid, sweep_point=n, sweep_params=json.dumps(params))
            ids.append(store.create_run(new))
        store.create_run(new_run(rec.name, rec.text, rec.config_for(1), prov=Code()))   # outside the sweep
        assert [r.id for r in store.runs(sweep=sid)] == ids
        assert [(r.sweep_point, r.params) for r in store.runs(sweep=sid)] == \
               [(1, {"model.temperature": 1.0}), (2, {"model.temperature": 100.0})]
        w = store.get_sweep(sid)
        assert (w.name, w.method, w.planned, w.seed_list, w.finished_at) == ("s", "grid", 2, [1, 2], None)
        assert SweepSpec.from_dict(w.spec_dict) == rec.sweep
        store.finish_sweep(sid)
        assert store.get_sweep(sid).finished_at is not None
        with pytest.raises(StoreError, match=f"no sweep with id 7 in .*sweeps: {sid}"):
            store.get_sweep(7)
        # pruned is a final status like the others, recorded once
        assert store.claim(ids[0], os.getpid(), this_host())
        assert store.finish(ids[0], PRUNED, error="pruned by the median pruner after epoch 1")
        assert not store.finish(ids[0], COMPLETED)
        assert store.get(ids[0]).status == PRUNED
    with Store.open(tmp_path / "runs.db", readonly=True) as ro:
        assert [w.id for w in ro.sweeps()] == [sid]


def test_the_journal_numbers_every_entry_once_without_gaps_under_concurrent_writers(tmp_path):
    path = tmp_path / "runs.db"
    Store.open(path).close()
    errors: list[BaseException] = []

    def writer(k: int) -> None:
        try:
            with Store.open(path) as store:
                for i in range(25):
                    store.append_journal(1, [{"w": k, "i": i}, {"w": k, "i": i, "second": True}])
        except BaseException as e:          # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    with Store.open(path) as store:
        logs = store.read_journal(1)
        assert len(logs) == 200 and store.read_journal(1, 190) == logs[190:]
        for k in range(4):                   # each writer's entries in its order, each append contiguous
            mine = [i for i, log in enumerate(logs) if log["w"] == k]
            assert [logs[i]["i"] for i in mine] == [i for i in range(25) for _ in (0, 1)]
            assert all(mine[j + 1] == mine[j] + 1 for j in range(0, 50, 2))
        assert store.read_journal(2) == []
        from sqlalchemy import text
        with store.writer.begin() as conn:   # a gap (an entry not committed yet): reading stops before it
            conn.execute(text("INSERT INTO sweep_journal (sweep_id, seq, log) VALUES (2, 0, '{}'), (2, 2, '{}')"))
        assert store.read_journal(2) == [{}]


def test_the_journal_study_decides_exactly_as_optunas_own_storage(tmp_path):
    """Successive halving keeps its rungs in the study: two processes sharing the study through
    the store get the decisions Optuna gives with its in-memory storage."""
    needs_optuna()
    import optuna

    from workbench.recipe.sweep import PruneSpec
    from workbench.runs.pruning import prune_study
    prune = PruneSpec("successive_halving", {"min_resource": 1, "reduction_factor": 2,
                                             "min_early_stopping_rate": 0, "bootstrap_count": 0})
    curves = [[0.5 + 0.01 * ((7 * t + 3 * s) % 11) + 0.02 * s for s in range(1, 9)] for t in range(10)]

    def play(studies: list) -> list[tuple[int, int]]:
        """(trial, epoch it stopped at) with each trial asked from the studies in turn."""
        out = []
        for t, curve in enumerate(curves):
            study = studies[t % len(studies)]
            trial = study.ask()
            for step, value in enumerate(curve, start=1):
                trial.report(value, step)
                if trial.should_prune():
                    study.tell(trial, state=optuna.trial.TrialState.PRUNED)
                    out.append((t, step))
                    break
            else:
                study.tell(trial, curve[-1])
                out.append((t, len(curve)))
        return out

    memory = optuna.create_study(direction="maximize", pruner=prune.make())
    expected = play([memory])
    assert any(step < 8 for _, step in expected) and any(step == 8 for _, step in expected)
    path = tmp_path / "runs.db"
    with Store.open(path) as setup:
        sid = setup.create_sweep(name="s", recipe_text="", method="grid", spec={}, seeds=[1], planned=10)
        from workbench.sweeps.search import create_studies
        create_studies(setup, sid, SweepSpec(grid={"model.kg": [True]}, prune=prune))
    with Store.open(path) as a, Store.open(path) as b:     # two connections, as two run processes
        assert play([prune_study(a, sid, prune), prune_study(b, sid, prune)]) == expected


# --------------------------------------------------------------------------------------------
# running sweeps: a store-writing stand-in for the run processes


def play_runs(store: Store, value, epochs: int = 3, status: dict | None = None):
    """A ``launch`` for SweepDriver that plays each queued run into the store as a run process
    would: epochs whose validation AUC is ``value(params, seed, epoch)``."""
    from kni_core.results import FitSummary
    from workbench.runs.listener import StoreListener
    launched: list[list[int]] = []

    def launch(ids, configs):
        launched.append(list(ids))
        statuses = {}
        for run_id in ids:
            run = store.get(run_id)
            assert store.claim(run_id, os.getpid(), this_host())
            listener = StoreListener(store, run_id, "valid")
            for e in range(1, epochs + 1):
                v = value(run.params, run.seed, e)
                listener.epoch(EpochResult(run.seed, e, 0.6, v, 0.6, 0.7, v - 0.01, 0.61, 0.69, 1.0, 0.5))
            wanted = (status or {}).get((run.sweep_point, run.seed), COMPLETED)
            if wanted == COMPLETED:
                listener.finished(FitSummary(run.seed, listener.best.epoch, listener.best, epochs, False))
            elif wanted == PRUNED:
                listener.failed(Pruned("pruned by the median pruner after epoch 3"))
            elif wanted == CANCELLED:
                store.finish(run_id, CANCELLED, error="cancelled by SIGTERM")
            else:
                store.finish(run_id, FAILED, error="boom")
            statuses[run_id] = store.get(run_id).status
        return statuses, False

    return launch, launched


def test_a_sweep_of_too_many_runs_is_refused_before_a_point_is_built(tmp_path, monkeypatch):
    """10,000 points x 11 seeds: refused at once, before any configuration or data (it took
    30 s and 420 MB to say so; with 1,000 seeds it grew past a gigabyte)."""
    rec = recipe("sweep:\n  random:\n    n: 10000\n    space:\n      train.l2: {loguniform: [1.0e-8, 1.0e-4]}\n",
                 seeds="1..11")
    monkeypatch.setattr(type(rec), "config_for_point", lambda *a, **k: pytest.fail("a point was built"))
    with Store.open(tmp_path / "runs.db") as store:
        driver = SweepDriver(store, rec, lambda *a, **k: pytest.fail("launched"), prov=Code(),
                             prepare=lambda cfg: pytest.fail("data prepared"))
        with pytest.raises(SweepError, match=r"10,000 points x 11 seeds is more than 100,000 runs"):
            driver.start()
        assert store.sweeps() == []


def test_a_grid_sweep_queues_every_point_and_seed_and_ranks_the_points(tmp_path):
    rec = recipe("sweep:\n  grid:\n    model.temperature: [1, 100]\n    train.lr: [1.0e-3, 1.0e-2]\n")
    value = lambda p, seed, e: 0.60 + 0.01 * e + (0.05 if p["train.lr"] == 1e-2 else 0.0) \
        + (0.02 if p["model.temperature"] == 100.0 else 0.0) + 0.004 * seed        # noqa: E731
    with Store.open(tmp_path / "runs.db") as store:
        launch, launched = play_runs(store, value, status={(4, 2): PRUNED, (1, 2): FAILED})
        queued: list = []
        driver = SweepDriver(store, rec, launch, jobs=3, prov=Code(),
                             on_queued=lambda sid, ids: queued.append((sid, ids)))
        sid = driver.start()
        assert queued == [(sid, list(range(1, 9)))] and len(launched) == 0
        assert {r.status for r in store.runs(sweep=sid)} == {QUEUED}
        statuses = driver.run()
        assert launched == [list(range(1, 9))] and len(statuses) == 8
        assert store.get_sweep(sid).finished_at is not None
        ranking = cmp.rank_sweep(store, sid)
    assert [p.number for p in ranking.points] == [4, 2, 3, 1]
    best = ranking.points[0]
    assert best.params == {"model.temperature": 100.0, "train.lr": 1e-2} and best.n == 2 and best.pruned == 1
    assert best.stat("valid_auc")[0] == pytest.approx(0.60 + 0.03 + 0.05 + 0.02 + 0.006)
    assert best.stat("valid_auc")[1] == pytest.approx(0.004 / math.sqrt(2))
    assert best.statuses == {COMPLETED: 1, PRUNED: 1}
    last = ranking.points[-1]                       # its failed seed does not count
    assert last.number == 1 and last.n == 1 and last.statuses == {COMPLETED: 1, FAILED: 1}
    effects = {e.key: e for e in ranking.effects}
    assert [e.key for e in ranking.effects] == ["train.lr", "model.temperature"]   # the key that matters first
    lr = {label: mean for label, mean, _ in effects["train.lr"].levels}
    assert lr["0.01"] - lr["0.001"] == pytest.approx(effects["train.lr"].spread)
    assert effects["train.lr"].spread == pytest.approx(0.05, abs=0.003)
    assert effects["model.temperature"].spread == pytest.approx(0.02, abs=0.003)


def test_points_of_one_configuration_are_each_ranked_by_their_own_runs(tmp_path):
    """A search may ask one configuration twice (TPE on a small space): each point keeps its own
    runs, none shown empty because the other took their group."""
    needs_optuna()
    rec = recipe("sweep:\n  tpe:\n    n: 2\n    space:\n      model.temperature: {choice: [10]}\n")
    with Store.open(tmp_path / "runs.db") as store:
        launch, _ = play_runs(store, lambda p, seed, e: 0.6 + 0.01 * seed)
        driver = SweepDriver(store, rec, launch, jobs=2, prov=Code())
        sid = driver.start()
        driver.run()
        ranking = cmp.rank_sweep(store, sid)
    assert sorted(p.number for p in ranking.points) == [1, 2]
    assert [p.n for p in ranking.points] == [2, 2]
    assert {frozenset(m.run.sweep_point for m in p.group.members) for p in ranking.points} == {
        frozenset({1}), frozenset({2})}


def test_a_key_that_is_no_part_of_the_configuration_is_not_swept_and_entries_take_numeric_draws():
    (error,) = mistakes(BASE + "sweep:\n  grid:\n    train.checkpoint: [true, false]\n")
    assert "train.checkpoint changes no number of the training" in str(error) and "sw.yaml:10" in str(error)
    rec = recipe("sweep:\n  random:\n    n: 3\n    space:\n      dataset.synthetic.users: {int: [100, 200]}\n")
    users = [p["dataset.synthetic.users"] for p in rec.sweep.points()]
    assert all(isinstance(u, int) and 100 <= u <= 200 for u in users)


def test_tpe_choices_bound_by_a_rule_with_another_drawn_key_are_not_refused():
    """favourite_topics <= topics: TPE may draw topics 1 with favourite_topics 1, so neither
    choice is wrong alone (each was checked against the other's base value)."""
    space = ("sweep:\n  tpe:\n    n: 4\n    space:\n      dataset.synthetic.topics: {choice: [1, 2, 3, 4]}\n"
             "      dataset.synthetic.favourite_topics: {choice: [1, 2]}\n")
    base = BASE.replace("synthetic: {preset: tiny}", "synthetic: {preset: tiny, topics: 4, favourite_topics: 2}")
    assert recipe(space, base=base).sweep.tpe is not None
    (error,) = mistakes(base + "sweep:\n  tpe:\n    n: 4\n    space:\n"
                        "      dataset.synthetic.favourite_topics: {choice: [1, 9]}\n")
    assert "sweep.tpe.space.dataset.synthetic.favourite_topics" in str(error) and "choice 9" in str(error)


def test_key_effects_bin_a_key_with_many_values():
    from types import SimpleNamespace
    pts = []
    for i in range(9):
        g = cmp.Group(str(i), "config")
        run = SimpleNamespace(seed=1, status=COMPLETED, config_hash=str(i), id=i)
        g.members.append(cmp.RunPoint(run, [], SimpleNamespace(valid_auc=0.5 + 0.01 * i)))
        pts.append(cmp.SweepPoint(i + 1, {"train.l2": 10.0 ** -(i + 1)}, g, []))
    (effect,) = cmp.key_effects(pts, ["train.l2"], "valid_auc")
    assert [n for _, _, n in effect.levels] == [3, 3, 3]
    assert [m for _, m, _ in effect.levels] == pytest.approx([0.57, 0.54, 0.51])   # small l2 first
    assert effect.spread == pytest.approx(0.06) and effect.levels[0][0] == "1e-09..1e-07"


def test_key_effects_never_split_one_value_between_two_bins():
    # lr takes 4 values, then 7, 3 points each; the metric is lr's alone (+0.02 a value). Binning
    # the points in thirds put one lr in two bins and shrank the spread (0.05 for 0.06)
    from types import SimpleNamespace

    def effect(lrs):
        pts = []
        for i, lr in enumerate(n for n in lrs for _ in range(3)):
            g = cmp.Group(str(i), "config")
            run = SimpleNamespace(seed=1, status=COMPLETED, config_hash=str(i), id=i)
            g.members.append(cmp.RunPoint(run, [], SimpleNamespace(valid_auc=0.70 + 0.02 * (i // 3))))
            pts.append(cmp.SweepPoint(i + 1, {"train.lr": lr}, g, []))
        (e,) = cmp.key_effects(pts, ["train.lr"], "valid_auc")
        return e
    few = effect([1e-4, 3e-4, 1e-3, 3e-3])                      # a grid's few values: a level each
    assert [label for label, _, _ in few.levels] == ["0.0001", "0.0003", "0.001", "0.003"]
    assert few.spread == pytest.approx(0.06)
    many = effect([1, 2, 3, 4, 5, 6, 7])                          # bins of whole values: 3, 2, 2
    assert [(label, n) for label, _, n in many.levels] == [("1..3", 9), ("4..5", 6), ("6..7", 6)]
    assert [m for _, m, _ in many.levels] == pytest.approx([0.72, 0.77, 0.81])


def test_tpe_asks_points_and_is_told_each_points_validation_auc_from_the_store(tmp_path):
    needs_optuna()
    import optuna

    from workbench.sweeps.search import search_study
    rec = recipe("sweep:\n  tpe:\n    n: 7\n    seed: 5\n    n_startup_trials: 3\n    space:\n"
                 "      train.lr: {loguniform: [1.0e-4, 1.0e-2]}\n      model.hop_n_sample: {choice: [[1, 4], [1, 8]]}\n")
    value = lambda p, seed, e: 0.9 - 0.05 * (math.log10(p["train.lr"]) + 2.5) ** 2 + 0.01 * seed \
        - (0.02 if p["model.hop_n_sample"] == [1, 8] else 0.0) - 0.01 * (3 - e)        # noqa: E731

    def sweep(db: Path) -> tuple[list[dict], list[list[int]], list]:
        with Store.open(db) as store:
            launch, launched = play_runs(store, value)
            driver = SweepDriver(store, rec, launch, jobs=3, prov=Code())
            sid = driver.start()
            driver.run()
            runs = store.runs(sweep=sid)
            trials = search_study(store, sid, rec.sweep.tpe).trials
            for t in trials:                 # told: the mean over the seeds of best_valid_auc
                mine = [r for r in runs if r.sweep_point == t.number + 1]
                assert t.state == optuna.trial.TrialState.COMPLETE
                assert t.value == pytest.approx(sum(r.best_valid_auc for r in mine) / len(mine))
                assert {r.seed for r in mine} == {1, 2}
            points = [runs_[0].params for _, runs_ in sorted(_by_point(runs).items())]
            return points, launched, trials

    points, launched, trials = sweep(tmp_path / "a.db")
    assert len(points) == len(trials) == 7
    assert [len(batch) for batch in launched] == [4, 4, 4, 2]       # waves of ceil(3 jobs / 2 seeds) points
    assert all(1e-4 <= p["train.lr"] <= 1e-2 and p["model.hop_n_sample"] in ([1, 4], [1, 8]) for p in points)
    again, _, _ = sweep(tmp_path / "b.db")
    assert again == points                   # the sampler's seed and the same results: the same points


def _tpe_interrupted(store, rec, value, stop_at_wave: int):
    """Drive ``rec`` until wave ``stop_at_wave``, whose first point completes and whose other
    runs are cancelled as a Ctrl-C leaves them; returns the sweep id."""
    from workbench.store.statuses import CANCELLED
    launch, launched = play_runs(store, value)

    def interrupted(ids, configs):
        if len(launched) + 1 < stop_at_wave:
            return launch(ids, configs)
        first = [i for i in ids if store.get(i).sweep_point == store.get(ids[0]).sweep_point]
        statuses, _ = launch(first, configs)
        for i in ids:
            if i not in first:
                store.finish(i, CANCELLED, error="interrupted")
                statuses[i] = CANCELLED
        return statuses, True

    driver = SweepDriver(store, rec, interrupted, jobs=3, prov=Code())
    sid = driver.start()
    driver.run()
    return sid


def _sweep_record(store, sid):
    """(point, seed) -> (the point's values, best valid AUC), and the ranking of the points."""
    runs = store.runs(sweep=sid)
    ranking = [(p.number, p.params, p.group and p.group.n) for p in cmp.rank_sweep(store, sid).points]
    return {(r.sweep_point, r.seed): (r.params, r.best_valid_auc, r.status) for r in runs}, ranking


@pytest.mark.parametrize("stored_sorted", [False, True], ids=["spec-in-order", "spec-stored-sorted"])
def test_an_interrupted_tpe_search_goes_on_asking_what_it_would_have_asked(tmp_path, stored_sorted):
    """kni resume --sweep on TPE: the stopped runs resume, then a sampler seeded as the first
    replays the stored results wave by wave (with the first driver's wave size, whatever --jobs
    is now) and asks the points never asked: the sweep ends with the run-through's points,
    values, rerun seeds and ranking. The space's keys are not in alphabetical order: the
    sampler draws them in the recipe's order, which a spec stored with sorted keys (as stores
    did before) no longer has."""
    needs_optuna()
    from sqlalchemy import text
    rec = recipe("sweep:\n  tpe:\n    n: 7\n    seed: 3\n    n_startup_trials: 3\n    space:\n"
                 "      train.lr: {loguniform: [1.0e-4, 1.0e-2]}\n      model.temperature: {choice: [1, 10, 100]}\n"
                 "  rerun: {seeds: 1..3}\n")
    value = lambda p, seed, e: 0.9 - 0.05 * (math.log10(p["train.lr"]) + 2.5) ** 2 + 0.01 * seed \
        - 0.01 * (3 - e)                                                                   # noqa: E731
    with Store.open(tmp_path / "whole.db") as store:
        launch, _ = play_runs(store, value)
        driver = SweepDriver(store, rec, launch, jobs=3, prov=Code())
        sid = driver.start()
        driver.run()
        whole = _sweep_record(store, sid)
    assert len({point for point, _ in whole[0]}) == 7 and len(whole[0]) == 7 * 2 + 1
    with Store.open(tmp_path / "runs.db") as store:
        sid = _tpe_interrupted(store, rec, value, stop_at_wave=3)
        before, _ = _sweep_record(store, sid)
        assert len({point for point, _ in before}) == 6 and "cancelled" in {s for _, _, s in before.values()}
        if stored_sorted:
            with store.writer.begin() as conn:
                spec = conn.execute(text("SELECT spec FROM sweeps WHERE id = :s"), {"s": sid}).scalar_one()
                conn.execute(text("UPDATE sweeps SET spec = :p WHERE id = :s"),
                             {"p": json.dumps(json.loads(spec), sort_keys=True), "s": sid})
        launch, launched = play_runs(store, value)
        stopped = [r for r in store.runs(sweep=sid) if r.status == "cancelled"]
        for r in stopped:                                 # what kni resume --sweep does first
            store.requeue_to_resume(r, 0, None)
        launch([r.id for r in stopped], None)
        driver = SweepDriver.continuing(store, sid, launch, jobs=1, prov=Code())
        assert driver.wave_size() == 2                    # the first driver's: ceil(3 jobs / 2 seeds)
        driver.run()
        assert _sweep_record(store, sid) == whole          # the same points, values, seeds and ranking
        assert [len(batch) for batch in launched] == [len(stopped), 2, 1]   # point 7's seeds, then the rerun
        assert store.get_sweep(sid).finished_at is not None


def test_a_continued_tpe_search_refuses_what_it_cannot_replay(tmp_path):
    """A TPE sweep whose stored point is not what the replayed sampler asks (here: its values
    edited) stops before asking anything new."""
    needs_optuna()
    from sqlalchemy import text
    rec = recipe("sweep:\n  tpe:\n    n: 5\n    seed: 3\n    n_startup_trials: 2\n    space:\n"
                 "      train.lr: {loguniform: [1.0e-4, 1.0e-2]}\n")
    value = lambda p, seed, e: 0.8 + 0.01 * e + 0.01 * seed                               # noqa: E731
    with Store.open(tmp_path / "runs.db") as store:
        sid = _tpe_interrupted(store, rec, value, stop_at_wave=2)
        with store.writer.begin() as conn:
            conn.execute(text("UPDATE runs SET sweep_params = :p WHERE sweep_id = :s AND sweep_point = 2"),
                         {"p": json.dumps({"train.lr": 0.005}), "s": sid})
        n_runs = len(store.runs(sweep=sid))
        launch, launched = play_runs(store, value)
        driver = SweepDriver.continuing(store, sid, launch, prov=Code())
        with pytest.raises(SweepError, match="point 2: the replayed search asks train.lr=.* where the sweep ran "
                                             "train.lr=0.005"):
            driver.run()
        assert len(store.runs(sweep=sid)) == n_runs and launched == []


def _by_point(runs):
    out: dict[int, list] = {}
    for r in runs:
        out.setdefault(r.sweep_point, []).append(r)
    return out


def test_without_optuna_grid_sweeps_run_and_tpe_or_pruning_say_which_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "optuna", None)           # as if the extra were not installed
    monkeypatch.delitem(sys.modules, "workbench.runs.pruning", raising=False)
    with pytest.raises(SweepError, match=r'sweep.prune needs Optuna, an optional extra: pip install '
                                         r'"kni-workbench\[sweep\]"'):
        require_optuna("sweep.prune")
    grid = recipe("sweep:\n  grid:\n    model.temperature: [1, 100]\n")
    with Store.open(tmp_path / "runs.db") as store:
        launch, _ = play_runs(store, lambda p, s, e: 0.6)
        driver = SweepDriver(store, grid, launch, prov=Code())
        driver.start()
        assert set(driver.run().values()) == {COMPLETED}
        from workbench.runs.child import sweep_listeners
        pruning = recipe("sweep:\n  grid:\n    model.temperature: [1, 100]\n  prune: {pruner: median}\n")
        with pytest.raises(SweepError, match="sweep.prune needs Optuna"):
            SweepDriver(store, pruning, launch).start()
        assert len(store.sweeps()) == 1                        # nothing written for the refused sweep
        assert sweep_listeners(store, store.get(1)) == []      # a run trains unpruned, with a warning
    path = tmp_path / "tpe.yaml"
    path.write_text(BASE + "sweep:\n  tpe:\n    n: 2\n    space: {train.lr: {loguniform: [1.0e-4, 1.0e-2]}}\n")
    res = CliRunner().invoke(app, ["run", str(path), "--db", str(tmp_path / "other.db")])
    assert res.exit_code == 2 and 'sweep.tpe needs Optuna, an optional extra: pip install "kni-workbench[sweep]"' \
        in " ".join(res.stderr.split())
    assert not (tmp_path / "other.db").exists() or Store.open(tmp_path / "other.db").sweeps() == []


# --------------------------------------------------------------------------------------------
# pruning in the run process


def test_the_prune_listener_prunes_below_the_median_and_never_after_the_last_epoch(tmp_path):
    needs_optuna()
    from types import SimpleNamespace

    from workbench.runs.pruning import PruneListener
    from workbench.sweeps.search import create_studies
    spec = recipe("sweep:\n  grid: {model.kg: [true]}\n  prune: {pruner: median, n_startup_trials: 2, "
                  "n_warmup_steps: 1}\n").sweep
    with Store.open(tmp_path / "runs.db") as store:
        sid = store.create_sweep(name="s", recipe_text="", method="grid", spec=spec.to_dict(), seeds=[1], planned=1)
        create_studies(store, sid, spec)

        def listener(run_id: int, epochs: int = 4) -> PruneListener:
            pl = PruneListener(store, SimpleNamespace(id=run_id, sweep_id=sid, max_epochs=epochs), spec.prune)
            pl.started(None)
            return pl

        def epoch(e: int, v: float) -> EpochResult:
            return EpochResult(1, e, 0.6, v, 0.6, 0.7, v, 0.6, 0.7, 1.0, 0.5)

        for run_id in (1, 2):                       # two runs complete: 0.70, 0.72, 0.74, 0.76 (+0.01)
            pl = listener(run_id)
            for e in range(1, 5):
                pl.epoch(epoch(e, 0.68 + 0.02 * e + 0.01 * (run_id - 1)))
            pl.finished(SimpleNamespace(best=epoch(4, 0.76 + 0.01 * (run_id - 1))))
        low = listener(3)
        low.epoch(epoch(1, 0.50))                   # warm-up epoch: never pruned
        with pytest.raises(Pruned, match="pruned by the sweep's median pruner after epoch 2"):
            low.epoch(epoch(2, 0.51))
        low.failed(Pruned("x"))
        good = listener(4)
        for e in range(1, 5):
            good.epoch(epoch(e, 0.70 + 0.02 * e))   # above the median: never pruned
        short = listener(5, epochs=2)
        short.epoch(epoch(1, 0.40))
        short.epoch(epoch(2, 0.40))                 # the last epoch: nothing left to save, completes
        states = [t.state.name for t in listener(6).study.trials]
        assert states[:3] == ["COMPLETE", "COMPLETE", "PRUNED"]



def test_each_tpe_choice_is_checked_whole_at_its_line():
    """A choice that breaks a rule of the configuration alone was accepted: each trial that drew
    it failed, spending the budget, and the sweep never read done."""
    text = ("name: t\ndataset: {name: synthetic, synthetic: {preset: tiny}}\nseeds: [1]\nsweep:\n  tpe:\n"
            "    n: 4\n    space:\n      dataset.split: {choice: [[0.6, 0.2, 0.2], [0.5, 0.3, 0.3]]}\n"
            "      model.hop_n_sample: {choice: [[1, 4], [2, 4]]}\n")
    with pytest.raises(RecipeError) as e:
        parse_recipe(text, "t.yaml")
    said = str(e.value)
    assert "t.yaml:8: sweep.tpe.space.dataset.split: choice [0.5, 0.3, 0.3]: expected three positive fractions" in said
    assert "t.yaml:9: sweep.tpe.space.model.hop_n_sample: choice [2, 4]: expected a list" in said
    assert "[0.6, 0.2, 0.2]:" not in said and "choice [1, 4]" not in said
    parse_recipe(text.replace(", [0.5, 0.3, 0.3]", "").replace(", [2, 4]", ", [1, 8]"), "t.yaml")   # fine


def test_a_cancelled_search_run_defers_the_rerun_to_kni_resume(tmp_path, caplog):
    """kni cancel of a seed of the best point made a worse point "the best", which then reran."""
    from workbench.sweeps.resume import sweep_resume
    rec = recipe("sweep:\n  grid:\n    train.lr: [1.0e-3, 1.0e-2]\n  rerun: {seeds: 1..3}\n")
    value = lambda p, seed, e: 0.6 + (0.1 if p["train.lr"] == 1e-2 else 0.0) + 0.01 * e   # noqa: E731
    with Store.open(tmp_path / "runs.db") as store:
        launch, _ = play_runs(store, value, status={(2, 2): CANCELLED})
        driver = SweepDriver(store, rec, launch, jobs=2, prov=Code())
        sid = driver.start()
        with caplog.at_level("WARNING"):
            driver.run()
        assert sorted(r.seed for r in store.runs(sweep=sid)) == [1, 1, 2, 2]       # no rerun yet
        assert "stopped before they completed, so the best point is not chosen yet" in caplog.text
        plan = sweep_resume(store, sid)
        assert [store.get(i).sweep_point for i in plan.stopped] == [2] and plan.searches   # then the rerun


def test_the_rerun_seeds_of_a_pruning_sweep_are_never_pruned(tmp_path):
    """The rerun measures the chosen point: it was pruned like a search run (3 of 5 seeds cut
    after one epoch and averaged in, the choice shown below the popularity floor)."""
    needs_optuna()
    from types import SimpleNamespace

    from workbench.runs.pruning import PruneListener, prune_listener
    from workbench.sweeps.search import create_studies
    spec = recipe("sweep:\n  grid: {model.kg: [true]}\n  prune: {pruner: median}\n  rerun: {seeds: 1..3}\n").sweep
    with Store.open(tmp_path / "runs.db") as store:
        sid = store.create_sweep(name="s", recipe_text="", method="grid", spec=spec.to_dict(), seeds=[1], planned=1)
        create_studies(store, sid, spec)
        run = lambda seed: SimpleNamespace(id=seed, seed=seed, sweep_id=sid, max_epochs=4)   # noqa: E731
        assert isinstance(prune_listener(store, run(1)), PruneListener)          # a run of the search
        assert prune_listener(store, run(2)) is None and prune_listener(store, run(3)) is None


TIMEOUT = 120


def test_a_pruned_run_process_stops_keeps_its_epochs_and_ends_pruned(tmp_path):
    """A real run process of a pruning sweep whose other runs all did far better."""
    needs_optuna()
    import optuna

    from kni_core.data import prepare
    from workbench.runs.launcher import Launcher
    from workbench.runs.pruning import prune_study
    rec = recipe("sweep:\n  grid: {model.kg: [true]}\n  prune: {pruner: median, n_startup_trials: 1, "
                 "n_warmup_steps: 1}\n", base=BASE.replace("epochs: 3", "epochs: 6").replace("[1, 2]", "[1]"))
    with Store.open(tmp_path / "runs.db") as store:
        prepare(rec.config_for(1))
        driver = SweepDriver(store, rec, lambda ids, cfgs: (Launcher(store, jobs=1).run(ids), False),
                             prov=Code())
        sid = driver.start()
        study = prune_study(store, sid, rec.sweep.prune)      # a finished run far better at every epoch
        done = study.ask()
        for step in range(6):
            done.report(0.999, step)
        study.tell(done, 0.999)
        statuses = driver.run()
        run = store.get(driver.run_ids[0])
        assert statuses == {run.id: PRUNED} and run.status == PRUNED
        assert run.n_epochs == 2 < run.max_epochs and run.best_epoch in (1, 2)   # pruned after epoch 2
        assert run.best_valid_auc is not None and "median pruner after epoch 2" in run.error
        trials = prune_study(store, sid, rec.sweep.prune).trials
        assert [t.state for t in trials] == [optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED]
        assert trials[1].user_attrs["run_id"] == run.id and sorted(trials[1].intermediate_values) == [0, 1]


# --------------------------------------------------------------------------------------------
# the commands


def test_kni_run_of_a_sweep_then_sweeps_compare_runs_and_show(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "tiny-sweep.yaml"
    path.write_text(BASE.replace("epochs: 3", "epochs: 2").replace("seeds: [1, 2]", "seeds: [1]")
                    + "sweep:\n  grid:\n    model.temperature: [1, 100]\n")
    runner = CliRunner()
    res = runner.invoke(app, ["run", str(path), "--jobs", "2", "--set", "eval.n_eval=1"])
    assert res.exit_code == 0, res.output
    assert "sweep 1, run(s) 1, 2 queued" in " ".join(res.output.split())
    assert "points ranked by valid_auc" in res.output
    res = runner.invoke(app, ["sweeps", "--json"])
    (w,) = json.loads(res.stdout)
    assert (w["id"], w["method"], w["planned"], w["state"], w["statuses"]) == (1, "grid", 2, "done", {"completed": 2})
    assert w["best"]["point"] in (1, 2) and w["spec"] == {"grid": {"model.temperature": [1.0, 100.0]}}
    res = runner.invoke(app, ["compare", "--sweep", "1", "--json"])
    out = json.loads(res.stdout)
    assert out["metric"] == "valid_auc" and [p["rank"] for p in out["points"]] == [1, 2]
    assert sorted(p["params"]["model.temperature"] for p in out["points"]) == [1.0, 100.0]
    assert out["points"][0]["valid_auc_mean"] >= out["points"][1]["valid_auc_mean"]
    assert [e["key"] for e in out["effects"]] == ["model.temperature"]
    with Store.open("runs.db", readonly=True) as store:
        assert all(r.config.get("eval", {}).get("n_eval") == 1 for r in store.runs(sweep=1))
    res = runner.invoke(app, ["compare", "--sweep", "1"])
    assert res.exit_code == 0 and "which keys matter" in res.stdout and "model.temperature" in res.stdout
    said = lambda *a: " ".join(runner.invoke(app, ["compare", "--sweep", "1", *a]).stdout.split())  # noqa: E731
    assert "no run of the sweep has recall@20" in said("--metric", "recall@20") and "eval.topk.enabled" in \
        said("--metric", "recall@20")
    assert "2 run(s) have no epoch 5: left out of the means" in said("--at", "5")
    res = runner.invoke(app, ["compare", "--sweep", "1", "--dataset", "nope"])
    assert res.exit_code == 2 and "sweep 1 has no runs of dataset nope" in " ".join(res.output.split())
    res = runner.invoke(app, ["runs", "--sweep", "1"])
    assert res.exit_code == 0 and "s1.p1" in res.stdout and "s1.p2" in res.stdout
    res = runner.invoke(app, ["show", "1", "--no-plot"])
    assert "sweep 1, point 1: model.temperature=1" in " ".join(res.stdout.split())
    for bad, msg in ((["compare", "--sweep", "9"], "no sweep with id 9"),
                     (["compare", "--sweep", "1", "--recipe", "s"], "--sweep ranks one sweep's points"),
                     (["runs", "--sweep", "9"], "no sweep with id 9"), (["sweeps", "4"], "no sweep with id 4")):
        res = runner.invoke(app, bad)
        assert res.exit_code == 2 and msg in res.stderr, (bad, res.output)


def test_sweeps_lists_nothing_in_a_database_without_runs(tmp_path):
    res = CliRunner().invoke(app, ["sweeps", "--json", "--db", str(tmp_path / "none.db")])
    assert res.exit_code == 0 and res.stdout.strip() == "[]"


def test_an_older_database_read_only_has_no_sweeps_and_a_writer_adds_them(tmp_path):
    from sqlalchemy import create_engine, text

    from workbench.store import migrations
    path = tmp_path / "old.db"
    engine = create_engine(f"sqlite:///{path}")
    before = next(i for i, (_, what, _) in enumerate(migrations.MIGRATIONS) if what.startswith("sweeps:"))
    version = migrations.MIGRATIONS[before - 1][0]
    with engine.begin() as conn:                     # a database as the layout before sweeps left it
        for _, _, step in migrations.MIGRATIONS[:before]:
            step(conn)
        conn.execute(text(f"INSERT INTO meta VALUES ('schema_version', '{version}')"))
    engine.dispose()
    runner = CliRunner()
    res = runner.invoke(app, ["sweeps", "--json", "--db", str(path)])
    assert res.exit_code == 0 and json.loads(res.stdout) == []
    res = runner.invoke(app, ["compare", "--sweep", "1", "--db", str(path)])
    assert res.exit_code == 2 and "no sweep with id 1" in res.stderr
    with Store.open(path, readonly=True) as ro:
        assert ro.schema_version() == version and ro.runs() == []  # read as it is, never upgraded
    with Store.open(path) as store:                  # a writer upgrades it
        assert store.schema_version() == migrations.SCHEMA_VERSION and store.sweeps() == []
        assert store.create_sweep(name="s", recipe_text="", method="grid", spec={}, seeds=[1], planned=1) == 1
