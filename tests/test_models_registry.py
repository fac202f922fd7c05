"""The model registry and interface: every model file in ``kni_core.models`` is found, trained,
benchmarked, saved and loaded through the same code; configs are read without torch."""

from __future__ import annotations

import dataclasses
import importlib
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

import kni_core.models as models
from kni_core.bench import benchmark
from kni_core.checkpoint import load_model
from kni_core.config import MODEL_NAMES, DatasetConfig, EvalConfig, RunConfig, TrainConfig, model_config_class
from kni_core.data import prepare
from kni_core.errors import ConfigError
from kni_core.explain import ExplainError, check_model
from kni_core.train import Trainer, out_of_memory

ROOT = Path(__file__).resolve().parents[1]

#: A complete new model, exactly as a contributor would add it: one file in kni_core/models/.
TOY_MODEL = '''
"""Toy: a logit from one bias per entity (the registry test's new model)."""

from __future__ import annotations

from dataclasses import dataclass

from ..schema import setting
from .base import ModelSettings, Recommender, bce, model_name, nn, torch


@dataclass
class ToyConfig(ModelSettings):
    name: str = model_name("toy")
    scale: float = setting(1.0, "scale of the logits", lo=0.0)

    def graph_needs(self) -> dict:
        return {"kg": False, "reach_hops": 0, "max_degree": 0}


class Toy(Recommender):
    name = "toy"
    config_class = ToyConfig
    label = "Toy"

    def __init__(self, n_entity: int, scale: float):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(n_entity))
        self.scale = scale

    @classmethod
    def build(cls, cfg, data):
        return cls(data.n_entity, cfg.model.scale)

    def forward(self, users, items):
        return self.scale * (self.bias[users] + self.bias[items])

    def loss(self, users, items, labels):
        return bce(self(users, items), labels)
'''


def tiny(model, **train) -> RunConfig:
    return RunConfig(dataset=DatasetConfig(name="synthetic", min_relation_triples=1, synthetic={"preset": "tiny"}),
                     model=model, train=TrainConfig(**{"epochs": 2, "batch_size": 64, **train}),
                     eval=EvalConfig(n_eval=2, batch_size=128), device="cpu").validate()


def test_the_registry_lists_the_models_in_their_order():
    assert MODEL_NAMES == models.REGISTRY.names == ("kni", "mf", "ripplenet", "kgcn", "pop", "itemknn")
    assert models.REGISTRY.default == "kni"
    assert models.LABELS == {"kni": "KNI", "mf": "MF", "ripplenet": "RippleNet", "kgcn": "KGCN", "pop": "Pop",
                             "itemknn": "ItemKNN"}
    for name in MODEL_NAMES:
        assert model_config_class(name) is models.get(name).config_class
        assert models.get(name).__module__ == f"kni_core.models.{name}"
    with pytest.raises(ConfigError, match="model.name: expected one of kni, mf, ripplenet, kgcn, pop, itemknn; got 'x'"):
        models.get("x")


def test_labels_come_from_the_models():
    kni = model_config_class("kni")
    assert models.label(kni()) == "KNI" and models.label(kni(kg=False)) == "NI"
    assert [models.label(model_config_class(n)()) for n in ("mf", "ripplenet", "kgcn")] == ["MF", "RippleNet", "KGCN"]


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_bench_works_for_every_model_with_and_without_steps(name):
    cfg = tiny(model_config_class(name)())
    out = benchmark(cfg, steps=2, repeats=1)
    assert out["steps"] == 2 and out["train_step_seconds"] > 0 and out["eval_batches"] >= 1
    out = benchmark(cfg, repeats=1, warmup=0)
    assert out["train_epoch_seconds"] > 0 and out["eval_seconds"] > 0


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_every_model_trains_saves_and_loads_through_one_trainer(name, tmp_path):
    cfg = tiny(model_config_class(name)())
    data = prepare(cfg)
    trainer = Trainer(cfg, data, checkpoint=tmp_path / "best.pt")
    assert type(trainer) is Trainer and isinstance(trainer.model, models.get(name))
    results = list(trainer.fit())
    assert len(results) == 2 and trainer.summary.best_epoch in (1, 2)
    state = torch.load(tmp_path / "best.pt", weights_only=True)
    assert set(state) == {"config", "model", "digest", "data_files"} and state["config"] == cfg.to_dict()
    assert state["data_files"] == data.sources          # the files its data came from (none: generated)
    model, _ = load_model(cfg, tmp_path / "best.pt", data)
    assert list(model.state_dict()) == list(trainer.model.state_dict()) and not model.training
    assert trainer.effective_n_eval(7) == (7 if model.stochastic else 1)
    if model.explainable:
        assert check_model(model) is model
    else:
        with pytest.raises(ExplainError, match="explain reads KNI's neighbour-pair attention"):
            check_model(model)


