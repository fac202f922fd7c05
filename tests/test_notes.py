"""Tags and notes on runs and groups (kni tag / note, kni runs --tag, CSV), and kni diff."""

from __future__ import annotations

import csv
import dataclasses
import io
import json

import pytest
from typer.testing import CliRunner

from kni_core.results import EpochResult
from workbench.analysis.diff import config_diff
from workbench.cli import app
from workbench.recipe import parse_recipe
from workbench.runs.provenance import Code
from workbench.runs.rows import new_run
from workbench.store.errors import StoreError
from workbench.store.records import group_target, run_target
from workbench.store.repository import Store
from workbench.store.statuses import COMPLETED

RECIPE = """\
name: {name}
dataset: {{name: synthetic, min_relation_triples: 1, synthetic: {{preset: tiny}}}}
model: {{hop_n_sample: [1, 4], max_degree: 16, hidden: {hidden}}}
train: {{epochs: 3}}
eval: {{n_eval: 2}}
device: cpu
"""


def completed(store: Store, seed: int, name: str = "tiny", hidden: int = 16, device: str = "cpu") -> int:
    """A completed run with two epochs, written through the Store as a run process would."""
    rec = parse_recipe(RECIPE.format(name=name, hidden=hidden))
    cfg = rec.config_for(seed)
    cfg.device = device
    run_id = store.create_run(new_run(rec.name, rec.text, cfg, prov=Code("0.1.0", "abc")))
    assert store.claim(run_id, 1, "elsewhere")
    for e in (1, 2):
        r = EpochResult(seed, e, 0.6, 0.7 + e / 100, 0.6, 0.65, 0.69 + e / 100, 0.61, 0.6, 1.0, 0.5)
        store.add_epoch(run_id, r, r)
    store.finish(run_id, COMPLETED, best=r)
    return run_id


@pytest.fixture
def db(tmp_path):
    path = str(tmp_path / "runs.db")
    with Store.open(path) as store:
        ids = [completed(store, 1), completed(store, 2), completed(store, 1, name="wide", hidden=32)]
    assert ids == [1, 2, 3]
    return path


def kni(db: str, *args: str):
    result = CliRunner().invoke(app, [*args, "--db", db], env={"COLUMNS": "200"})
    return result


def test_store_tags_and_notes(db):
    with Store.open(db) as store:
        h = store.get(1).config_hash
        assert store.add_tags([run_target(1), run_target(2)], ["base", "base", "try-1"]) == 4
        assert store.add_tags([run_target(1)], ["base"]) == 0              # already there
        store.add_tags([group_target(h)], ["paper"])
        store.set_note(run_target(2), "  lr too high  ")
        store.set_note(group_target(h), "the paper's settings")
        runs = {r.id: r for r in store.runs()}
        assert runs[1].tags == ("base", "try-1") and runs[2].note == "lr too high"
        assert runs[1].group_tags == ("paper",) and runs[1].group_note == "the paper's settings"
        assert runs[3].tags == () and runs[3].group_tags == () and runs[3].group_note is None
        store.set_tags(run_target(1), ["try-2"])
        assert store.get(1).tags == ("try-2",)
        assert store.remove_tags([run_target(2)], ["base"]) == 1
        store.set_note(run_target(2), "")
        assert store.get(2).note is None
        for bad in ("", "two words", "a,b", "x" * 65):
            with pytest.raises(StoreError, match="tag"):
                store.add_tags([run_target(1)], [bad])
        with pytest.raises(StoreError, match="no run with id 99"):
            store.set_note(run_target(99), "x")
        # deleting a run drops its tags: a new run that reuses the id starts clean
        store.delete([3])
        store.add_tags([run_target(3)], ["x"])
        store.delete([3])
        assert run_target(3) not in store.tags()


