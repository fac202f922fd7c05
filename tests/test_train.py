"""The training loop's rules: early stopping, best-epoch selection, TF's Adam epsilon."""

from __future__ import annotations

import math

import pytest
import torch

from kni_core.config import (
    DatasetConfig,
    EvalConfig,
    ModelConfig,
    RunConfig,
    TrainConfig,
)
from kni_core.data import prepare
from kni_core.errors import ConfigError, KniError
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
    tf_adam_eps(opt, 1e-8, 1)
    assert opt.param_groups[0]["eps"] == pytest.approx(1e-8 / math.sqrt(1 - 0.999))
    tf_adam_eps(opt, 1e-8, 2)
    assert opt.param_groups[0]["eps"] == pytest.approx(1e-8 / math.sqrt(1 - 0.999 ** 2))


def test_host_step_counters_follow_the_optimizers_own():
    """The host-side counts that set TF's epsilon (no device read per step) stay equal to
    the step each Adam keeps in its state."""
    cfg = RunConfig(dataset=DatasetConfig(name="synthetic", min_relation_triples=1, synthetic={"preset": "tiny"}),
                    model=ModelConfig(hop_n_sample=[1, 2, 2], max_degree=8), train=TrainConfig(epochs=1, patience=0),
                    eval=EvalConfig(n_eval=1), device="cpu").validate()
    trainer = Trainer(cfg, prepare(cfg))
    trainer.train_epoch()
    trainer.train_epoch()
    opt = trainer.optimizer
    table_state = opt.table.adam.state[trainer.model.embedding]
    dense_state = next(iter(opt.dense.state.values()))
    steps = -(-len(trainer.data.train) // cfg.train.batch_size) * 2
    assert opt.table.steps == opt.dense_steps == int(table_state["step"]) == int(dense_state["step"]) == steps


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


# Metrics of the first three epochs as computed by the code before the speed work of issue 8
# (commit 13b35a6), one torch thread: train loss, valid auc / logloss / acc, test auc /
# logloss / acc. On that machine the current code reproduces them bit for bit; the tolerance
# only leaves room for another CPU's float kernels (the order of a BLAS reduction), while any
# change in what is computed or in how the random streams are drawn moves them by far more.
PINNED = {
    "ni1": [[0.69282181, 0.630077862, 0.692602417, 0.492335207, 0.633982705, 0.692577414, 0.515840572],
            [0.689236557, 0.737672009, 0.69058373, 0.5222279, 0.728703177, 0.690666088, 0.545733265],
            [0.681908782, 0.758072777, 0.685542601, 0.667858968, 0.756290308, 0.685817173, 0.656617271]],
    "ni2": [[0.693383325, 0.585129888, 0.692370607, 0.507153807, 0.596899246, 0.693541027, 0.484414921],
            [0.691359476, 0.627979114, 0.68995768, 0.507664793, 0.616048724, 0.693481043, 0.484159428],
            [0.688693455, 0.608553548, 0.688642382, 0.508686765, 0.622958674, 0.690854995, 0.487225345]],
}
PINNED_CONFIGS = {
    "ni1": dict(model=ModelConfig(hop_n_sample=[1, 4], max_degree=16), seed=7),
    "ni2": dict(model=ModelConfig(attention=2, hop_n_sample=[1, 4, 2], max_degree=16, temperature=1.0), seed=3),
}


@pytest.fixture()
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def pinned_run(case: str) -> list[list[float]]:
    # split_method: permutation, the split of that commit (the original's became the default after)
    cfg = RunConfig(dataset=DatasetConfig(name="synthetic", min_relation_triples=1, synthetic={"preset": "small"},
                                          split_method="permutation"),
                    train=TrainConfig(epochs=3, patience=0, lr=5e-3), eval=EvalConfig(n_eval=3),
                    device="cpu", **PINNED_CONFIGS[case]).validate()
    fields = ("train_loss", "valid_auc", "valid_logloss", "valid_acc", "test_auc", "test_logloss", "test_acc")
    return [[getattr(r, f) for f in fields] for r in Trainer(cfg, prepare(cfg)).fit()]


@pytest.mark.parametrize("case", sorted(PINNED))
def test_numbers_are_pinned_to_the_code_before_the_speed_work(case, one_thread):
    """ni:1 with one hop (no aggregation layer) and ni:2 with two (a layer, its dense Adam)."""
    got = pinned_run(case)
    for epoch, (row, want) in enumerate(zip(got, PINNED[case]), start=1):
        for name, g, w in zip(("loss", "valid auc", "valid logloss", "valid acc", "test auc", "test logloss",
                               "test acc"), row, want):
            tol = 1e-3 if name.endswith("acc") else 1e-5     # acc moves by 1/n when one score crosses
            assert g == pytest.approx(w, abs=tol), f"{case} epoch {epoch} {name}: {g} != pinned {w}"


def test_same_seed_same_threads_same_numbers(one_thread):
    assert pinned_run("ni1") == pinned_run("ni1")


def test_bench_steps_times_steps_and_batches_and_extrapolates_an_epoch():
    from kni_core.bench import benchmark
    # split_method: permutation, the split of that commit (the original's became the default after)
    cfg = RunConfig(dataset=DatasetConfig(name="synthetic", min_relation_triples=1, synthetic={"preset": "small"},
                                          split_method="permutation"),
                    model=ModelConfig(hop_n_sample=[1, 4], max_degree=16), train=TrainConfig(batch_size=256),
                    eval=EvalConfig(n_eval=4, batch_size=128), device="cpu").validate()
    out = benchmark(cfg, steps=3)
    batches = -(-out["train_rows"] // 256)
    assert out["steps"] == 3 and out["eval_batches"] == 3 and out["eval_batch_examples"] == 128
    assert out["train_epoch_seconds_estimate"] == pytest.approx(out["train_step_seconds"] * batches, rel=0.02, abs=0.01)
    data = prepare(cfg)
    eval_batches = -(-len(data.valid) // 128) + -(-len(data.test) // 128)
    assert out["eval_seconds_estimate"] == pytest.approx(out["eval_step_seconds"] * eval_batches, rel=0.02, abs=0.01)
    assert out["prepare_seconds"] >= 0 and out["peak_rss_mb"] > 0 and "peak_gpu_mb" not in out
    assert {"train_step_seconds", "eval_step_seconds", "train_steps_per_second"} <= set(out)


# --------------------------------------------------------------------------------------------
# the Trainer as a library: its own generators, the weights it ends with, data it refuses


def tiny(epochs: int = 4, **model) -> RunConfig:
    return RunConfig(dataset=DatasetConfig(name="synthetic", min_relation_triples=1, synthetic={"preset": "tiny"}),
                     model=ModelConfig(**{"max_degree": 8, **model}), train=TrainConfig(epochs=epochs, patience=0, lr=0.02),
                     eval=EvalConfig(n_eval=2), device="cpu").validate()


def trajectory(results) -> list[tuple[float, float, float]]:
    return [(r.train_loss, r.valid_auc, r.test_auc) for r in results]


def test_trainers_draw_from_generators_of_their_own(one_thread):
    """Two trainers interleaved, or the caller's own draws between epochs, change no number, and
    building a trainer leaves the caller's generator where it was."""
    alone = trajectory(Trainer(tiny(3), prepare(tiny(3))).fit())
    other = tiny(3).validate()
    other.seed = 2
    a, b = Trainer(tiny(3), prepare(tiny(3))), Trainer(other, prepare(other))
    interleaved = [ra for ra, _ in zip(a.fit(), b.fit())]
    assert trajectory(interleaved) == alone
    torch.manual_seed(123)
    want = torch.rand(3)
    torch.manual_seed(123)
    trainer = Trainer(tiny(3), prepare(tiny(3)))
    assert torch.equal(torch.rand(3), want)         # the caller's stream was not reseeded
    with_draws = []
    for r in trainer.fit():
        torch.rand(5)                               # the caller draws between epochs
        with_draws.append(r)
    assert trajectory(with_draws) == alone


def test_after_fit_the_model_holds_the_selected_epochs_weights(one_thread):
    cfg = tiny(6)
    kept = Trainer(cfg, prepare(cfg))
    results = list(kept.fit())
    best = kept.summary.best
    assert best.epoch != results[-1].epoch, "the test needs a run whose best epoch is not its last"
    again = kept.evaluate("test")                   # the selected epoch's seed, by default
    assert (again.auc, again.logloss) == (best.test_auc, best.test_logloss)
    last = Trainer(cfg, prepare(cfg), keep_best=False)
    list(last.fit())
    assert last.evaluate("test").auc != best.test_auc       # keep_best=False: the last epoch's weights
    with pytest.raises(KniError, match="already trained"):
        next(kept.fit())


def test_a_trainer_refuses_data_prepared_for_another_configuration():
    cfg = tiny(1)
    data = prepare(cfg)
    for other, named in ((tiny(1, kg=False), "kg"), (tiny(1, max_degree=16), "max_degree")):
        with pytest.raises(ConfigError, match=f"prepared for another configuration.*{named}"):
            Trainer(other, data)
    moved = tiny(1)
    moved.dataset.split_seed = 7
    with pytest.raises(ConfigError, match="dataset.split_seed"):
        Trainer(moved, data)
    with pytest.raises(ConfigError, match="train.lr"):     # an invalid config is refused, not trained
        bad = tiny(1)
        bad.train.lr = -1.0
        Trainer(bad, data)


@pytest.mark.parametrize("make, said", [
    (lambda: RunConfig.from_dict({"sed": 1}), "sed: unknown key; did you mean 'seed'?"),
    (lambda: RunConfig.from_dict({"eval": 5}), "eval: expected a mapping of eval settings, got 5"),
    (lambda: RunConfig.from_dict({"eval": {"topk": {"enabld": True}}}), "eval.topk.enabld: unknown key; did you mean"),
    (lambda: RunConfig.from_dict({"model": {"name": "mf", "dimm": 3}}), "model.dimm: unknown key; did you mean 'dim'"),
    (lambda: RunConfig.from_dict([1]), "expected a mapping, got [1]"),
    (lambda: RunConfig(model="kni").validate(), "model: expected a ModelConfig"),
    (lambda: RunConfig(dataset=None).validate(), "dataset: expected a DatasetConfig"),
])
def test_a_library_users_config_mistakes_are_config_errors_naming_the_key(make, said):
    with pytest.raises(ConfigError) as e:
        make()
    assert said in str(e.value)
