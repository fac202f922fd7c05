"""The command line's small things: --version, help texts, run_id in --json, epoch lines that
fit 120 columns and never wrap in a pipe, progress and resources in kni runs / kni show, the
message about a group's seeds, the full path of an exported CSV."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from rich.text import Text
from typer.testing import CliRunner

from kni_core.results import EpochResult
from workbench.cli import app, package_version
from workbench.cli.live import epoch_line
from workbench.cli.run import _group_note
from workbench.recipe import parse_recipe
from workbench.runs.provenance import Code
from workbench.runs.rows import new_run
from workbench.store.liveness import this_host
from workbench.store.records import Run, utcnow
from workbench.store.repository import Store
from workbench.store.statuses import CANCELLED, COMPLETED, CRASHED, FAILED, RUNNING

from helpers import tiny_recipe

ROOT = Path(__file__).resolve().parents[1]
TINY = tiny_recipe("tiny")


def invoke(*args: str, columns: int = 120):
    return CliRunner().invoke(app, list(args), env={"COLUMNS": str(columns)})


def test_version():
    res = invoke("--version")
    assert res.exit_code == 0 and res.stdout.strip() == f"kni-workbench {package_version()}"
    assert re.fullmatch(r"\d+\.\d+\.\d+.*", package_version())


@pytest.mark.parametrize("command", [[], ["run"], ["runs"], ["show"], ["compare"], ["export"], ["tag"], ["note"],
                                     ["diff"], ["rm"], ["data", "info"], ["bench"]])
def test_help_texts_use_unix_metavars(command):
    res = invoke(*command, "--help")
    assert res.exit_code == 0, res.output
    text = res.stdout
    for python_type in ("<bool>", "<str>", "<int>", "<list[", "<path>"):
        assert python_type not in text, (python_type, text)
    usage = next(line for line in text.splitlines() if "Usage:" in line)
    assert "{" not in usage, usage
    expected = {"run": "RECIPE", "show": "RUN_ID", "compare": "[RUN_IDS]...", "tag": "TARGET... TAG",
                "diff": "A B", "data": "NAME"}
    if command and command[0] in expected:
        assert expected[command[0]] in usage, usage


def test_help_texts_flow_to_the_terminal_width():
    """A docstring's own line breaks do not cut a summary mid-sentence: at 200 columns each
    command's summary (and each paragraph of its help) is one line."""
    listing = invoke("--help", columns=200).stdout
    summary = next(line for line in listing.splitlines() if " resume " in line)
    assert "in the same run rows (same id, group and seed)" in summary, summary
    body = invoke("resume", "--help", columns=200).stdout
    assert any("written beside its saved model, within" in line for line in body.splitlines()), body


def test_epoch_line_fits_120_columns():
    run = Run(id=12345, seed=1234, max_epochs=100)
    r = EpochResult(1234, 100, 0.41234, 0.81234, 0.45678, 0.75123, 0.80123, 0.46123, 0.74234, 999.94, 999.9)
    line = Text.from_markup(epoch_line(run, r)).plain
    assert len(line) <= 120, (len(line), line)
    assert line.startswith("run 12345 seed 1234 epoch 100/100  loss 0.4123  valid/test auc 0.8123/0.8012 ")
    assert line.endswith("ll 0.4568/0.4612 acc 0.7512/0.7423  1999.8s")