def test_tag_and_note_commands_and_runs_filter(db):
    assert kni(db, "tag", "1", "2", "baseline").exit_code == 0
    res = kni(db, "tag", "--group", "zzz", "paper")
    assert res.exit_code == 2 and "no group whose config hash starts with 'zzz'" in res.output
    with Store.open(db) as store:
        h = store.get(3).config_hash
    res = kni(db, "tag", "--group", h[:6], "wide-one")
    assert res.exit_code == 0, res.output
    assert "added to 1 of group" in res.output
    res = kni(db, "tag", "7", "x")
    assert res.exit_code == 2 and "no run with id 7" in res.output
    res = kni(db, "tag", "abc", "x")
    assert res.exit_code == 2 and "expected a whole number, got 'abc'" in res.output
    res = kni(db, "tag", "1", "two words")
    assert res.exit_code == 2 and "without spaces" in res.output
    res = kni(db, "tag", "baseline")
    assert res.exit_code == 2 and "and then the tag" in res.output
    res = CliRunner().invoke(app, ["runs", "--db", ""])  # --db "$UNSET": not runs.db
    assert res.exit_code == 2 and "--db" in res.output and "empty; give a database file or URL" in \
        " ".join(res.output.replace("│", " ").split())
    res = kni(db, "tag", "1", "2")                       # runs 1 and 2 meant, the tag forgotten
    assert res.exit_code == 2 and "tag '2' is also a run id" in res.output and "kni tag 1 2 NAME" in res.output
    assert kni(db, "tag", "1", "2024").exit_code == 0    # digits that name no run are a tag
    assert kni(db, "tag", "--remove", "1", "2024").exit_code == 0

    ids = lambda out: [r["id"] for r in json.loads(out)]  # noqa: E731
    assert ids(kni(db, "runs", "--tag", "baseline", "--json").stdout) == [1, 2]
    assert ids(kni(db, "runs", "--tag", "wide-one", "--json").stdout) == [3]          # via its group
    assert ids(kni(db, "runs", "--tag", "baseline", "--tag", "wide-one", "--json").stdout) == []
    table = kni(db, "runs", "--tag", "wide-one").stdout
    assert "(wide-one)" in table and "tags" in table
    assert kni(db, "tag", "--remove", "2", "baseline").exit_code == 0
    assert ids(kni(db, "runs", "--tag", "baseline", "--json").stdout) == [1]

    assert kni(db, "note", "1", "lr too high").exit_code == 0
    assert kni(db, "note", "1").stdout.strip() == "lr too high"
    assert kni(db, "note", "--group", h[:6], "wider model").exit_code == 0
    show = kni(db, "show", "3", "--no-plot").stdout
    assert "wider model" in show and "wide-one" in show
    shown = json.loads(kni(db, "show", "1", "--json").stdout)["run"]
    assert shown["note"] == "lr too high" and shown["tags"] == ["baseline"] and shown["group_tags"] == []
    assert kni(db, "note", "1", "").exit_code == 0
    assert "has no note" in kni(db, "note", "1").stdout


def test_export_carries_tags_and_notes(db):
    with Store.open(db) as store:
        h = store.get(1).config_hash
        store.add_tags([run_target(1)], ["best"])
        store.add_tags([group_target(h)], ["paper", "rerun"])
        store.set_note(run_target(2), "slow machine, with a comma")
        store.set_note(group_target(h), "as in Table 2")
    res = kni(db, "export", "--csv", "-")
    rows = {r["run_id"]: r for r in csv.DictReader(io.StringIO(res.stdout))}
    assert rows["1"]["tags"] == "best" and rows["1"]["group_tags"] == "paper rerun"
    assert rows["2"]["note"] == "slow machine, with a comma" and rows["2"]["group_note"] == "as in Table 2"
    assert rows["3"]["tags"] == rows["3"]["group_tags"] == rows["3"]["note"] == ""
    res = kni(db, "export", "--groups", "--csv", "-")
    groups = {r["config_hash"]: r for r in csv.DictReader(io.StringIO(res.stdout))}
    assert groups[h]["tags"] == "paper rerun" and groups[h]["note"] == "as in Table 2"
    assert len(groups) == 2 and [g["tags"] for k, g in groups.items() if k != h] == [""]


def test_diff_lists_only_what_differs(db):
    with Store.open(db) as store:
        d = config_diff(store.get(1), store.get(3))
        assert d.same_group is False
        assert [(k, a, b) for k, a, b in d.differences] == [("name", "tiny", "wide"), ("model.hidden", 16, 32)]
        assert d.always == [("recipe", "tiny", "wide"), ("seed", 1, 1), ("device", "cpu", "cpu")]
        same = config_diff(store.get(1), store.get(2))
        assert same.same_group and same.differences == [] and same.always[1] == ("seed", 1, 2)
    res = kni(db, "diff", "1", "3")
    assert res.exit_code == 0, res.output
    lines = res.stdout.splitlines()
    assert any("model.hidden" in ln and "16" in ln and "32" in ln for ln in lines)
    assert not any("max_degree" in ln for ln in lines)             # equal keys are not listed
    assert "2 key(s) differ" in res.stdout
    out = json.loads(kni(db, "diff", "1", "3", "--json").stdout)
    assert out["differences"][1] == {"key": "model.hidden", "a": 16, "b": 32, "absent": []}
    assert [r["key"] for r in out["always"]] == ["recipe", "seed", "device"]
    res = kni(db, "diff", "1", "9")
    assert res.exit_code == 2 and "no run with id 9" in res.output


def test_diff_shows_keys_only_one_config_has(db):
    with Store.open(db) as store:
        a, b = store.get(1), store.get(2)
        cfg = json.loads(b.config_json)
        cfg["model"]["experimental"] = True
        del cfg["train"]["patience"]
        b = dataclasses.replace(b, config_json=json.dumps(cfg), git_commit="def")
        d = config_diff(a, b).to_dict()
    keys = {r["key"]: r for r in d["differences"]}
    assert keys["model.experimental"]["absent"] == ["a"] and keys["model.experimental"]["b"] is True
    assert keys["train.patience"]["absent"] == ["b"]
    assert keys["git_commit"]["a"] == "abc" and keys["git_commit"]["b"] == "def"
