"""Equal tuning budgets (issue 16): a sweep's best point reruns over more seeds (``rerun:``), and
``kni compare --best-of-sweeps`` builds the matrix from each sweep's choice."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from workbench.cli import app
from workbench.recipe import RecipeError, parse_recipe

from helpers import tiny_recipe

SWEEP = "sweep:\n  grid:\n    train.lr: [1.0e-4, 1.0e-2]\n  rerun: {seeds: 1..3}\n"


def test_rerun_is_read_and_described():
    rec = parse_recipe(tiny_recipe("t") + SWEEP)
    assert rec.sweep.rerun == (1, 2, 3)
    assert "then the best point on validation runs over seeds 1, 2, 3 (the ones it has not run)" in \
        rec.sweep.describe(1)
    assert type(rec.sweep).from_dict(rec.sweep.to_dict()) == rec.sweep


@pytest.mark.parametrize("rerun, message", [
    ("rerun: {seeds: 0.5}", "sweep.rerun.seeds"),
    ("rerun: {}", "sweep.rerun.seeds: missing"),
    ("rerun: {seed: 1..3}", "sweep.rerun.seed: unknown key; did you mean 'seeds'?"),
    ("rerun: 3", "sweep.rerun: expected a mapping of seeds"),
])
def test_rerun_mistakes_are_named_at_their_line(rerun, message):
    with pytest.raises(RecipeError) as e:
        parse_recipe(tiny_recipe("t") + SWEEP.replace("rerun: {seeds: 1..3}", rerun), "t.yaml")
    assert message in str(e.value) and "t.yaml:11" in str(e.value)


@pytest.fixture(scope="module")
def tuned_db(tmp_path_factory):
    base = tmp_path_factory.mktemp("tuning")
    db = str(base / "runs.db")
    for name, model in (("tune-kni", "hop_n_sample: [1, 4], max_degree: 16"), ("tune-mf", "name: mf, dim: 4")):
        (base / f"{name}.yaml").write_text(tiny_recipe(name, epochs=2, model=model) + SWEEP)
        res = CliRunner().invoke(app, ["run", str(base / f"{name}.yaml"), "--json", "--db", db])
        assert res.exit_code == 0, res.output
    return db


def test_the_best_point_on_validation_reruns_the_rerun_seeds(tuned_db):
    from workbench.store.repository import Store
    with Store.open(tuned_db, readonly=True) as store:
        runs = store.runs(sweep=1)
    first = {r.sweep_point: r.best_valid_auc for r in runs if r.seed == 1}
    best = max(first, key=first.get)
    assert sorted((r.sweep_point, r.seed) for r in runs) == sorted([(1, 1), (2, 1)] + [(best, 2), (best, 3)])
    assert len({r.config_hash for r in runs if r.sweep_point == best}) == 1       # one group of 3 seeds


def test_compare_best_of_sweeps_builds_the_matrix_from_each_choice(tuned_db):
    res = CliRunner().invoke(app, ["compare", "--best-of-sweeps", "1", "2", "--json", "--db", tuned_db])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert [(s["sweep"], s["n"], s["seeds"], s["points_run"], s["budget_points"]) for s in out["sweeps"]] == [
        (1, 3, [1, 2, 3], 2, 2), (2, 3, [1, 2, 3], 2, 2)]
    cells = {c["column"]: c for c in out["matrix"]["cells"]}
    assert set(cells) == {"KNI", "MF"} and cells["KNI"]["n"] == 3 and cells["KNI"]["pop"] is not None
    chosen = {s["sweep"]: s for s in out["sweeps"]}
    assert cells["MF"]["mean"] == pytest.approx(chosen[2]["test_auc"])
    (paired,) = out["paired"]
    assert (paired["dataset"], paired["column"], paired["n"]) == ("synthetic-tiny", "MF", 3)
    assert paired["diff"] == pytest.approx(cells["KNI"]["mean"] - cells["MF"]["mean"])
    text = CliRunner().invoke(app, ["compare", "--best-of-sweeps", "1", "2", "--db", tuned_db]).stdout
    assert "each sweep's choice, on validation" in text and "KNI against each model" in text
    res = CliRunner().invoke(app, ["compare", "--best-of-sweeps", "--db", tuned_db])
    assert res.exit_code == 2 and "give the sweep ids" in res.output
    res = CliRunner().invoke(app, ["compare", "--best-of-sweeps", "9", "--db", tuned_db])
    assert res.exit_code == 2 and "9" in res.output


def test_a_sweeps_time_is_the_time_its_runs_ran_not_the_hours_between(tuned_db, tmp_path):
    """A sweep interrupted and resumed two hours later: its time counts every attempt of its
    runs, overlapping ones once, and not the gap (was: first start to last end, 2 h 3 min)."""
    import shutil
    from datetime import datetime

    from sqlalchemy import text

    from workbench.analysis import best_of_sweep
    from workbench.store.repository import Store
    db = tmp_path / "runs.db"
    shutil.copy(tuned_db, db)
    at = lambda hh, mm, ss=0: datetime(2026, 1, 1, hh, mm, ss)                           # noqa: E731
    with Store.open(db) as store:
        ids = sorted(r.id for r in store.runs(sweep=1))
        spans = [(at(10, 0), at(10, 1)), (at(12, 0), at(12, 2))] + [(at(12, 2), at(12, 3))] * (len(ids) - 2)
        with store.writer.begin() as conn:
            for run_id, (start, end) in zip(ids, spans):
                conn.execute(text("UPDATE runs SET started_at = :s, finished_at = :e WHERE id = :i"),
                             {"s": start, "e": end, "i": run_id})
            conn.execute(text("INSERT INTO attempts (run_id, attempt, started_at, ended_at, status) "  # resumed
                              "VALUES (:i, 1, :s, :e, 'cancelled')"),
                         {"i": ids[1], "s": at(9, 59, 30), "e": at(10, 0, 30)})
        assert best_of_sweep(store, 1).seconds == 90 + 180       # 9:59:30-10:01, then 12:00-12:03


def test_unequal_budgets_and_epochs_chosen_on_test_are_said(tuned_db, tmp_path):
    """A sweep that ran fewer points than another, or whose runs chose their epoch on test, made
    a comparison the table did not flag."""
    import shutil

    from sqlalchemy import text

    from workbench.store.repository import Store
    db = str(tmp_path / "runs.db")
    shutil.copy(tuned_db, db)
    with Store.open(db) as store:
        runs = store.runs(sweep=2)
        chosen = {r.sweep_point for r in runs if r.seed == 2}
        (dropped,) = [r.id for r in runs if r.sweep_point not in chosen]
        with store.writer.begin() as conn:
            conn.execute(text("UPDATE runs SET select_on = 'test' WHERE sweep_id = 1"))
    assert CliRunner().invoke(app, ["rm", str(dropped), "--yes", "--db", db]).exit_code == 0
    res = CliRunner().invoke(app, ["compare", "--best-of-sweeps", "1", "2", "--json", "--db", db])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert [(s["sweep"], s["points_run"], s["trials"]) for s in out["sweeps"]] == [(1, 2, 2), (2, 1, 1)]
    budget, on_test = out["warnings"]
    assert "unequal tuning budgets" in budget and "sweep 1 (KNI) 2 = 2 point(s) x 1 seed(s)" in budget
    assert "sweep 2 (MF) 1 = 1 point(s)" in budget
    assert on_test.startswith("sweep(s) 1 select each run's epoch on test")
    text_out = CliRunner().invoke(app, ["compare", "--best-of-sweeps", "1", "2", "--db", db]).stdout
    assert "unequal tuning budgets" in " ".join(text_out.split())
    res = CliRunner().invoke(app, ["compare", "--best-of-sweeps", "1", "2", "--json", "--db", tuned_db])
    assert json.loads(res.stdout)["warnings"] == []


def test_two_sweeps_of_one_model_are_two_columns_not_one_pooled_cell(tuned_db, tmp_path):
    """A second KNI sweep on the same dataset (another grid): its choice was averaged with the
    first sweep's into one KNI cell, and the paired test then refused the whole command."""
    import shutil
    db = str(tmp_path / "runs.db")
    shutil.copy(tuned_db, db)
    other = tmp_path / "tune-kni-2.yaml"
    other.write_text(tiny_recipe("tune-kni-2", epochs=2, model="hop_n_sample: [1, 2], max_degree: 16")
                     + SWEEP.replace("[1.0e-4, 1.0e-2]", "[3.0e-3, 3.0e-2]"))
    res = CliRunner().invoke(app, ["run", str(other), "--json", "--db", db])
    assert res.exit_code == 0, res.output
    res = CliRunner().invoke(app, ["compare", "--best-of-sweeps", "1", "2", "3", "--json", "--db", db])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    cells = {c["label"]: c for c in out["matrix"]["cells"]}
    assert set(cells) == {"KNI (sweep 1)", "MF (sweep 2)", "KNI (sweep 3)"}
    chosen = {s["sweep"]: s for s in out["sweeps"]}
    for sweep, label in ((1, "KNI (sweep 1)"), (3, "KNI (sweep 3)")):
        assert len(cells[label]["configs"]) == 1 and cells[label]["n"] == 3
        assert cells[label]["mean"] == pytest.approx(chosen[sweep]["test_auc"])
    assert sorted((p["reference"], p["column"]) for p in out["paired"]) == [("sweep 1", "sweep 2"),
                                                                           ("sweep 1", "sweep 3")]
    text = CliRunner().invoke(app, ["compare", "--best-of-sweeps", "1", "2", "3", "--db", db]).stdout
    assert "KNI (sweep 3)" in text and "KNI against each model" in text


