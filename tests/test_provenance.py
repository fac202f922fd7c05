"""Provenance a reader can check (issue 19): each run records the working tree's state and
diff digest, its Python / torch / CUDA versions and the digest of each data file it read;
kni show, kni diff and kni report list them, and a report flags a group whose seeds differ."""

from __future__ import annotations

import hashlib
import json
import platform
import subprocess

import numpy as np
import torch
from typer.testing import CliRunner

from workbench.cli import app
from workbench.runs.provenance import code

from helpers import tiny_recipe


def git(folder, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=folder, check=True,
                          capture_output=True, text=True).stdout


def test_the_code_records_its_commit_and_a_digest_of_uncommitted_changes(tmp_path):
    git(tmp_path, "init", "-q")
    (tmp_path / "model.py").write_text("x = 1\n")
    git(tmp_path, "add", "model.py")
    git(tmp_path, "commit", "-qm", "first")
    head = git(tmp_path, "rev-parse", "HEAD").strip()
    clean = code(tmp_path)
    assert (clean.commit, clean.dirty, clean.diff_sha256) == (head, False, None)
    (tmp_path / "scratch.txt").write_text("not tracked\n")              # untracked: still clean
    assert code(tmp_path).dirty is False
    (tmp_path / "model.py").write_text("x = 2\n")
    dirty = code(tmp_path)
    diff = subprocess.run(["git", "diff", "HEAD", "--binary"], cwd=tmp_path, capture_output=True).stdout
    assert (dirty.commit, dirty.dirty, dirty.diff_sha256) == (head, True, hashlib.sha256(diff).hexdigest())
    (tmp_path / "model.py").write_text("x = 3\n")
    assert code(tmp_path).diff_sha256 != dirty.diff_sha256              # another change, another digest
    assert code(tmp_path.parent / "nowhere").commit is None             # not a checkout: no commit, no error


def data_folder(path, seed: int = 0):
    rng = np.random.default_rng(seed)
    path.mkdir()
    rows = {(int(u), int(i)): int(rng.integers(0, 2)) for u, i in zip(rng.integers(0, 30, 600),
                                                                     rng.integers(0, 40, 600))}
    (path / "ratings_final.txt").write_text("".join(f"{u}\t{i}\t{y}\n" for (u, i), y in rows.items()))
    (path / "kg_final.txt").write_text("".join(f"{i}\t0\t{40 + i % 5}\n" for i in range(40)))
    return path


def run(db, recipe, *args: str):
    res = CliRunner().invoke(app, ["run", str(recipe), "--db", str(db), *args])
    assert res.exit_code == 0, res.output
    return res


def shown(db, run_id: int) -> dict:
    res = CliRunner().invoke(app, ["show", str(run_id), "--json", "--db", str(db)])
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


def test_a_run_records_its_environment_and_the_digest_of_each_data_file(tmp_path):
    folder = data_folder(tmp_path / "mini")
    recipe = tmp_path / "r.yaml"
    recipe.write_text(tiny_recipe("mini", epochs=1).replace("{name: synthetic, min_relation_triples: 1, synthetic: "
                                                            "{preset: tiny}}", f"{{path: {folder}}}"))
    db = tmp_path / "runs.db"
    run(db, recipe)
    prov = shown(db, 1)["run"]["provenance"]
    assert prov["environment"]["python"] == platform.python_version()
    assert prov["environment"]["torch"] == torch.__version__ and prov["environment"]["cuda"] == torch.version.cuda
    assert prov["data"]["files"] == {name: hashlib.sha256((folder / name).read_bytes()).hexdigest()
                                     for name in ("kg_final.txt", "ratings_final.txt")}
    assert len(prov["data"]["key"]) == 12
    assert set(prov["code"]) == {"dirty", "diff_sha256"}
    text = CliRunner().invoke(app, ["show", "1", "--db", str(db)]).output
    assert f"Python {platform.python_version()}, torch {torch.__version__}" in text
    assert f"ratings_final.txt {prov['data']['files']['ratings_final.txt'][:12]}" in text

    # the same recipe after a data file changed: kni diff names the file, the report flags the group
    (folder / "ratings_final.txt").write_text((folder / "ratings_final.txt").read_text() + "31\t0\t1\n")
    run(db, recipe, "--seeds", "2")
    again = shown(db, 2)["run"]["provenance"]["data"]
    assert again["files"]["ratings_final.txt"] != prov["data"]["files"]["ratings_final.txt"]
    assert again["files"]["kg_final.txt"] == prov["data"]["files"]["kg_final.txt"]
    diff = CliRunner().invoke(app, ["diff", "1", "2", "--json", "--db", str(db)])
    keys = {d["key"] for d in json.loads(diff.stdout)["differences"]}
    assert {"data_key", "data_files.ratings_final.txt"} <= keys and "data_files.kg_final.txt" not in keys
    out = tmp_path / "report"
    res = CliRunner().invoke(app, ["report", "--all", "--out", str(out), "--db", str(db)])
    assert res.exit_code == 0, res.output
    (group,) = json.loads((out / "report.json").read_text())["groups"]
    assert group["differ"] == {"code": [], "data": ["data_files"]}
    assert any("read different data" in f for f in group["flags"])
    page = (out / "index.html").read_text()
    assert "read different data" in page and f"Python {platform.python_version()}" in page


