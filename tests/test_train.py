"""The training loop's rules: early stopping, best-epoch selection, TF's Adam epsilon."""

from __future__ import annotations

import math

import pytest
import torch

from kni_core.config import DatasetConfig, EvalConfig, ModelConfig, RunConfig, TrainConfig
from kni_core.data import prepare
from kni_core.train import EpochResult, Trainer, should_stop, tf_adam_eps


def epoch(n: int, auc: float, ll: float) -> EpochResult:
    return EpochResult(1, n, 0.5, auc, ll, 0.6, auc - 0.01, ll + 0.01, 0.6, 1.0, 1.0)


def test_early_stopping_follows_the_original_rule():
    # patience 2: from the 4th epoch on, stop when AUC < and logloss > the mean of the 2 before.
    history = [epoch(1, 0.60, 0.70), epoch(2, 0.70, 0.60), epoch(3, 0.72, 0.58)]
    assert not should_stop(history, "valid", 2)                 # too early, even if worse
    history.append(epoch(4, 0.70, 0.595))                       # 0.70 < 0.71, 0.595 > 0.59
    assert should_stop(history, "valid", 2)
    history[-1] = epoch(4, 0.70, 0.585)                         # logloss still improving
    assert not should_stop(history, "valid", 2)
    assert not should_stop(history, "valid", 0)                 # patience 0 disables it


def test_tf_epsilon_folds_the_bias_correction():
    p = torch.nn.Parameter(torch.zeros(3))
    opt = torch.optim.Adam([p], lr=0.1, eps=1e-8)
    tf_adam_eps(opt, 1e-8)
    assert opt.param_groups[0]["eps"] == pytest.approx(1e-8 / math.sqrt(1 - 0.999))
    p.grad = torch.ones(3)
    opt.step()
    tf_adam_eps(opt, 1e-8)
    assert opt.param_groups[0]["eps"] == pytest.approx(1e-8 / math.sqrt(1 - 0.999 ** 2))


def test_fit_reports_every_epoch_and_selects_the_best_on_the_chosen_split(tmp_path):
    cfg = RunConfig(dataset=DatasetConfig(name="synthetic", min_relation_triples=1, synthetic={"preset": "tiny"}),
                    model=ModelConfig(max_degree=8), train=TrainConfig(epochs=4, patience=0, lr=0.01,
                                                                      select_on="test"),
                    eval=EvalConfig(n_eval=3)).validate()
    trainer = Trainer(cfg, prepare(cfg), checkpoint=tmp_path / "best.pt")
    results = list(trainer.fit())
    assert [r.epoch for r in results] == [1, 2, 3, 4]
    best = max(results, key=lambda r: r.test_auc)
    assert trainer.summary.best_epoch == best.epoch and trainer.summary.epochs_run == 4
    saved = torch.load(tmp_path / "best.pt", weights_only=False)
    assert saved["config"]["train"]["select_on"] == "test" and "embedding" in saved["model"]


def test_select_on_changes_selection_and_stopping_never_the_trajectory():
    """Evaluation draws from its own seeded generator, so a test-selected run is the
    valid-selected run's trajectory with another best epoch (docs/results.md relies on it)."""
    def run(select_on: str) -> list[EpochResult]:
        cfg = RunConfig(dataset=DatasetConfig(name="synthetic", min_relation_triples=1,
                                              synthetic={"preset": "tiny"}),
                        model=ModelConfig(max_degree=8), eval=EvalConfig(n_eval=2),
                        train=TrainConfig(epochs=3, patience=0, select_on=select_on)).validate()
        return list(Trainer(cfg, prepare(cfg)).fit())

    strip = lambda rs: [{k: v for k, v in r.to_dict().items() if not k.endswith("seconds")} for r in rs]  # noqa: E731
    assert strip(run("valid")) == strip(run("test"))
