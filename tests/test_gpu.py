"""The CUDA path and how runs share a machine.

Tests marked ``gpu`` need CUDA (``pytest -m gpu``, as ``scripts/gpu-check`` runs them); without
it they skip and say why, unless ``KNI_REQUIRE_GPU`` is set, where a missing GPU fails them.
The rest run everywhere: a CUDA out-of-memory error is simulated on the CPU (the conversion
into a message that names the setting to lower is the same code), and the thread share of
parallel CPU runs is read back from the stored runs.
"""

from __future__ import annotations

import dataclasses
import os

import pytest
import torch
from typer.testing import CliRunner

from kni_core.config import (
    DatasetConfig,
    EvalConfig,
    ModelConfig,
    RunConfig,
    TrainConfig,
)
from kni_core.data import prepare
from kni_core.train import Trainer
from workbench.cli import app
from workbench.runs.execute import execute
from workbench.runs.launcher import threads_per_run
from workbench.runs.listener import StoreListener
from workbench.runs.provenance import Code
from workbench.runs.rows import new_run
from workbench.store.repository import Store
from workbench.store.statuses import COMPLETED, FAILED

from helpers import tiny_recipe

NO_CUDA = "needs CUDA: torch.cuda.is_available() is False on this machine"


def _require_cuda() -> None:
    if torch.cuda.is_available():
        return
    if os.environ.get("KNI_REQUIRE_GPU"):
        pytest.fail(f"KNI_REQUIRE_GPU is set but CUDA is missing ({NO_CUDA})")
    pytest.skip(NO_CUDA)


@pytest.fixture()
def cuda():
    _require_cuda()
    yield torch.device("cuda")
    torch.cuda.set_per_process_memory_fraction(1.0)
    torch.cuda.empty_cache()


def tiny_config(device: str, **train) -> RunConfig:
    return RunConfig(dataset=DatasetConfig(name="synthetic", min_relation_triples=1, synthetic={"preset": "small"}),
                     model=ModelConfig(hop_n_sample=[1, 4], max_degree=16),
                     train=TrainConfig(**{"epochs": 2, "patience": 0, "lr": 5e-3, **train}),
                     eval=EvalConfig(n_eval=3), device=device, seed=5).validate()


def metrics(results) -> list[dict]:
    return [{k: v for k, v in r.to_dict().items() if not k.endswith("seconds")} for r in results]


# -- CUDA --------------------------------------------------------------------------------------


@pytest.mark.gpu
def test_same_seed_twice_on_cuda_gives_the_same_numbers(cuda):
    cfg = tiny_config("cuda")
    data = prepare(cfg)
    first, second = (metrics(Trainer(cfg, data).fit()) for _ in range(2))
    assert first == second


@pytest.mark.gpu
@pytest.mark.parametrize("model", ["kni", "mf"])
def test_a_run_resumed_on_cuda_continues_as_the_uninterrupted_one(cuda, tmp_path, model):
    """Issue 18 on CUDA: killed after epoch 2 of 4 and resumed from its last-epoch state (CUDA
    generators, the device shuffle generator, Adam's moments), the run's epochs 3-4 equal the
    uninterrupted run's - bitwise where the kernels are deterministic, within 1e-6 otherwise."""
    from kni_core import resume
    from kni_core.config import model_config_class
    cfg = tiny_config("cuda", epochs=4)
    if model != "kni":
        cfg = dataclasses.replace(cfg, model=model_config_class(model)()).validate()
    data = prepare(cfg)

    def numbers(results):
        return [(r.epoch, r.train_loss, r.valid_auc, r.test_auc) for r in results]
    whole = numbers(Trainer(cfg, data).fit())
    first = Trainer(cfg, data)
    run = first.fit()
    done = [next(run) for _ in range(2)]
    resume.save(tmp_path / "last.pt", resume.capture(first))
    del first, run
    again = Trainer(cfg, data)
    both = numbers(done) + numbers(again.fit(resume=resume.read(tmp_path / "last.pt", config=cfg.to_dict())))
    assert [e for e, *_ in both] == [1, 2, 3, 4]
    for (_, *a), (_, *b) in zip(both, whole):
        assert a == pytest.approx(b, abs=1e-6), (both, whole)
    print(f"resumed on CUDA ({model}): bitwise {both == whole}")