def test_piped_run_output_has_one_line_per_epoch(tmp_path):
    """Piped to a file at any width: every epoch is one whole line (Rich would wrap at 80)."""
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(TINY)
    env = {**os.environ, "KNI_CACHE_DIR": str(tmp_path / "cache"), "KNI_DB": str(tmp_path / "runs.db"),
           "COLUMNS": "60", "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    out = subprocess.run([sys.executable, "-m", "workbench.cli", "run", str(recipe), "--seeds", "1,2"], cwd=tmp_path,
                         env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    epochs = [ln for ln in lines if re.match(r"run \d+ seed \d+ epoch \d+/2 ", ln)]
    assert len(epochs) == 4, out.stdout
    for ln in epochs:
        assert re.fullmatch(r"run \d+ seed \d epoch \d/2  loss \S+  valid/test auc \S+ ll \S+ acc \S+  \S+s", ln), ln
    assert not any(ln.startswith(("auc", "ll ", "acc")) for ln in lines)          # no wrapped remainders
    assert all(len(ln) == len(ln.rstrip()) for ln in lines if ln.startswith("INFO"))   # no padding to the width


def test_the_commands_suggested_after_a_run_can_be_pasted(tmp_path, monkeypatch):
    """They name the database the run went to and quote a recipe name with a space."""
    monkeypatch.delenv("KNI_DB", raising=False)
    recipe = tmp_path / "r.yaml"
    recipe.write_text(tiny_recipe('"my run"', epochs=1))
    db = tmp_path / "other.db"
    res = invoke("run", str(recipe), "--db", str(db), columns=300)
    assert res.exit_code == 0, res.output
    assert f"kni runs --recipe 'my run' --db {db} | kni compare --recipe 'my run' --db {db} | kni show 1 --db {db}" \
        in res.stdout


def test_json_events_carry_the_run_id(tmp_path):
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(TINY)
    db = str(tmp_path / "runs.db")
    env = {**os.environ, "KNI_CACHE_DIR": str(tmp_path / "cache"),
           "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    out = subprocess.run([sys.executable, "-m", "workbench.cli", "run", str(recipe), "--seeds", "1,2", "--json",
                          "--db", db], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    events = [json.loads(ln) for ln in out.stdout.splitlines()]
    with Store.open(db) as store:
        by_seed = {r.seed: r.id for r in store.runs()}
    assert len(events) == 6 and all(e["run_id"] == by_seed[e["seed"]] for e in events)


def queue(store: Store, seed: int, status: str = COMPLETED, epochs: int = 1, pid: int | None = None) -> int:
    rec = parse_recipe(TINY)
    run_id = store.create_run(new_run(rec.name, rec.text, rec.config_for(seed), prov=Code()))
    store.claim(run_id, pid or 1, this_host() if pid else "elsewhere")
    for e in range(1, epochs + 1):
        r = EpochResult(seed, e, 0.6, 0.7, 0.6, 0.65, 0.69, 0.61, 0.6, 1.0, 0.5)
        store.add_epoch(run_id, r, r)
    if status != RUNNING:
        store.finish(run_id, status) if status in (COMPLETED, FAILED, CANCELLED) else store.mark(run_id, status, "x")
    return run_id


def test_group_note_counts_only_runs_that_count_sorted_once(tmp_path):
    with Store.open(str(tmp_path / "runs.db")) as store:
        for seed, status in ((1, COMPLETED), (1, COMPLETED), (2, COMPLETED), (3, COMPLETED), (1, FAILED),
                             (2, CANCELLED), (7, CRASHED)):
            queue(store, seed, status)
        runs = store.runs()
    note = _group_note("abc", runs, [3, 4])
    assert note == ("group abc already has completed or running runs of 3 seed(s): 1..3; seed(s) 3 run again; "
                    "the new seeds join it")
    assert _group_note("abc", [r for r in runs if r.status != COMPLETED], [1]) == ""


def test_runs_and_show_report_progress_resources_and_heartbeat(tmp_path):
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        db = str(tmp_path / "runs.db")
        with Store.open(db) as store:
            done = queue(store, 1)
            live = queue(store, 2, RUNNING, epochs=2, pid=sleeper.pid)
            store.record_progress(live, {"epoch": 3, "epochs": 2, "phase": "valid", "done": 3, "total": 4,
                                         "rate": 2.5, "phase_left": 0.4, "epoch_left": 1.2, "run_left": 1.2,
                                         "epoch_mean": 3.0, "at": utcnow().isoformat()},
                                  {"peak_rss_mb": 2150.0, "cpu_threads": 4, "gpu_name": "NVIDIA H100 80GB HBM3",
                                   "peak_gpu_mb": 3174.4})
            store.touch([live], statuses=(RUNNING,))
        res = invoke("runs", "--db", db, columns=200)
        row = next(ln for ln in res.stdout.splitlines() if ln.strip().startswith(str(live)))
        assert "running, beat" in row and "ago" in row and "valid 75%" in row and "≤1s" in row
        done_row = next(ln for ln in res.stdout.splitlines() if ln.strip().startswith(f"{done} "))
        assert "%" not in done_row and "beat" not in done_row
        shown = json.loads(invoke("runs", "--db", db, "--json").stdout)
        assert shown[1]["progress"]["phase"] == "valid" and shown[0]["progress"] is None
        assert shown[1]["peak_rss_mb"] == 2150.0 and shown[1]["gpu_name"] == "NVIDIA H100 80GB HBM3"
        res = invoke("show", str(live), "--db", db, "--no-plot", columns=160)
        assert "epoch 2/2: valid 3/4 2.5/s" in res.stdout
        assert ("peak RSS 2.1 GiB, 4 CPU threads, GPU NVIDIA H100 80GB HBM3 (peak 3.1 GiB allocated by torch)"
                in res.stdout)
    finally:
        sleeper.kill()
        sleeper.wait()


def test_export_names_the_full_path(tmp_path, monkeypatch):
    db = str(tmp_path / "runs.db")
    with Store.open(db) as store:
        queue(store, 1)
    monkeypatch.chdir(tmp_path)
    res = invoke("export", "--csv", "out.csv", "--db", db, columns=300)
    assert res.exit_code == 0
    assert f"wrote 1 run row(s) to {tmp_path / 'out.csv'}" in res.output
    res = invoke("export", "--csv", "out.csv", "--db", db, "--json")
    assert json.loads(res.stdout)["path"] == str(tmp_path / "out.csv")


@pytest.mark.parametrize("module", ["workbench.cli", "workbench.cli.runs", "workbench.cli.annotate"])
def test_command_modules_import_in_any_order(module):
    """Each module can be imported first and every command is registered (a circular import
    between the command modules once broke all but one order)."""
    code = (f"import {module}; from workbench.cli import app; "
            "print(' '.join(sorted(c.name for c in app.registered_commands if c.name)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")})
    assert out.returncode == 0, out.stderr
    assert set(out.stdout.split()) >= {"runs", "show", "compare", "export", "tag", "note", "diff", "cancel", "rm"}


