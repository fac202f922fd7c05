"""Groups, statistics against hand-computed values, CSV columns and round trip, kni compare/export."""

from __future__ import annotations

import csv
import io
import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from kni_core.train import EpochResult
from workbench import analysis as cmp
from workbench.cli import app
from workbench.recipe import parse_recipe
from workbench.runs.provenance import Code
from workbench.runs.rows import new_run
from workbench.store.repository import Store
from workbench.store.statuses import COMPLETED, RUNNING

ROOT = Path(__file__).resolve().parents[1]

RECIPE = """\
name: {name}
dataset: {{name: synthetic, min_relation_triples: 1, synthetic: {{preset: tiny}}}}
model: {{hop_n_sample: [1, 4], max_degree: 16, kg: {kg}}}
train: {{epochs: 3}}
eval: {{n_eval: 2}}
seeds: [1]
device: cpu
"""


def add_run(store: Store, seed: int, test_aucs: list[float], *, name: str = "r", kg: bool = True,
            status: str = COMPLETED, best: int | None = None) -> int:
    """A stored run whose epoch e has test_auc = test_aucs[e-1] (other metrics derived from it)."""
    rec = parse_recipe(RECIPE.format(name=name, kg=str(kg).lower()))
    cfg = rec.config_for(seed)
    run_id = store.create_run(new_run(rec.name, rec.text, cfg, prov=Code("0", "abc")))
    store.claim(run_id, os.getpid(), "testhost")
    results = [EpochResult(seed, e, 0.7 - a / 10, a - 0.01, 1 - a, a / 2, a, 1.5 - a, a / 3, 0.25 * e, 0.125)
               for e, a in enumerate(test_aucs, start=1)]
    best_r = None
    for r in results:
        if best_r is None or r.valid_auc > best_r.valid_auc:
            best_r = r
        store.add_epoch(run_id, r, best_r)
    if best is not None:
        best_r = results[best - 1]
    if status != RUNNING:
        store.finish(run_id, status, best=best_r, stopped_early=False)
    return run_id


@pytest.fixture
def store(db_url):
    """A run store on each backend (SQLite, PostgreSQL)."""
    s = Store.open(db_url)
    yield s
    s.close()


# -- statistics against hand-computed values -----------------------------------------------------

def test_mean_and_sample_std():
    mean, std = cmp.mean_std([0.70, 0.72, 0.74])
    assert mean == pytest.approx(0.72, abs=1e-15)
    assert std == pytest.approx(0.02, abs=1e-15)            # sqrt((0.02^2 + 0^2 + 0.02^2) / 2)
    mean, std = cmp.mean_std([1.0, 2.0, 3.0, 4.0])
    assert (mean, std) == (2.5, pytest.approx(math.sqrt(5 / 3)))
    mean, std = cmp.mean_std([0.5, None, float("nan")])     # undefined values are left out
    assert mean == 0.5 and math.isnan(std)                  # one value: no sample std
    assert all(math.isnan(x) for x in cmp.mean_std([]))


@pytest.mark.parametrize("diffs, p", [
    ([1.0, 2.0, 3.0], 2 / 8),          # |sums| of the 8 patterns: 6,4,2,0,0,2,4,6 -> two reach 6
    ([3.0, 1.0, 1.0, 1.0], 2 / 16),    # only all-plus and all-minus reach |sum| 6
    ([1.0, -1.0], 1.0),                # observed mean 0: every pattern is as extreme
    ([0.5], 1.0),                      # one pair: +0.5 and -0.5
    ([0.2, 0.2, 0.2, 0.2, 0.2], 2 / 32),
])
def test_sign_flip_exact(diffs, p):
    value, exact = cmp.sign_flip_pvalue(diffs)
    assert exact
    assert value == pytest.approx(p, abs=1e-15)


def test_sign_flip_matches_brute_force_and_monte_carlo():
    rng = np.random.default_rng(3)
    d = rng.normal(0.01, 0.02, size=9)
    brute = 0
    for code in range(2 ** 9):
        signs = np.array([-1.0 if (code >> i) & 1 else 1.0 for i in range(9)])
        brute += abs((signs * d).mean()) >= abs(d.mean()) - 1e-15
    assert cmp.sign_flip_pvalue(d) == (brute / 512, True)
    approx, exact = cmp.sign_flip_pvalue(d, exact_max=4, n_random=20000, seed=1)
    assert not exact
    assert approx == pytest.approx(brute / 512, abs=0.02)
    assert approx == cmp.sign_flip_pvalue(d, exact_max=4, n_random=20000, seed=1)[0]   # seeded