@pytest.mark.parametrize("name, keys", [("kni", "model.max_degree (now 1024) or model.hidden (now 128)"),
                                        ("mf", "model.dim (now 8)")])
def test_out_of_memory_while_building_names_the_models_settings(name, keys):
    cfg = RunConfig(model=model_config_class(name)())
    error = out_of_memory(cfg, "setup", "cuda", RuntimeError("CUDA out of memory."))
    assert str(error).startswith(f"cuda ran out of memory during setup: lower {keys}")


@pytest.fixture()
def toy_registry(tmp_path, monkeypatch):
    """kni_core.models with a new model file on its path, and the registry rebuilt from it."""
    (tmp_path / "toy.py").write_text(TOY_MODEL)
    importlib.invalidate_caches()
    monkeypatch.setattr(models, "__path__", [*models.__path__, str(tmp_path)])
    registry = models.Registry.discover(models.__path__, models.__name__)
    monkeypatch.setattr(models, "REGISTRY", registry)
    yield registry
    sys.modules.pop("kni_core.models.toy", None)


def test_a_model_file_dropped_into_the_package_is_found_and_runs(toy_registry):
    assert toy_registry.names == ("kni", "mf", "ripplenet", "kgcn", "pop", "itemknn", "toy")
    cfg = RunConfig.from_dict({"dataset": {"name": "synthetic", "min_relation_triples": 1,
                                           "synthetic": {"preset": "tiny"}},
                               "model": {"name": "toy", "scale": 0.5}, "train": {"epochs": 2, "batch_size": 64},
                               "device": "cpu"}).validate()
    assert type(cfg.model).__name__ == "ToyConfig" and models.label(cfg.model) == "Toy"
    name_field = dataclasses.fields(cfg.model)[0]
    assert "toy" in name_field.metadata["choices"] and "or toy;" in name_field.metadata["help"]
    assert len(list(Trainer(cfg, prepare(cfg)).fit())) == 2
    assert benchmark(cfg, steps=2, repeats=1)["steps"] == 2
    with pytest.raises(ConfigError, match="kni, mf, ripplenet, kgcn, pop, itemknn, toy; got 'nope'"):
        RunConfig.from_dict({"model": {"name": "nope"}})


def test_a_module_without_a_model_is_an_error(tmp_path, monkeypatch):
    (tmp_path / "helpers.py").write_text("X = 1\n")
    importlib.invalidate_caches()
    monkeypatch.setattr(models, "__path__", [*models.__path__, str(tmp_path)])
    try:
        with pytest.raises(TypeError, match="helpers: a model module defines one Recommender subclass"):
            models.Registry.discover(models.__path__, models.__name__)
    finally:
        sys.modules.pop("kni_core.models.helpers", None)


def test_reading_and_validating_configs_imports_no_torch():
    code = textwrap.dedent('''
        import json, sys
        import kni_core.config, kni_core.models
        from kni_core.config import RunConfig, MFConfig, ModelConfig
        RunConfig.from_dict(RunConfig(dataset={"name": "bc"}).to_dict()).validate()
        for name in kni_core.config.MODEL_NAMES:
            cfg = RunConfig.from_dict({"dataset": {"name": "bc"}, "model": {"name": name}}).validate()
            cfg.config_hash(), kni_core.models.label(cfg.model), cfg.model.graph_needs()
        print(json.dumps("torch" in sys.modules))
    ''')
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert json.loads(out.stdout) is False


def test_model_classes_are_nn_modules_only_once_built():
    mf = models.get("mf")
    assert not issubclass(mf, torch.nn.Module)          # declared without torch
    m = mf(n_entity=5, dim=2, bias=True, l2=0.0)
    assert isinstance(m, mf) and isinstance(m, torch.nn.Module) and type(m).__name__ == "MF"
    assert type(mf(n_entity=5, dim=2, bias=True, l2=0.0)) is type(m)     # one torch class per model
    assert np.array_equal(m.state_dict()["embedding"].numpy()[0], np.zeros(2))


def test_a_run_of_a_folder_is_named_by_the_folder_not_by_the_generator_it_overrides():
    from kni_core.config import DatasetConfig, RunConfig
    from workbench.runs.rows import dataset_label
    label = lambda **d: dataset_label(RunConfig(dataset=DatasetConfig(**d)))  # noqa: E731
    assert label(name="synthetic", synthetic={"preset": "tiny"}) == "synthetic-tiny"
    assert label(name="synthetic", synthetic={"preset": "tiny"}, path="/data/my-clicks") == "my-clicks"
    assert label(name="bc", path="/copies/bc-2019") == "bc"           # a copy of a registered dataset keeps its name
