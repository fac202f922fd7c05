"""Every run keeps its selected epoch's model (issue 11): written beside the run database by the
run process, recorded in its row, listed by ``kni show``, removed by ``kni rm``, reported
missing when the database travels without it, and off with ``train.checkpoint: false``."""

from __future__ import annotations

import errno
import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from kni_core.checkpoint import (
    CheckpointMissing,
    CheckpointUnreadable,
    load_model,
    read,
)
from kni_core.config import RunConfig
from kni_core.data import prepare
from kni_core.train import Trainer
from workbench.recipe import parse_recipe
from workbench.runs import checkpoints
from workbench.store.repository import Store

from helpers import TINY_MODEL, tiny_recipe

ROOT = Path(__file__).resolve().parents[1]
TINY = tiny_recipe("tiny", epochs=3, model=TINY_MODEL + ", hidden: 16", train="lr: 0.01")


def kni(*args: str, env: dict, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "workbench.cli", *args], cwd=cwd, env={**os.environ, **env},
                          capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One tiny KNI run stored in ``runs.db`` with its default checkpoint."""
    base = tmp_path_factory.mktemp("ck")
    (base / "tiny.yaml").write_text(TINY)
    env = {"KNI_CACHE_DIR": str(base / "cache"), "COLUMNS": "200"}
    res = kni("run", str(base / "tiny.yaml"), "--db", str(base / "runs.db"), env=env)
    assert res.returncode == 0, res.stderr
    return base, env


def test_a_run_saves_its_selected_epoch_beside_the_database(trained):
    base, env = trained
    with Store.open(base / "runs.db", readonly=True) as store:
        run = store.get(1)
        url = store.url
    assert run.checkpoint == "runs.db.checkpoints/run-1.pt"            # relative: moves with the database
    path = base / "runs.db.checkpoints" / "run-1.pt"
    assert checkpoints.resolve(url, run.checkpoint) == path and path.is_file()
    assert not [p for p in path.parent.iterdir() if p.name != "run-1.pt"]     # no temporary file left
    state = read(path)
    cfg = RunConfig.from_dict(json.loads(run.config_json))
    assert state["config"] == cfg.to_dict()
    # the saved weights are the selected epoch's: they give its stored test AUC again
    os.environ["KNI_CACHE_DIR"] = env["KNI_CACHE_DIR"]
    model, data = load_model(cfg, path)
    trainer = Trainer(cfg, data)
    trainer.model.load_state_dict(model.state_dict())
    auc = trainer.evaluate("test", seed=cfg.seed * 100003 + run.best_epoch + 50000).auc
    assert auc == pytest.approx(run.best_test_auc, abs=1e-6)

    shown = kni("show", "1", "--db", str(base / "runs.db"), "--json", env=env)
    assert shown.returncode == 0, shown.stderr
    info = json.loads(shown.stdout)["checkpoint_file"]
    assert info == {"path": str(path), "bytes": path.stat().st_size, "missing": False}
    text = kni("show", "1", "--db", str(base / "runs.db"), "--no-plot", env=env).stdout
    assert "checkpoint" in text and "run-1.pt" in text and "missing" not in text


def test_a_database_moved_without_its_checkpoints_says_they_are_missing(trained, tmp_path):
    base, env = trained
    shutil.copy(base / "runs.db", tmp_path / "moved.db")
    shown = kni("show", "1", "--db", str(tmp_path / "moved.db"), "--json", env=env)
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["checkpoint_file"]["missing"] is True
    text = kni("show", "1", "--db", str(tmp_path / "moved.db"), "--no-plot", env=env).stdout
    assert "(missing)" in text
    # moved together with its folder, it finds them again (the row's path is relative)
    shutil.copytree(base / "runs.db.checkpoints", tmp_path / "moved.db.checkpoints")
    with Store.open(tmp_path / "moved.db", readonly=True) as store:
        assert checkpoints.state(store.url, store.get(1).checkpoint).size == (base / "runs.db.checkpoints" /
                                                                               "run-1.pt").stat().st_size


def test_rm_removes_the_checkpoint(trained, tmp_path):
    base, env = trained
    shutil.copy(base / "runs.db", tmp_path / "runs.db")
    shutil.copytree(base / "runs.db.checkpoints", tmp_path / "runs.db.checkpoints")
    res = kni("rm", "1", "--yes", "--json", "--db", str(tmp_path / "runs.db"), env=env)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout) == {"removed": [1], "checkpoints_removed": [1], "checkpoints_kept": []}
    assert not (tmp_path / "runs.db.checkpoints").exists()


def test_a_copy_of_a_database_never_deletes_the_originals_models(trained, tmp_path):
    base, env = trained
    shutil.copy(base / "runs.db", tmp_path / "runs.db")
    shutil.copytree(base / "runs.db.checkpoints", tmp_path / "runs.db.checkpoints")
    original = tmp_path / "runs.db.checkpoints" / "run-1.pt"
    # copied beside it without its folder: its row names runs.db.checkpoints/run-1.pt, the original's
    shutil.copy(tmp_path / "runs.db", tmp_path / "trial.db")
    with Store.open(tmp_path / "trial.db", readonly=True) as store:
        assert checkpoints.resolve(store.url, store.get(1).checkpoint) == original     # read: yes
    res = kni("rm", "1", "--yes", "--db", str(tmp_path / "trial.db"), env=env)
    assert res.returncode == 0, res.stderr
    assert original.is_file()                                                         # deleted: never
    assert "kept 1 checkpoint(s) of run(s) 1" in res.stderr and "checkpoint folder of" in res.stderr
    assert "runs.db" in res.stderr.replace("\n", "")
    # copied with a folder of its own: the copy's file is its own, the original's untouched
    shutil.copy(tmp_path / "runs.db", tmp_path / "second.db")
    shutil.copytree(tmp_path / "runs.db.checkpoints", tmp_path / "second.db.checkpoints")
    res = kni("rm", "1", "--yes", "--json", "--db", str(tmp_path / "second.db"), env=env)
    assert json.loads(res.stdout)["checkpoints_removed"] == [1]
    assert not (tmp_path / "second.db.checkpoints").exists() and original.is_file()


def test_checkpoint_false_saves_nothing(tmp_path):
    (tmp_path / "tiny.yaml").write_text(TINY.replace("train: {epochs: 3,", "train: {epochs: 1, checkpoint: false,"))
    env = {"KNI_CACHE_DIR": str(tmp_path / "cache")}
    res = kni("run", str(tmp_path / "tiny.yaml"), "--db", str(tmp_path / "runs.db"), env=env)
    assert res.returncode == 0, res.stderr
    with Store.open(tmp_path / "runs.db", readonly=True) as store:
        assert store.get(1).checkpoint is None
    assert not (tmp_path / "runs.db.checkpoints").exists()
    assert "none saved" in kni("show", "1", "--db", str(tmp_path / "runs.db"), "--no-plot", env=env).stdout


def test_checkpoint_key_is_validated_and_left_out_of_the_group_hash():
    on = parse_recipe(TINY).config_for(1)
    off = parse_recipe(TINY.replace("train: {", "train: {checkpoint: false, ")).config_for(1)
    assert off.train.checkpoint is False and on.train.checkpoint is True
    assert on.config_hash() == off.config_hash()
    from kni_core.errors import ConfigError
    with pytest.raises(ConfigError, match="train.checkpoint"):
        parse_recipe(TINY.replace("train: {", "train: {checkpoint: maybe, ")).config_for(1)


def test_a_default_checkpoint_that_cannot_be_written_does_not_fail_the_run(tmp_path, monkeypatch, caplog):
    from workbench.runs.execute import execute

    def no_space(self, path, before_replace=None):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Trainer, "save", no_space)
    cfg = parse_recipe(TINY).config_for(1)
    seen, saved = [], []

    class Collect:
        def started(self, start): pass
        def epoch(self, result): seen.append(result.epoch)
        def finished(self, summary): seen.append("finished")
        def failed(self, error): seen.append("failed")

    with caplog.at_level(logging.WARNING):
        execute(cfg, [Collect()], checkpoint=str(tmp_path / "best.pt"), checkpoint_optional=True,
                on_checkpoint=saved.append)
    assert seen == [1, 2, 3, "finished"] and saved == []
    assert "No space left on device" in caplog.text and not (tmp_path / "best.pt").exists()


def test_load_model_errors_are_clear(tmp_path):
    cfg = parse_recipe(TINY).config_for(1)
    with pytest.raises(CheckpointMissing, match="missing"):
        load_model(cfg, tmp_path / "nope.pt")
    for junk in (b"not a checkpoint", b"hello", b"\x80\x02}q\x00."):      # the unpickler raises anything
        (tmp_path / "junk.pt").write_bytes(junk)
        with pytest.raises(CheckpointUnreadable, match="junk.pt: cannot be read: damaged or not a file torch.save wrote"):
            load_model(cfg, tmp_path / "junk.pt")
    torch.save({"config": {}, "model": {}, "extra": Path("x")}, tmp_path / "foreign.pt")
    with pytest.raises(CheckpointUnreadable, match="not a kni-workbench file") as refused:
        load_model(cfg, tmp_path / "foreign.pt")
    assert "weights_only" not in str(refused.value)          # torch's advice to load it unsafely is not passed on
    trainer = Trainer(cfg, prepare(cfg))
    trainer.save(tmp_path / "ok.pt")
    other = parse_recipe(TINY.replace("hidden: 16", "hidden: 8")).config_for(1)
    with pytest.raises(CheckpointUnreadable, match="another configuration"):
        load_model(other, tmp_path / "ok.pt")
    model, _ = load_model(cfg, tmp_path / "ok.pt")
    assert torch.equal(model.embedding, trainer.model.embedding) and not model.training
    assert np.array_equal(model.adjacency.numpy(), trainer.model.adjacency.numpy())


def test_default_folders_of_other_stores(tmp_path, monkeypatch):
    monkeypatch.setenv("KNI_CHECKPOINT_DIR", str(tmp_path / "cks"))
    url = "postgresql+psycopg://kni@db.example:5432/runs"
    path = checkpoints.default_path(url, 7)
    assert path.parent.parent == tmp_path / "cks" and path.name == "run-7.pt"
    assert checkpoints.stored_form(url, path) == str(path)               # absolute for a server database
    monkeypatch.delenv("KNI_CHECKPOINT_DIR")
    monkeypatch.chdir(tmp_path)
    assert checkpoints.default_dir("sqlite://").parent == tmp_path / "kni-checkpoints"
    assert checkpoints.default_dir(f"sqlite:///{tmp_path}/a/runs.db") == tmp_path / "a" / "runs.db.checkpoints"