def test_bootstrap_interval():
    assert cmp.bootstrap_ci([0.01, 0.01, 0.01]) == (0.01, 0.01)
    d = [0.01, 0.03, -0.01, 0.02, 0.05]
    lo, hi = cmp.bootstrap_ci(d)
    assert min(d) <= lo < np.mean(d) < hi <= max(d)
    assert (lo, hi) == cmp.bootstrap_ci(d)                  # seeded: reproducible
    # the same computation by hand
    rng = np.random.default_rng(cmp.BOOTSTRAP_SEED)
    means = np.asarray(d)[rng.integers(0, 5, size=(cmp.BOOTSTRAP_RESAMPLES, 5))].mean(axis=1)
    assert (lo, hi) == tuple(np.quantile(means, [0.025, 0.975]))


def test_parse_at():
    assert cmp.parse_at("best") == "best" and cmp.parse_at("LAST") == "last" and cmp.parse_at("7") == 7
    for bad in ("0", "-1", "first", "1.5"):
        with pytest.raises(cmp.CompareError):
            cmp.parse_at(bad)


# -- groups ---------------------------------------------------------------------------------------

def test_groups_at_best_last_and_n(store):
    add_run(store, 1, [0.60, 0.70, 0.65])          # best (valid = test - 0.01) is epoch 2
    add_run(store, 2, [0.62, 0.66, 0.69])          # best epoch 3
    add_run(store, 3, [0.61])                      # one epoch only
    add_run(store, 1, [0.50, 0.52, 0.51], kg=False)
    pts = cmp.points(store, store.runs(), "best")
    groups = cmp.group_points(pts, "config")
    assert [g.n for g in groups] == [3, 1]
    kni = groups[0]
    assert kni.seeds == [1, 2, 3]
    assert kni.by_seed("test_auc") == {1: 0.70, 2: 0.69, 3: 0.61}
    mean, std = kni.stat("test_auc")
    assert mean == pytest.approx(np.mean([0.70, 0.69, 0.61]))
    assert std == pytest.approx(np.std([0.70, 0.69, 0.61], ddof=1))
    assert kni.differs == "model.kg=true" and groups[1].differs == "model.kg=false"
    last = cmp.group_points(cmp.points(store, store.runs(), "last"), "config")[0]
    assert last.by_seed("test_auc") == {1: 0.65, 2: 0.69, 3: 0.61}
    at2 = cmp.group_points(cmp.points(store, store.runs(), 2), "config")[0]
    assert at2.by_seed("test_auc") == {1: 0.70, 2: 0.66}
    assert len(at2.without_point) == 1              # seed 3 never reached epoch 2
    by_model = cmp.group_points(pts, "model")
    assert [(g.key, g.n) for g in by_model] == [("KNI", 3), ("NI", 1)]
    sec = kni.seconds()                            # train 0.25 * epoch, eval 0.125
    assert sec[0] == pytest.approx(np.mean([0.25, 0.5, 0.75, 0.25, 0.5, 0.75, 0.25]))
    assert sec[1] == 0.125


def test_a_group_pooling_several_configurations_says_its_std_is_not_the_seeds(store):
    for seed in (1, 2):
        add_run(store, seed, [0.70 + seed / 100])
        add_run(store, seed, [0.60 + seed / 100], kg=False)            # the same recipe name, NI
    run = lambda *a: " ".join(CliRunner().invoke(app, ["compare", "--all", *a, "--db", store.url]).stdout.split())  # noqa: E731
    assert ("several configurations pooled (--group-by recipe), so n counts runs, not seeds, and the std holds "
            "their differences as well as the seeds'") in run("--group-by", "recipe")
    assert "several configurations pooled" not in run()