def test_without_rerun_the_choice_is_a_point_whose_every_seed_completed(tmp_path):
    """The driver's rule: a point whose other seed failed won on its survivor's mean."""
    from sqlalchemy import text

    from workbench.analysis import best_of_sweep
    from workbench.store.repository import Store
    recipe = tmp_path / "g.yaml"
    recipe.write_text(tiny_recipe("g", epochs=2).replace("seeds: [1]", "seeds: [1, 2]")
                      + "sweep:\n  grid:\n    train.lr: [1.0e-4, 1.0e-2]\n")
    db = str(tmp_path / "runs.db")
    res = CliRunner().invoke(app, ["run", str(recipe), "--json", "--db", db])
    assert res.exit_code == 0, res.output
    with Store.open(db) as store:
        runs = store.runs(sweep=1)
        assert sorted(r.seed for r in runs) == [1, 1, 2, 2]
        best = best_of_sweep(store, 1).point.number
        other = 3 - best
        low = min((r for r in runs if r.sweep_point == best), key=lambda r: r.best_valid_auc)
        with store.writer.begin() as conn:      # its lower seed diverged: the survivor beats any mean
            conn.execute(text("UPDATE runs SET status = 'failed' WHERE id = :i"), {"i": low.id})
        choice = best_of_sweep(store, 1)
    assert choice.point.number == other and choice.point.n == 2


