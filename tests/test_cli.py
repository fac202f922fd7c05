"""``kni`` end to end: the quickstart, JSON lines, and clear errors on bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = ROOT / "recipes" / "quickstart.yaml"


def kni(*args: str, cwd: Path = ROOT, env_extra: dict | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "workbench.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


@pytest.fixture()
def env(tmp_path) -> dict:
    return {"KNI_CACHE_DIR": str(tmp_path / "cache"), "KNI_DB": str(tmp_path / "runs.db"),
            "COLUMNS": "200"}


def test_quickstart_end_to_end_json(env, tmp_path):
    result = kni("run", str(QUICKSTART), "--json", "--set", "train.epochs=3", "--seeds", "1,2", env_extra=env)
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]
    epochs = [e for e in events if e["event"] == "epoch"]
    ends = [e for e in events if e["event"] == "end"]
    assert [(e["seed"], e["epoch"]) for e in epochs] == [(1, 1), (1, 2), (1, 3), (2, 1), (2, 2), (2, 3)]
    assert set(epochs[0]) == {"event", "run_id", "seed", "epoch", "train_loss", "valid_auc", "valid_logloss", "valid_acc",
                              "test_auc", "test_logloss", "test_acc", "train_seconds", "eval_seconds"}
    assert [e["seed"] for e in ends] == [1, 2]
    assert set(ends[0]) == {"event", "run_id", "seed", "best_epoch", "test_auc", "test_logloss", "test_acc"}
    for end in ends:
        best = next(e for e in epochs if e["seed"] == end["seed"] and e["epoch"] == end["best_epoch"])
        assert best["valid_auc"] == max(e["valid_auc"] for e in epochs if e["seed"] == end["seed"])
        assert end["test_auc"] == best["test_auc"]
    assert all(0.5 < e["test_auc"] <= 1.0 for e in epochs[2::3])


def test_same_seed_same_numbers(env):
    runs = [kni("run", str(QUICKSTART), "--json", "--set", "train.epochs=2", env_extra=env) for _ in range(2)]
    assert runs[0].returncode == 0, runs[0].stderr
    strip = lambda out: [{k: v for k, v in json.loads(line).items() if not k.endswith("seconds") and k != "run_id"}  # noqa: E731
                         for line in out.splitlines()]
    assert strip(runs[0].stdout) == strip(runs[1].stdout)


def test_bad_recipe_reports_file_line_and_key(env, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\ndataset:\n  name: synthetic\nmodel:\n  temprature: 3\n")
    result = kni("run", str(bad), env_extra=env)
    assert result.returncode == 2
    assert "bad.yaml:5" in result.stderr and "temprature" in result.stderr and "temperature" in result.stderr
    assert "Traceback" not in result.stderr


def test_malformed_override_is_reported(env):
    result = kni("run", str(QUICKSTART), "--set", "train.epochs", env_extra=env)
    assert result.returncode == 2 and "SECTION.KEY=VALUE" in result.stderr


def test_missing_dataset_lists_expected_files(env, tmp_path):
    result = kni("run", str(ROOT / "recipes" / "ml-1m.yaml"), env_extra={**env, "KNI_DATA_DIR": str(tmp_path)})
    assert result.returncode == 2
    assert "not found" in result.stderr and "ratings_final" in result.stderr and "RippleNet" in result.stderr
    assert "Traceback" not in result.stderr


def test_malformed_data_file_names_file_and_line(env, tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "ratings_final.txt").write_text("0\t0\t1\n0\t1\n1\t1\t0\n")
    (folder / "kg_final.txt").write_text("0\t0\t2\n")
    result = kni("run", str(QUICKSTART), "--set", f"dataset.path={folder}", env_extra=env)
    assert result.returncode == 2
    assert "ratings_final.txt:2" in result.stderr.replace("\n", "") and "expected 3 fields" in result.stderr


def test_set_dataset_path_runs_a_ripplenet_folder(env, tmp_path):
    import numpy as np
    rng = np.random.default_rng(0)
    folder = tmp_path / "mini"
    folder.mkdir()
    users, items = rng.integers(0, 30, 600), rng.integers(0, 40, 600)
    rows = {(int(u), int(i)): int(rng.integers(0, 2)) for u, i in zip(users, items)}
    (folder / "ratings_final.txt").write_text("".join(f"{u}\t{i}\t{y}\n" for (u, i), y in rows.items()))
    (folder / "kg_final.txt").write_text("".join(f"{i}\t0\t{40 + i % 5}\n" for i in range(40)))
    result = kni("run", str(QUICKSTART), "--json", "--set", f"dataset.path={folder}", "--set", "train.epochs=1",
                 env_extra=env)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.splitlines()[0])["epoch"] == 1


def test_data_list_and_info(env):
    listing = kni("data", "list", "--json", env_extra=env)
    assert listing.returncode == 0
    names = [d["name"] for d in json.loads(listing.stdout)]
    assert names == ["bc", "lastfm", "ml-1m", "ab", "ml-20m", "synthetic"]
    info = kni("data", "info", "ml-20m", "--json", env_extra={**env, "KNI_DATA_DIR": "/nonexistent"})
    assert info.returncode == 2 and "not found" in info.stderr


def test_bench_json_on_quickstart(env):
    result = kni("bench", "--recipe", str(QUICKSTART), "--repeats", "1", "--json", env_extra=env)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["train_epoch_seconds"] > 0 and out["eval_seconds"] > 0 and out["peak_rss_mb"] > 0


def test_data_prepare_copies_the_source_and_reuses_the_cache(env, tmp_path):
    folder = tmp_path / "src"
    folder.mkdir()
    (folder / "ratings_final.txt").write_text("".join(f"{u}\t{i}\t{(u + i) % 2}\n" for u in range(12) for i in range(10)))
    (folder / "kg_final.txt").write_text("".join(f"{i}\t0\t{10 + i % 3}\n" for i in range(10)))
    extra = {**env, "KNI_DATA_DIR": str(tmp_path / "empty")}
    unlike = kni("data", "prepare", "lastfm", "--source", str(folder), env_extra=extra)     # 12 users, not 1,872
    assert unlike.returncode == 2 and not (tmp_path / "cache" / "data" / "lastfm").exists()
    assert ("these files do not look like Last.FM (KGCN's music): users 12 (published 1,872), items 10 "
            "(published 3,846), interactions 120 (published 42,346), triples 10 (published 15,518); nothing was "
            "installed (--force installs them as lastfm anyway)") in " ".join(unlike.stderr.split())
    first = kni("data", "prepare", "lastfm", "--source", str(folder), "--force", env_extra=extra)
    assert first.returncode == 0, first.stderr
    assert "preprocessed and cached" in first.stdout
    # the paper's min_relation_triples (100) drops this 10-triple KG: said, not silent
    assert "the knowledge graph is dropped" in " ".join(first.stdout.split())
    assert (tmp_path / "cache" / "data" / "lastfm" / "ratings_final.txt").is_file()
    installed = tmp_path / "cache" / "data" / "lastfm"
    second = kni("data", "prepare", "lastfm", "--set", f"dataset.path={installed}", env_extra=extra)
    assert second.returncode == 0, second.stderr
    assert "reused the cache" in second.stdout and "user item edges" in second.stdout     # a table, not a dict
    as_json = kni("data", "prepare", "lastfm", "--set", f"dataset.path={installed}", "--json", env_extra=extra)
    facts = json.loads(as_json.stdout)
    assert facts["from_cache"] is True and facts["stats"]["users"] == 12 and facts["key"] in second.stdout

    # bad new data is refused before it touches the installed copy
    installed_files = {p.name: p.read_bytes() for p in installed.iterdir()}
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "ratings_final.txt").write_text("0\t0\t1\n0\t1\t-1\n")
    (bad / "kg_final.txt").write_text("0\t0\t2\n")
    third = kni("data", "prepare", "lastfm", "--source", str(bad), "--force", env_extra=extra)
    assert third.returncode == 2 and "label -1 is not 0 or 1" in third.stderr and "Traceback" not in third.stderr
    assert {p.name: p.read_bytes() for p in installed.iterdir()} == installed_files


def test_data_info_of_a_missing_dataset_says_it_once_and_fails(env, tmp_path):
    result = kni("data", "info", "ab", env_extra={**env, "KNI_DATA_DIR": str(tmp_path)})
    assert result.returncode == 2
    out = result.stdout + result.stderr
    assert out.count("not found") == 1 and out.count("How to obtain it") == 1
    assert "ab.pkl" in out and "statistic" not in out                   # no empty statistics table

def test_bench_steps_json(env):
    """`kni bench --steps N`: the keys issue 8 asks for, on the CPU."""
    result = kni("bench", "--recipe", str(QUICKSTART), "--steps", "4", "--device", "cpu", "--json", env_extra=env)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert {"prepare_seconds", "train_step_seconds", "eval_step_seconds", "train_epoch_seconds_estimate",
            "peak_rss_mb"} <= set(out)
    assert out["steps"] == 4 and out["device"] == "cpu" and out["train_step_seconds"] > 0