@pytest.mark.gpu
def test_cpu_and_cuda_agree_within_float_rounding(cuda):
    """One full-batch step per epoch, every neighbour taken (hop 4 of max_degree 4) and no
    dropout: CPU and CUDA then compute the same function with different random streams, so
    they may differ only by float rounding (summation order). Tolerance: 1e-4 absolute on
    the loss, AUC and logloss after 4 epochs; accuracy within one example of 1/n."""
    def run(device: str):
        cfg = RunConfig(dataset=DatasetConfig(name="synthetic", min_relation_triples=1,
                                              synthetic={"preset": "tiny"}),
                        model=ModelConfig(hop_n_sample=[1, 4], max_degree=4, dropout=0.0),
                        train=TrainConfig(epochs=4, patience=0, lr=1e-2, batch_size=1 << 20),
                        eval=EvalConfig(n_eval=2), device=device, seed=2).validate()
        data = prepare(cfg)
        return metrics(Trainer(cfg, data).fit()), len(data.valid), len(data.test)

    cpu, n_valid, n_test = run("cpu")
    gpu, _, _ = run("cuda")
    for c, g in zip(cpu, gpu):
        for key in ("train_loss", "valid_auc", "valid_logloss", "test_auc", "test_logloss"):
            assert g[key] == pytest.approx(c[key], abs=1e-4), (c["epoch"], key)
        assert g["valid_acc"] == pytest.approx(c["valid_acc"], abs=1.01 / n_valid)
        assert g["test_acc"] == pytest.approx(c["test_acc"], abs=1.01 / n_test)


TINY_RECIPE = tiny_recipe("gpu-tiny", seeds=None, device="auto")


@pytest.mark.gpu
def test_jobs_two_on_auto_spread_over_gpus_or_share_one(cuda, tmp_path, monkeypatch):
    monkeypatch.setenv("KNI_CACHE_DIR", str(tmp_path / "cache"))
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(TINY_RECIPE)
    db = str(tmp_path / "runs.db")
    res = CliRunner().invoke(app, ["run", str(recipe), "--seeds", "1,2", "--jobs", "2", "--json", "--db", db])
    assert res.exit_code == 0, res.output
    with Store.open(db) as store:
        runs = store.runs()
    assert [r.status for r in runs] == [COMPLETED, COMPLETED]
    devices = [r.device for r in runs]
    assert all(d.startswith("cuda:0 ") for d in devices), devices     # each child sees its GPU as cuda:0
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    n_gpus = len([g for g in visible.split(",") if g.strip()]) if visible is not None else torch.cuda.device_count()
    if n_gpus >= 2:
        assert "CUDA_VISIBLE_DEVICES" in devices[0] and devices[0] != devices[1]
        assert not any("shared" in d for d in devices)
    else:
        assert all("GPU shared by up to 2 runs" in d for d in devices), devices


@pytest.mark.gpu
def test_real_cuda_out_of_memory_fails_the_run_and_keeps_its_epochs(cuda, tmp_path):
    """Epoch 1 trains; then the process may use almost no GPU memory, so epoch 2's training
    step runs out for real."""
    store = Store.open(tmp_path / "runs.db")
    cfg = tiny_config("cuda", epochs=3, batch_size=4096)
    run_id = store.create_run(new_run("oom", "", cfg, prov=Code()))
    store.claim(run_id, os.getpid(), "here")

    class Starve(StoreListener):
        def epoch(self, result):
            super().epoch(result)
            torch.cuda.empty_cache()
            torch.cuda.set_per_process_memory_fraction(1e-6)

    with pytest.raises(Exception):
        execute(cfg, [Starve(store, run_id, "valid")])
    run = store.get(run_id)
    assert run.status == FAILED and "train.batch_size (now 4096)" in run.error, run.error
    assert "OutOfMemoryError" in run.traceback
    assert [e.epoch for e in store.epochs(run_id)] == [1]
    store.close()


# -- out of memory, simulated on any machine --------------------------------------------------