def test_differing_settings_put_the_model_first_and_leave_out_keys_a_group_lacks(monkeypatch):
    from workbench.analysis import groups as groups_module
    monkeypatch.setattr(groups_module, "_settings", lambda g: g)      # a group's flat settings, given
    kni = {"eval.topk.k": [5], "eval.topk.users": 40, "model.kg": True, "model.name": "kni"}
    ni = {"eval.topk.k": [10], "eval.topk.users": 40, "model.kg": False, "model.name": "kni"}
    pop = {"eval.topk.k": [5], "eval.topk.users": 50, "model.name": "pop"}
    texts = groups_module.differing([kni, ni, pop], limit=40)
    assert texts[0].startswith("model.kg=true, model.name=") and texts[1].startswith("model.kg=false")
    assert texts[2].startswith('model.name="pop", eval.topk.k=[5]')       # no model.kg=null


def test_repeated_seed_newest_counts(store):
    old = add_run(store, 1, [0.60])
    new = add_run(store, 1, [0.70])
    add_run(store, 2, [0.65])
    g = cmp.group_points(cmp.points(store, store.runs(), "best"), "config")[0]
    assert g.n == 2 and [m.run.id for m in g.superseded] == [old]
    assert g.by_seed("test_auc") == {1: 0.70, 2: 0.65} and new in [m.run.id for m in g.members]


def test_paired_over_shared_seeds(store):
    a_vals = {1: 0.70, 2: 0.72, 3: 0.74, 4: 0.90}          # seed 4 only in A
    b_vals = {1: 0.60, 2: 0.61, 3: 0.65}
    for s, v in a_vals.items():
        add_run(store, s, [v], name="a")
    for s, v in b_vals.items():
        add_run(store, s, [v], name="b", kg=False)
    groups = cmp.group_points(cmp.points(store, store.runs(), "best"), "config")
    a, b = cmp.resolve_group(groups, "a"), cmp.resolve_group(groups, "b")
    r = cmp.paired_test(a, b, "test_auc")
    assert r.seeds == [1, 2, 3]
    assert r.diff == pytest.approx(np.mean([0.10, 0.11, 0.09]))
    assert r.mean_a == pytest.approx(0.72) and r.mean_b == pytest.approx(np.mean([0.60, 0.61, 0.65]))
    assert r.p_value == 2 / 8 and r.exact          # all three differences positive
    assert r.noise == pytest.approx(max(np.std([0.70, 0.72, 0.74], ddof=1), np.std([0.60, 0.61, 0.65], ddof=1)))
    assert not r.within_noise
    # p = 0.25 is the smallest p three seeds can give: no verdict, whatever the size of the difference
    assert r.min_p == 2 / 8 and r.verdict == "too few seeds" and r.better is None
    assert (r.a_differs, r.b_differs) == ("model.kg=true", "model.kg=false")   # what the pair differs in
    assert r.to_dict()["a_differs"] == "model.kg=true"
    r2 = cmp.paired_test(a, b, "test_logloss")     # logloss = 1.5 - auc: lower is better
    assert r2.diff == pytest.approx(-r.diff) and r2.p_value == r.p_value
    assert cmp.resolve_group(groups, a.key[:6]) is a
    with pytest.raises(cmp.CompareError, match="no group"):
        cmp.resolve_group(groups, "zzz")


def test_a_setting_added_since_an_old_run_reads_as_its_default(store):
    """A run stored before `model.name` and `eval.topk` existed has no such keys: it does not
    differ from a new run with the defaults by `null`."""
    old, new = add_run(store, 1, [0.7], name="a"), add_run(store, 1, [0.7], name="b")
    run = store.get(old)
    raw = json.loads(run.config_json)
    del raw["model"]["name"], raw["eval"]["topk"]
    with store.writer.begin() as conn:
        conn.execute(text("UPDATE runs SET config_json = :c WHERE id = :i"), {"c": json.dumps(raw), "i": old})
    groups = cmp.group_points(cmp.points(store, [store.get(old), store.get(new)], "best"), "config")
    assert [g.n for g in groups] == [1, 1] and cmp.differing(groups) == ["", ""]


