"""Hostile input (issue 17): no code runs from data, no escape reaches a terminal or a
spreadsheet, no file lands outside its folder, and faults end in one clear line or a rebuilt
cache, never in a traceback or a wrong number. docs/reliability.md (Hostile input) lists the
cases; each test here failed before its fix."""

from __future__ import annotations

import csv
import errno
import importlib
import io
import logging
import os
import pickle
import re
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from kni_core.config import DatasetConfig, RunConfig, TrainConfig
from kni_core.data import prepare
from kni_core.train import Diverged, Trainer
from workbench.cli import app
from workbench.recipe import RecipeError, load_recipe, parse_recipe
from workbench.store.records import group_target, run_target
from workbench.store.repository import Store

from helpers import tiny_recipe

pytestmark = pytest.mark.usefixtures("in_tmp_path")
prepare_module = importlib.import_module("kni_core.data.prepare")   # the package exports prepare() by that name

ESCAPES = "\x1b[2J\x1b]0;pwned\x07\x9b31m"


def kni(*args: str):
    return CliRunner().invoke(app, list(args))


def tiny_config(**train) -> RunConfig:
    return RunConfig(dataset=DatasetConfig(name="synthetic", min_relation_triples=1, synthetic={"preset": "tiny"}),
                     train=TrainConfig(epochs=1, patience=0, **train), device="cpu").validate()


@pytest.fixture(scope="module")
def db(tmp_path_factory) -> Path:
    """Two completed tiny runs (one group), each with its saved model."""
    base = tmp_path_factory.mktemp("hostile")
    (base / "tiny.yaml").write_text(tiny_recipe("tiny", epochs=1, seeds="[1, 2]"))
    res = CliRunner().invoke(app, ["run", str(base / "tiny.yaml"), "--db", str(base / "runs.db")])
    assert res.exit_code == 0, res.output
    return base / "runs.db"


# --------------------------------------------------------------------------------------------
# security