@pytest.mark.parametrize("phase, method, setting", [
    ("training", "train_epoch", "train.batch_size (now 1024)"),
    ("evaluation", "predict", "eval.batch_size (now 1024) or eval.n_eval (now 3)"),
])
def test_out_of_memory_fails_the_run_naming_the_setting_and_loses_nothing(tmp_path, monkeypatch, phase, method,
                                                                          setting):
    """The second epoch raises CUDA's out-of-memory error in ``phase``: the run ends failed with
    a message naming the setting to lower, its first epoch stays stored, and another run in
    the same database is untouched."""
    store = Store.open(tmp_path / "runs.db")
    cfg = tiny_config("cpu")
    other = store.create_run(new_run("other", "", cfg, prov=Code()))
    store.claim(other, os.getpid(), "here")
    execute(cfg, [StoreListener(store, other, "valid")])
    before = [e.test_auc for e in store.epochs(other)]

    run_id = store.create_run(new_run("oom", "", cfg, prov=Code()))
    store.claim(run_id, os.getpid(), "here")
    original = getattr(Trainer, method)
    epochs_done = []

    def flaky(self, *args, **kwargs):
        if len(epochs_done) >= 1:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return original(self, *args, **kwargs)

    class Count(StoreListener):
        def epoch(self, result):
            super().epoch(result)
            epochs_done.append(result.epoch)

    monkeypatch.setattr(Trainer, method, flaky)
    with pytest.raises(Exception) as info:
        execute(cfg, [Count(store, run_id, "valid")])
    assert type(info.value).__name__ == "OutOfMemory"
    run = store.get(run_id)
    assert run.status == FAILED
    assert run.error.startswith(f"OutOfMemory: cpu ran out of memory during {phase}: lower {setting}"), run.error
    assert "Tried to allocate 2.00 GiB" in run.error and "OutOfMemoryError" in run.traceback
    assert [e.epoch for e in store.epochs(run_id)] == [1]
    assert store.get(other).status == COMPLETED and [e.test_auc for e in store.epochs(other)] == before
    store.close()


def test_out_of_memory_while_setting_up_names_the_table_settings(tmp_path, monkeypatch):
    def no_room(self, *args, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory.")

    monkeypatch.setattr(Trainer, "__init__", no_room)
    errors = []

    class Remember:
        def started(self, start): ...
        def epoch(self, result): ...
        def finished(self, summary): ...
        def failed(self, error): errors.append(error)

    with pytest.raises(Exception):
        execute(tiny_config("cpu"), [Remember()])
    assert "during setup: lower model.max_degree (now 16) or model.hidden (now 128), e.g. --set " \
           "model.max_degree=8" in str(errors[0])


# -- parallel runs share the cores --------------------------------------------------------------


def test_threads_per_run_split_the_cores():
    cores = len(os.sched_getaffinity(0))
    assert threads_per_run(1) == cores
    assert threads_per_run(2) == max(1, cores // 2)
    assert threads_per_run(10 * cores) == 1


@pytest.mark.parametrize("jobs", [1, 2])
def test_parallel_cpu_runs_get_their_share_of_threads_recorded(tmp_path, monkeypatch, jobs):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("KNI_DB", raising=False)
    monkeypatch.setenv("KNI_CACHE_DIR", str(tmp_path / "cache"))
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(TINY_RECIPE.replace("epochs: 2", "epochs: 1").replace("device: auto", "device: cpu"))
    db = str(tmp_path / "runs.db")
    res = CliRunner().invoke(app, ["run", str(recipe), "--seeds", "1,2", "--jobs", str(jobs), "--json", "--db", db])
    assert res.exit_code == 0, res.output
    with Store.open(db) as store:
        devices = [r.device for r in store.runs()]
    n = threads_per_run(jobs)
    assert devices == [f"cpu, {n} thread{'s' if n != 1 else ''}"] * 2


def test_a_users_omp_num_threads_wins(tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.delenv("KNI_DB", raising=False)
    monkeypatch.setenv("KNI_CACHE_DIR", str(tmp_path / "cache"))
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(TINY_RECIPE.replace("epochs: 2", "epochs: 1").replace("device: auto", "device: cpu"))
    db = str(tmp_path / "runs.db")
    res = CliRunner().invoke(app, ["run", str(recipe), "--seeds", "1", "--json", "--db", db])
    assert res.exit_code == 0, res.output
    with Store.open(db) as store:
        assert [r.device for r in store.runs()] == ["cpu, 1 thread"]