def test_within_noise(store):
    for s, (x, y) in enumerate([(0.70, 0.69), (0.60, 0.62), (0.75, 0.73)], start=1):
        add_run(store, s, [x], name="a")
        add_run(store, s, [y], name="b", kg=False)
    groups = cmp.group_points(cmp.points(store, store.runs(), "best"), "config")
    r = cmp.paired_test(cmp.resolve_group(groups, "a"), cmp.resolve_group(groups, "b"), "test_auc")
    assert abs(r.diff) < r.noise and r.within_noise and r.better is None
    assert r.p_value == 1.0                       # diffs 0.01, -0.02, 0.02: mean ~0.0033, every pattern reaches it


def test_matrix(store):
    add_run(store, 1, [0.7], name="a")
    add_run(store, 2, [0.8], name="a")
    add_run(store, 1, [0.6], name="b", kg=False)
    m = cmp.matrix(cmp.points(store, store.runs(), "best"), "model", "test_auc")
    assert m.rows == ["synthetic-tiny"] and m.cols == ["KNI", "NI"]
    assert m.cells[("synthetic-tiny", "KNI")].stat("test_auc")[0] == pytest.approx(0.75)
    assert m.cells[("synthetic-tiny", "NI")].n == 1
    by_settings = cmp.matrix(cmp.points(store, store.runs(), "best"), "config", "test_auc")
    assert len(by_settings.cols) == 2                # the recipe name is not a setting; kg is
    assert sorted(by_settings.col_labels.values()) == ["KNI [model.kg=true]", "NI [model.kg=false]"]
    # a column has no id of its own: its cells are configuration groups, named by their group id
    runs = {r.recipe: r for r in store.runs()}
    col = next(c for c in by_settings.cols if by_settings.col_labels[c].startswith("KNI"))
    assert by_settings.cell_ids("synthetic-tiny", col) == [cmp.group_id(runs["a"].config_hash)]
    with pytest.raises(cmp.CompareError):
        cmp.matrix(cmp.points(store, store.runs(), "best"), "dataset", "test_auc")


# -- CSV --------------------------------------------------------------------------------------------

def test_csv_columns_are_documented():
    doc = (ROOT / "docs" / "export.md").read_text()
    for col in cmp.RUN_COLUMNS + ("group", "label", "n", "seeds", "run_ids", "epoch_mean", "seconds_per_epoch"):
        assert col in doc, col
    assert cmp.RUN_COLUMNS[:6] == ("run_id", "recipe", "dataset", "model", "config_hash", "seed")
    assert "test_auc_mean" in cmp.GROUP_COLUMNS and "test_auc_std" in cmp.GROUP_COLUMNS


def test_export_round_trip(store, tmp_path):
    ids = [add_run(store, s, v) for s, v in ((1, [0.6012345678901234, 0.7]), (2, [0.65]), (3, [0.55, 0.5, 0.58]))]
    add_run(store, 4, [0.9], status=RUNNING)       # running runs count by default (live)
    db = store.url
    out = tmp_path / "runs.csv"
    res = CliRunner().invoke(app, ["export", "--db", db, "--csv", str(out)])
    assert res.exit_code == 0, res.output
    rows = list(csv.DictReader(out.open()))
    assert list(rows[0]) == list(cmp.RUN_COLUMNS)
    assert [int(r["run_id"]) for r in rows] == ids + [4]
    epochs = store.epochs_of(ids)
    for row, run_id in zip(rows, ids):
        run = store.get(run_id)
        best = next(e for e in epochs[run_id] if e.epoch == run.best_epoch)
        assert int(row["epoch"]) == best.epoch
        for m in cmp.METRICS:
            assert float(row[m]) == getattr(best, m)          # exact: shortest round-trip repr
        assert row["status"] == "completed" and row["git_commit"] == "abc"
    # per group, to stdout
    res = CliRunner().invoke(app, ["export", "--db", db, "--csv", "-", "--groups", "--at", "last"])
    assert res.exit_code == 0, res.output
    groups = list(csv.DictReader(io.StringIO(res.stdout)))
    assert len(groups) == 1 and list(groups[0]) == list(cmp.GROUP_COLUMNS)
    g = groups[0]
    last = [0.7, 0.65, 0.58, 0.9]
    assert int(g["n"]) == 4 and g["seeds"] == "1 2 3 4" and g["at"] == "last"
    assert g["training_seeds"] == "4"                 # counted at its best epoch so far: said so
    assert float(g["test_auc_mean"]) == pytest.approx(np.mean(last), abs=1e-15)
    assert float(g["test_auc_std"]) == pytest.approx(np.std(last, ddof=1), abs=1e-15)
    # completed only
    res = CliRunner().invoke(app, ["export", "--db", db, "--csv", "-", "--status", "completed", "--json"])
    assert res.exit_code != 0                      # --json and --csv - both want stdout