@pytest.mark.parametrize("argv, heavy", [(["--help"], ("sqlalchemy", "numpy", "yaml", "torch", "scipy")),
                                         (["runs"], ("numpy", "yaml", "torch", "scipy"))])
def test_startup_imports_only_what_the_command_needs(argv, heavy, tmp_path):
    """kni --help starts without SQLAlchemy, NumPy or YAML, and kni runs without NumPy, YAML or
    torch (lazy imports: the startup time is mostly imports)."""
    code = (f"import sys; sys.argv = ['kni', *{argv!r}, '--db', {str(tmp_path / 'runs.db')!r}]\n"
            "from workbench.cli import main\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            f"print('loaded:', *[m for m in {heavy!r} if m in sys.modules], file=sys.stderr)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")})
    assert out.stderr.strip().splitlines()[-1] == "loaded:", out.stderr


def test_an_error_at_line_100_keeps_its_line_number(tmp_path):
    """Rich read ``:100:`` in ``FILE:100: ...`` as the emoji code of 💯 and printed that."""
    recipe = tmp_path / "r.yaml"
    recipe.write_text("\n" * 99 + "bogus: 1\n")
    res = CliRunner().invoke(app, ["run", str(recipe), "--db", str(tmp_path / "runs.db")])
    assert res.exit_code == 2
    assert f"{recipe}:100: bogus" in " ".join(res.output.split()), res.output