def test_a_whole_small_grid_is_no_unequal_budget_but_a_longer_schedule_is_said(tuned_db, tmp_path):
    """Popularity's grid of its two variants spends fewer trials than a 16-point TPE, and cannot
    spend more: no warning. Equal trials of 2 and of 3 epochs are not equal training: said."""
    import shutil
    db = str(tmp_path / "runs.db")
    shutil.copy(tuned_db, db)
    for name, epochs, grid in (("mf-longer", 3, SWEEP), ("mf-one", 2, SWEEP.replace("[1.0e-4, 1.0e-2]", "[1.0e-3]"))):
        (tmp_path / f"{name}.yaml").write_text(tiny_recipe(name, epochs=epochs, model="name: mf, dim: 4") + grid)
        assert CliRunner().invoke(app, ["run", str(tmp_path / f"{name}.yaml"), "--json", "--db", db]).exit_code == 0
    warnings = lambda *ids: json.loads(CliRunner().invoke(  # noqa: E731
        app, ["compare", "--best-of-sweeps", *ids, "--json", "--db", db]).stdout)["warnings"]
    assert warnings("1", "4") == []                          # sweep 4 ran its whole grid of 1 point
    (schedule,) = warnings("1", "3")
    assert "train a trial for different schedules" in schedule
    assert "sweep 1 (KNI) up to 2 epochs, patience 0" in schedule and "sweep 3 (MF) up to 3 epochs" in schedule