def test_compare_marks_the_seeds_still_training(store):
    for s in (1, 2):
        add_run(store, s, [0.70, 0.71])
    add_run(store, 3, [0.90], status=RUNNING)         # one epoch so far: a mean of 0.77 is not final
    runner = CliRunner()
    text = " ".join(runner.invoke(app, ["compare", "--db", store.url, "--all"]).stdout.split())
    assert "1,2,3*" in text and "* still training: read at its best epoch so far" in text
    matrix = " ".join(runner.invoke(app, ["compare", "--db", store.url, "--all", "--matrix"]).stdout.split())
    assert "(3+)" in matrix and "still training" in matrix
    done = " ".join(runner.invoke(app, ["compare", "--db", store.url, "--all", "--status", "completed"]).stdout.split())
    assert "1,2 " in done and "*" not in done.replace("±", "")


def test_compare_cli(store, tmp_path):
    for s, (x, y) in enumerate([(0.70, 0.60), (0.72, 0.61), (0.74, 0.65)], start=1):
        add_run(store, s, [x], name="a")
        add_run(store, s, [y], name="b", kg=False)
    db = store.url
    runner = CliRunner()
    res = runner.invoke(app, ["compare", "--db", db, "--all", "--json", "--paired", "a", "b", "--matrix"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert [g["recipe"] for g in out["groups"]] == ["a", "b"]      # ranked by test auc
    assert out["groups"][0]["test_auc_mean"] == pytest.approx(0.72)
    assert out["groups"][0]["test_auc_std"] == pytest.approx(0.02)
    assert out["paired"]["n"] == 3 and out["paired"]["p_value"] == 0.25 and out["paired"]["better"] is None
    assert out["paired"]["verdict"] == "too few seeds" and out["paired"]["min_p"] == 0.25
    assert {c["column"] for c in out["matrix"]["cells"]} == {"KNI", "NI"}
    res = runner.invoke(app, ["compare", "--db", db, "--recipe", "a"])
    assert res.exit_code == 0 and "0.7200±0.0200" in res.stdout
    res = runner.invoke(app, ["compare", "--db", db, "--all", "--paired", "a", "b"])
    assert res.exit_code == 0 and "0.25" in res.stdout and "A better" not in res.stdout
    assert "smallest reachable p is 2/2^3 = 0.25 >= 0.05; 6 or more shared seeds" in " ".join(res.stdout.split())
    for bad, msg in ((["--recipe", "nope"], "no completed/running/pruned runs"), (["--metric", "auc"], "--metric"),
                     (["--at", "zero"], "--at"), (["--group-by", "seed"], "--group-by"),
                     (["--paired", "a", "zzz"], "no group"), (["99"], "no run with id 99")):
        res = runner.invoke(app, ["compare", "--db", db, *bad])
        assert res.exit_code == 2, (bad, res.output)
        assert msg in res.stderr


def test_replay_of_the_original_protocol():
    from kni_core.protocol import replay
    # patience 2: stops at index 3 (0.70 < mean(0.70, 0.72), 0.595 > mean(0.60, 0.58)); best among 0..3 is 2.
    aucs = [0.60, 0.70, 0.72, 0.70, 0.80]
    lls = [0.70, 0.60, 0.58, 0.595, 0.50]
    assert replay(aucs, lls, 2) == (2, 3)
    assert replay(aucs, lls, 0) == (4, None)           # no early stopping: best of all
    assert replay(aucs[:3], lls[:3], 2) == (2, None)   # the rule never fires within the recording


def test_at_original_replays_test_selection_and_stopping(store):
    from workbench.analysis import points
    aucs = [0.60 + 0.01 * i for i in range(11)] + [0.60, 0.95]   # rule fires at epoch 12
    full = add_run(store, 1, aucs)
    short = add_run(store, 2, [0.6, 0.7])                         # ended before max_epochs (3)
    pts = {p.run.id: p for p in points(store, store.runs(), "original")}
    assert pts[full].point.epoch == 11 and not pts[full].truncated
    assert pts[short].point.epoch == 2 and pts[short].truncated


# -- one run per seed: a re-run counts only once it has completed --------------------------------------

def test_a_completed_seed_counts_until_its_rerun_completes(store, tmp_path):
    ids = [add_run(store, s, [v]) for s, v in ((1, 0.82), (2, 0.81), (3, 0.83))]
    rerun = add_run(store, 2, [0.40], status=RUNNING)         # seed 2 re-run, one poor epoch so far
    g = cmp.group_points(cmp.points(store, store.runs(), "best"), "config")[0]
    assert [m.run.id for m in g.members] == ids               # the completed seed 2 still counts
    assert g.by_seed("test_auc") == {1: 0.82, 2: 0.81, 3: 0.83}
    assert [p.run.id for p in g.pending] == [rerun] and g.superseded == []
    assert g.seed_notes() == [f"seed 2: run {rerun} still training, completed run {ids[1]} counts"]
    db = store.url
    res = CliRunner().invoke(app, ["compare", "--db", db, "--all"])
    assert res.exit_code == 0, res.output
    assert "0.8200±0.0100" in res.stdout
    assert f"seed 2: run {rerun} still training, completed run {ids[1]} counts" in res.stdout
    # CSV: per group from the counted runs, per run every run with `counts`
    res = CliRunner().invoke(app, ["export", "--db", db, "--csv", "-", "--groups"])
    row = next(csv.DictReader(io.StringIO(res.stdout)))
    assert row["run_ids"] == " ".join(map(str, ids)) and float(row["test_auc_mean"]) == pytest.approx(0.82)
    res = CliRunner().invoke(app, ["export", "--db", db, "--csv", "-"])
    counts = {int(r["run_id"]): r["counts"] for r in csv.DictReader(io.StringIO(res.stdout))}
    assert counts == {ids[0]: "true", ids[1]: "true", ids[2]: "true", rerun: "false"}
    # the re-run completes: now it counts and the old seed-2 run is superseded
    store.finish(rerun, COMPLETED, best=None, stopped_early=False)
    g = cmp.group_points(cmp.points(store, store.runs(), "best"), "config")[0]
    assert [m.run.id for m in g.members] == [ids[0], rerun, ids[2]]
    assert [p.run.id for p in g.superseded] == [ids[1]] and g.pending == []
    assert g.seed_notes() == [f"seed 2: run {ids[1]} superseded by the newer completed run {rerun}"]


def test_a_failed_rerun_never_replaces_a_completed_seed(store):
    done = add_run(store, 1, [0.80])
    failed = add_run(store, 1, [0.30, 0.35], status="failed")
    g = cmp.group_points(cmp.points(store, store.runs(), "best"), "config")[0]   # --status all
    assert [m.run.id for m in g.members] == [done] and [p.run.id for p in g.pending] == [failed]
    assert g.seed_notes() == [f"seed 1: run {failed} failed, completed run {done} counts"]
    # without a completed run the newest run of the seed counts (live while it trains)
    live_old = add_run(store, 2, [0.5], status=RUNNING)
    live_new = add_run(store, 2, [0.6], status=RUNNING)
    g = cmp.group_points(cmp.points(store, store.runs(), "best"), "config")[0]
    assert g.by_seed("test_auc") == {1: 0.80, 2: 0.60}
    assert [p.run.id for p in g.superseded] == [live_old] and live_new in [m.run.id for m in g.members]


def test_the_counted_run_does_not_change_with_at(store):
    # seed 1: an older completed run with 3 epochs, a newer completed one with 1; --at 3
    add_run(store, 1, [0.6, 0.7, 0.8])
    newer = add_run(store, 1, [0.9])
    g = cmp.group_points(cmp.points(store, store.runs(), 3), "config")[0]
    assert g.members == [] and [m.run.id for m in g.without_point] == [newer]


# -- the paired verdict follows the p-value and the interval -------------------------------------------

def paired(store, a_vals, b_vals):
    for s, v in enumerate(a_vals, start=1):
        add_run(store, s, [v], name="a")
    for s, v in enumerate(b_vals, start=1):
        add_run(store, s, [v], name="b", kg=False)
    groups = cmp.group_points(cmp.points(store, store.runs(), "best"), "config")
    return cmp.paired_test(cmp.resolve_group(groups, "a"), cmp.resolve_group(groups, "b"), "test_auc")


def test_two_seeds_never_give_a_verdict(store):
    r = paired(store, [0.80, 0.82], [0.70, 0.71])            # A ahead on both seeds, by far
    assert r.p_value == 0.5 and r.min_p == 0.5
    assert r.verdict == "too few seeds" and r.better is None
    assert r.verdict_text() == ("no verdict possible: with 2 shared seeds the smallest reachable p is 2/2^2 = 0.5 "
                                ">= 0.05; 6 or more shared seeds can show a difference")
    assert cmp.seeds_needed() == 6 and cmp.min_pvalue(5) == 2 / 32 and cmp.min_pvalue(6) == 2 / 64


def test_six_seeds_of_one_sign_are_significant(store):
    r = paired(store, [0.80, 0.81, 0.82, 0.83, 0.84, 0.85], [0.70, 0.72, 0.71, 0.74, 0.73, 0.76])
    assert r.p_value == 2 / 64 and r.ci[0] > 0
    assert r.verdict == "significant" and r.better == "A"
    assert r.verdict_text().startswith("A better: p = 0.03125 < 0.05 and the 95% CI [+0.")
    low, high = r.ci                     # the report's direction, B - A: the same interval, negated
    assert f"95% CI [{-high:+.4f}, {-low:+.4f}]" in r.verdict_text(b_minus_a=True)


def test_no_significant_difference_at_005(store):
    r = paired(store, [0.80, 0.70, 0.82, 0.71, 0.84, 0.69], [0.70, 0.80, 0.71, 0.82, 0.73, 0.70])
    assert r.p_value >= 0.05 and r.better is None and r.verdict == "not significant"
    assert r.verdict_text().startswith(f"no significant difference at 0.05 (p = {r.p_value:.4g}")


def test_inconclusive_when_the_interval_holds_zero(store, monkeypatch):
    # p < 0.05 with an interval that reaches 0 is rare (the percentile bootstrap is the narrower of
    # the two); the verdict must still not call a winner then
    monkeypatch.setattr("workbench.analysis.paired.bootstrap_ci", lambda d, **kw: (-0.001, 0.02))
    r = paired(store, [0.80, 0.81, 0.82, 0.83, 0.84, 0.85], [0.70, 0.72, 0.71, 0.74, 0.73, 0.76])
    assert r.p_value == 2 / 64 and r.verdict == "inconclusive" and r.better is None
    assert r.verdict_text() == "inconclusive: p = 0.03125 < 0.05 but the 95% CI [-0.0010, +0.0200] includes 0"


def test_a_group_of_several_configurations_is_not_paired_on_one_run_per_seed(store):
    # model KNI has a good configuration (0.80) and a bad one (0.70) on seeds 1-3; NI is at 0.75.
    # Keeping one run per seed would pair the bad one alone and call NI better
    for s in (1, 2, 3):
        add_run(store, s, [0.80], name="good")
        add_run(store, s, [0.70 + s / 1000], name="bad")
        add_run(store, s, [0.75], name="ni", kg=False)
    pts = cmp.points(store, store.runs(), "best")
    kni, ni = cmp.group_points(pts, "model")
    assert kni.n == 6 and kni.stat("test_auc")[0] == pytest.approx(0.751)
    with pytest.raises(cmp.CompareError, match=r"KNI holds 2 runs of seed 1 \(runs 1, 2: 2 configurations\)"):
        cmp.paired_test(kni, ni, "test_auc")
    good, bad, ni_config = cmp.group_points(pts, "config")
    assert cmp.paired_test(good, ni_config, "test_auc").diff == pytest.approx(0.05)


def test_a_group_is_never_paired_with_itself(store):
    add_run(store, 1, [0.7], name="a")
    g = cmp.group_points(cmp.points(store, store.runs(), "best"), "config")[0]
    with pytest.raises(cmp.CompareError, match="same group"):
        cmp.paired_test(g, g, "test_auc")