class _Shell:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_dataset_pickle_that_runs_code_is_refused_before_anything_runs(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    marker = tmp_path / "ran"
    (data / "bc.pkl").write_bytes(pickle.dumps({"train_data": _Shell(marker), "test_data": np.zeros((1, 3))}))
    recipe = tmp_path / "pkl.yaml"
    recipe.write_text(f"name: pkl\ndataset: {{path: {data}, format: kni-pkl}}\nseeds: [1]\ndevice: cpu\n")
    res = kni("run", str(recipe), "--db", str(tmp_path / "runs.db"))
    assert res.exit_code == 2
    assert "bc.pkl: refused to load: the pickle calls posix.system" in res.output and "Traceback" not in res.output
    assert not marker.exists()


def flow_bomb(levels: int = 9) -> str:
    """A 'billion laughs' value in one line: each anchor repeats the one inside it ten times."""
    value = '&c0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol","lol"]'
    for i in range(1, levels):
        value = f"&c{i} [{value}, " + ", ".join([f"*c{i - 1}"] * 9) + "]"
    return "[" + value + ", " + ", ".join([f"*c{levels - 1}"] * 9) + "]"


@pytest.mark.parametrize("where", ["description", "sweep", "set"])
def test_a_yaml_bomb_is_refused_at_its_line_in_well_under_a_second(tmp_path, where):
    text, overrides = tiny_recipe("bomb"), []
    if where == "description":
        text += f"description: {flow_bomb()}\n"
    elif where == "sweep":
        text += f"sweep:\n  grid:\n    model.hidden: {flow_bomb()}\n"
    else:
        overrides = [f"description={flow_bomb()}"]
    tracemalloc.start()
    start = time.perf_counter()
    with pytest.raises(RecipeError) as info:
        parse_recipe(text, str(tmp_path / "bomb.yaml"), overrides=overrides)
    seconds = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert seconds < 1.0 and peak < 200 << 20, (seconds, peak)
    message = str(info.value)
    assert "more than 100,000 values once its YAML aliases are expanded" in message
    line = {"description": 8, "sweep": 8}.get(where)       # the line after the tiny recipe's 7
    assert ("--set description=" in message) if line is None else (f"bomb.yaml:{line}: " in message), message


def test_csv_cells_of_user_text_never_start_a_formula(db, tmp_path):
    hostile = ["=HYPERLINK(\"http://x\")", "+cmd|calc", "-2+3", "@SUM(1+1)", "\tx", "\rx"]
    with Store.open(db) as store:
        store.set_note(run_target(1), "=1+1 " + ESCAPES)
        store.add_tags([run_target(1)], ["=cmd", "+x", "-y", "@z"])
        store.set_note(group_target(store.get(1).config_hash), "@SUM(1+1)")
    for groups in ([], ["--groups"]):
        res = kni("export", "--csv", "-", "--db", str(db), *groups)
        assert res.exit_code == 0, res.output
        rows = list(csv.DictReader(io.StringIO(res.stdout)))
        for row in rows:
            for column, cell in row.items():
                try:
                    float(cell)
                    continue                    # numbers stay numbers (a negative one included)
                except ValueError:
                    pass
                assert not cell.startswith(("=", "+", "-", "@", "\t", "\r")), (column, cell)
                assert "\x1b" not in cell
        first = rows[0]
        if groups:                              # the group's note
            assert first["note"].startswith("'@SUM")
        else:
            assert first["note"].startswith("'=1+1") and first["group_note"].startswith("'@SUM")
            assert first["tags"].startswith("'")
    assert hostile                              # the characters checked above are OWASP's list


def test_stored_text_reaches_no_terminal_with_a_control_character(db):
    with Store.open(db) as store:
        store.set_note(run_target(2), "lr too high " + ESCAPES)
    for args in (["show", "2", "--no-plot"], ["note", "2"], ["runs"], ["compare", "--all"]):
        res = kni(*args, "--db", str(db))
        assert res.exit_code == 0, res.output
        assert "\x1b" not in res.output and "\x9b" not in res.output, args
    shown = kni("note", "2", "--db", str(db)).output
    assert "\\x1b[2J" in shown                 # made visible, not dropped


def test_the_workbench_shows_stored_text_with_controls_made_visible(db):
    from workbench.tui.data import RunData
    with Store.open(db) as store:
        store.set_note(run_target(2), "note " + ESCAPES)
        data = RunData(store)
        data.poll_now(force_full=True)
    assert data.runs[2].note.startswith("note \\x1b[2J") and "\x1b" not in data.runs[2].note


@pytest.mark.parametrize("name", ["two\nlines", "red\x1b[31m", "bell\x07"])
def test_a_recipe_name_is_one_line_of_printable_characters(tmp_path, name):
    with pytest.raises(RecipeError, match=r"r\.yaml:1: name: expected one line of printable characters"):
        parse_recipe(f"name: {name!r}\n".replace("'", '"'), str(tmp_path / "r.yaml"))


def test_a_checkpoint_file_name_never_leaves_its_folder(tmp_path):
    recipe = tmp_path / "evil.yaml"
    recipe.write_text(tiny_recipe('"../../x/evil"', epochs=1))
    res = kni("run", str(recipe), "--checkpoint-dir", str(tmp_path / "deep" / "a" / "b"), "--db", str(tmp_path / "r.db"))
    assert res.exit_code == 0, res.output
    written = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.pt"))
    assert len(written) == 1 and re.fullmatch(r"deep/a/b/x-evil-seed1-run1-[0-9a-f]{8}\.pt", written[0]), written
    assert not (tmp_path / "deep" / "x").exists() and not (tmp_path / "x").exists()


def test_a_device_this_machine_lacks_is_refused_before_anything_is_queued(tmp_path):
    """cuda:99 exists nowhere: said at once, exit 2, no row (each seed used to be queued, started
    and stored as failed, and kni resume then failed it again)."""
    from workbench.store.repository import Store
    recipe = tmp_path / "t.yaml"
    recipe.write_text(tiny_recipe("t", epochs=1))
    res = kni("run", str(recipe), "--set", "device=cuda:99", "--db", str(tmp_path / "r.db"))
    assert res.exit_code == 2 and "error: device cuda:99: device 'cuda:99' requested but " in res.output
    assert "nothing was queued" in res.output
    with Store.open(str(tmp_path / "r.db")) as store:
        assert store.runs() == []


def test_two_databases_sharing_a_checkpoint_folder_keep_their_own_models(tmp_path):
    """Run 1 of a.db and run 1 of b.db, saved into one --checkpoint-dir: two files (the second
    overwrote the first), and kni rm in a.db leaves b.db's model where its row says."""
    from workbench.store.repository import Store
    recipe = tmp_path / "t.yaml"
    recipe.write_text(tiny_recipe("t", epochs=1))
    for db in ("a.db", "b.db"):
        res = kni("run", str(recipe), "--checkpoint-dir", str(tmp_path / "shared"), "--db", str(tmp_path / db))
        assert res.exit_code == 0, res.output
    saved = {}
    for db in ("a.db", "b.db"):
        with Store.open(str(tmp_path / db)) as store:
            saved[db] = tmp_path / store.get(1).checkpoint        # relative to the databases' folder
    assert saved["a.db"] != saved["b.db"] and all(p.is_file() for p in saved.values())
    assert kni("rm", "1", "--yes", "--db", str(tmp_path / "a.db")).exit_code == 0
    assert not saved["a.db"].exists() and saved["b.db"].is_file()


# --------------------------------------------------------------------------------------------
# faults


def test_a_checkpoint_dir_that_is_a_file_is_one_line(tmp_path):
    (tmp_path / "afile").write_text("")
    (tmp_path / "t.yaml").write_text(tiny_recipe(epochs=1))
    res = kni("run", str(tmp_path / "t.yaml"), "--checkpoint-dir", str(tmp_path / "afile"), "--db", str(tmp_path / "r.db"))
    assert res.exit_code == 2 and "is a file, expected a folder for the saved models" in res.output
    assert "Traceback" not in res.output and not (tmp_path / "r.db").exists()


def test_a_damaged_prepared_cache_is_rebuilt_with_a_warning(caplog):
    cfg = tiny_config()
    first = prepare(cfg)
    directory = prepare_module.prepared_dir("synthetic", first.key)
    splits = directory / "splits.npz"
    splits.write_bytes(splits.read_bytes()[:1000])                  # truncated
    with caplog.at_level(logging.WARNING):
        again = prepare(cfg)
    assert not again.from_cache and "is damaged" in caplog.text
    assert np.array_equal(again.train, first.train) and prepare(cfg).from_cache
    table = directory / "adjacency.npy"                             # same size, bytes overwritten
    raw = bytearray(table.read_bytes())
    raw[-8:] = b"\xff" * 8
    table.write_bytes(bytes(raw))
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        assert not prepare(cfg).from_cache and "adjacency.npy is not the file written with it" in caplog.text


def test_a_disk_that_fills_while_preparing_leaves_nothing_and_says_so(monkeypatch, caplog):
    cfg = tiny_config()
    cfg.dataset.split_seed = 777                                      # not yet cached
    real_save = np.save

    def fill_the_disk(path, array, *a, **k):
        real_save(path, array[:1])                                   # part of it written
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(prepare_module.np, "save", fill_the_disk)
    with caplog.at_level(logging.WARNING):
        data = prepare(cfg)
    assert len(data.train) > 0 and not data.from_cache
    assert "No space left on device" in caplog.text and "the disk is full" in caplog.text
    parent = prepare_module.prepared_dir("synthetic", data.key).parent
    assert not [p for p in parent.iterdir() if p.name.startswith(".tmp-")]


def test_a_corrupted_checkpoint_is_refused_not_used(db):
    with Store.open(db) as store:
        from workbench.runs.checkpoints import resolve
        path = resolve(store.url, store.get(1).checkpoint)
    good = path.read_bytes()
    try:
        raw = bytearray(good)
        middle = len(raw) // 2
        raw[middle:middle + 64] = bytes(b ^ 0x5A for b in raw[middle:middle + 64])
        path.write_bytes(bytes(raw))
        for args in (["explain", "1"], ["recommend", "1", "-k", "3"]):
            res = kni(*args, "--db", str(db))
            assert res.exit_code == 2 and "damaged" in res.output and "nan" not in res.output, res.output
    finally:
        path.write_bytes(good)
    assert kni("recommend", "1", "-k", "3", "--db", str(db)).exit_code == 0


def test_nan_weights_are_refused(tmp_path):
    import torch

    from kni_core.checkpoint import CheckpointUnreadable, model_checkpoint, read, write_atomically
    weights = {"embedding": torch.tensor([[0.1, float("nan")]])}
    write_atomically(tmp_path / "nan.pt", model_checkpoint({}, weights))
    with pytest.raises(CheckpointUnreadable, match="not finite"):
        read(tmp_path / "nan.pt")


@pytest.mark.parametrize("lr, said", [(1e6, "the loss exploded to"), (1e30, "the loss diverged at (batch|the end of the epoch)")])
def test_a_diverging_run_fails_naming_the_setting_to_lower(lr, said):
    cfg = tiny_config(lr=lr)
    with pytest.raises(Diverged, match=f"epoch 1: {said}.*" + re.escape(f"train.lr={lr:g} is likely too high")):
        list(Trainer(cfg, prepare(cfg)).fit())


def test_a_diverged_run_ends_failed_and_counts_in_no_mean(tmp_path):
    (tmp_path / "t.yaml").write_text(tiny_recipe(epochs=1))
    res = kni("run", str(tmp_path / "t.yaml"), "--set", "train.lr=1e6", "--db", str(tmp_path / "r.db"))
    assert res.exit_code == 1 and "failed (Diverged: epoch 1: the loss exploded" in res.output
    assert kni("compare", "--all", "--db", str(tmp_path / "r.db")).exit_code == 2     # nothing counts


def test_a_split_without_validation_or_test_rows_is_refused_before_training(tmp_path):
    with pytest.raises(RecipeError, match=r"--set dataset\.split=\[1\.0, 0\.0, 0\.0\]: expected three positive fractions"):
        parse_recipe(tiny_recipe(), str(tmp_path / "t.yaml"), overrides=["dataset.split=[1.0, 0.0, 0.0]"])


def test_repeated_seeds_are_dropped_and_said(tmp_path):
    (tmp_path / "t.yaml").write_text(tiny_recipe(epochs=1))
    assert load_recipe(tmp_path / "t.yaml", seeds="1,1,1").warnings == \
        ("--seeds 1,1,1: seeds: 1 given more than once; each seed runs once",)
    res = kni("run", str(tmp_path / "t.yaml"), "--seeds", "1,1", "--db", str(tmp_path / "r.db"))
    assert res.exit_code == 0 and "warning: --seeds 1,1: seeds: 1 given more than once" in res.output


@pytest.mark.parametrize("name, value, used", [("KNI_DB_TIMEOUT", "abc", "15 s"), ("KNI_STALE_SECONDS", "abc", "30 s"),
                                               ("KNI_DB_PATIENCE", "-5", "60 s")])
def test_an_unreadable_setting_is_named_with_the_value_used(monkeypatch, caplog, name, value, used):
    from workbench.store import engine, errors, liveness
    errors._parse_seconds.cache_clear()
    monkeypatch.setenv(name, value)
    with caplog.at_level(logging.WARNING):
        read = {"KNI_DB_TIMEOUT": engine.busy_timeout, "KNI_STALE_SECONDS": liveness.stale_seconds,
                "KNI_DB_PATIENCE": errors.write_patience}[name]()
    assert f"{read:g} s" == used
    assert f"{name}={value!r} is not a number of seconds >= 0; {used} is used instead" in caplog.text