def test_rows_from_before_provenance_show_what_they_have(tmp_path, sql):
    db = tmp_path / "runs.db"
    recipe = tmp_path / "r.yaml"
    recipe.write_text(tiny_recipe("t", epochs=1))
    run(db, recipe, "--seeds", "1,2")
    sql(str(db), "UPDATE runs SET provenance = NULL, git_commit = 'abcdef123456+dirty' WHERE id = 1")
    text = CliRunner().invoke(app, ["show", "1", "--db", str(db)]).output
    assert "commit abcdef123456 (dirty)" in text and "environment" not in text
    diff = json.loads(CliRunner().invoke(app, ["diff", "1", "2", "--json", "--db", str(db)]).stdout)
    keys = {d["key"] for d in diff["differences"]}
    assert "git_commit" in keys and "python" not in keys          # unrecorded is no difference


def test_compare_says_a_group_pools_two_versions_of_its_data_and_pairs_refuse_it(tmp_path):
    """A seed added after the files were edited in place joined the group silently: one mean over
    two datasets, a paired test over it, and the floor of whichever data came first."""
    folder = data_folder(tmp_path / "mini")
    recipe = tmp_path / "r.yaml"
    recipe.write_text(tiny_recipe("mini", epochs=1).replace("{name: synthetic, min_relation_triples: 1, synthetic: "
                                                            "{preset: tiny}}", f"{{path: {folder}}}"))
    db = tmp_path / "runs.db"
    run(db, recipe, "--seeds", "1,2")
    run(db, recipe, "--seeds", "1,2", "--set", "train.lr=0.01")
    compare = ["compare", "--all", "--db", str(db)]
    res = CliRunner().invoke(app, [*compare, "--json"])
    assert [g["data_versions"] for g in json.loads(res.stdout)["groups"]] == [1, 1]
    assert all(g["pop_test_auc"] is not None for g in json.loads(res.stdout)["groups"])

    (folder / "ratings_final.txt").write_text((folder / "ratings_final.txt").read_text() + "31\t0\t1\n")
    run(db, recipe, "--seeds", "3")                                   # run 5 joins runs 1 and 2
    res = CliRunner().invoke(app, [*compare, "--json"])
    by_runs = {g["run_ids"]: g for g in json.loads(res.stdout)["groups"]}
    assert by_runs["1 2 5"]["data_versions"] == 2 and by_runs["3 4"]["data_versions"] == 1
    assert by_runs["1 2 5"]["pop_test_auc"] is None                   # not the floor of run 5's data
    text = " ".join(CliRunner().invoke(app, compare).output.split())
    assert "its runs read 2 different versions of the data (run(s) 1, 2; run(s) 5)" in text
    groups = [g["group"][:8] for g in by_runs.values()]
    res = CliRunner().invoke(app, [*compare, "--paired", *groups])
    assert res.exit_code == 2 and "2 different versions of the data" in res.output

    run(db, recipe, "--seeds", "1", "--set", "train.lr=0.003")        # seed 1 on the edited files
    res = CliRunner().invoke(app, [*compare, "--paired", by_runs["3 4"]["group"][:8], json.loads(CliRunner().invoke(
        app, ["show", "6", "--json", "--db", str(db)]).stdout)["run"]["config_hash"][:8]])
    assert res.exit_code == 2 and "seed 1: run 3 and run 6 read different source files (ratings_final.txt)" in \
        " ".join(res.output.split())


def test_weights_trained_on_files_edited_since_are_refused_by_explain_and_resume(tmp_path):
    """A label flipped in place keeps the entity count: the saved weights loaded and explained,
    recommended or trained on over the new rows without a word."""
    folder = data_folder(tmp_path / "mini")
    recipe = tmp_path / "r.yaml"
    recipe.write_text(tiny_recipe("mini", epochs=2).replace("{name: synthetic, min_relation_triples: 1, synthetic: "
                                                            "{preset: tiny}}", f"{{path: {folder}}}"))
    db = str(tmp_path / "runs.db")
    run(db, recipe, "--set", "train.checkpoint=true", "--set", "train.keep_last=true", "--set", "train.patience=5")
    assert CliRunner().invoke(app, ["explain", "1", "--db", db]).exit_code == 0
    ratings = folder / "ratings_final.txt"
    lines = ratings.read_text().splitlines()
    u, i, y = lines[0].split("\t")
    ratings.write_text("\n".join([f"{u}\t{i}\t{1 - int(y)}", *lines[1:]]) + "\n")        # same size, same ids

    res = CliRunner().invoke(app, ["explain", "1", "--db", db])
    assert res.exit_code == 2 and "trained on other data than the dataset's files now hold (ratings_final.txt " \
        "changed since" in " ".join(res.output.split())
    res = CliRunner().invoke(app, ["resume", "1", "--epochs", "4", "--db", db])
    assert res.exit_code == 2 and "ratings_final.txt changed since" in " ".join(res.output.split())
    assert "nothing resumed" in res.output
    (row,) = json.loads(CliRunner().invoke(app, ["runs", "--json", "--db", db]).stdout)
    assert (row["status"], row["epochs"]) == ("completed", 2)                              # nothing of it changed


def test_the_data_differs_by_its_files_not_by_the_cache_keys_recipe():
    """A run before and after the cache key's recipe changed (this code's own update), over the
    same files, one recording every file of the folder: no difference. An edited file: one."""
    from workbench.analysis.provenance import KEYS, differences
    facts = lambda key, files: {**dict.fromkeys(KEYS), "data_key": key, "data_files": files}    # noqa: E731
    old = facts("aaa", {"ratings_final.txt": "1", "ratings_final.npy": "2", "SOURCE.md": "3"})
    new = facts("bbb", {"ratings_final.txt": "1", "ratings_final.npy": "2"})
    assert differences([old, new]) == {"code": [], "data": []}
    assert differences([old, new, facts("bbb", {"ratings_final.txt": "9"})])["data"] == ["data_files"]
