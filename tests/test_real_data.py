"""Short checks on the real datasets in ../shared/data (fail loudly in CI when missing)."""

from __future__ import annotations

import numpy as np
import pytest

from kni_core.config import DatasetConfig, RunConfig, TrainConfig
from kni_core.data import load_raw, prepare
from kni_core.data.prepare import kg_edges, reachable, split_ratings
from kni_core.data.registry import spec
from kni_core.train import Trainer


@pytest.mark.parametrize("name", ["bc", "lastfm"])
def test_measured_statistics_match_the_published(name, real_dataset):
    real_dataset(name)
    measured = load_raw(RunConfig(dataset=DatasetConfig(name=name))).summary()
    for key, value in spec(name).published.items():
        assert measured[key] == value, key


def test_book_crossing_learns_past_072_auc_in_a_few_epochs(real_dataset):
    real_dataset("bc")
    cfg = RunConfig(dataset=DatasetConfig(name="bc"), train=TrainConfig(epochs=3, patience=0)).validate()
    data = prepare(cfg)
    assert data.stats["entities"] > 80_000            # the reachability filter keeps ~86k of 95,763
    assert 79_000 < data.stats["train"] < 82_000       # 6:2:2 minus users with no training positive
    results = list(Trainer(cfg, data).fit())
    assert results[-1].test_auc > 0.72, results
    assert results[-1].test_auc > results[0].test_auc


def test_book_crossing_split_and_entities_are_the_original_codes(real_dataset):
    """80,513 / 24,038 / 23,981 rows, as the original preprocessing (seed 555); with its
    reachability seeds (train and test only) the filter keeps its 85,948 entities; ours also
    seeds from validation, which adds the entities only validation rows reach."""
    real_dataset("bc")
    cfg = RunConfig(dataset=DatasetConfig(name="bc")).validate()
    raw = load_raw(cfg)
    train, valid, test = split_ratings(raw.ratings, [0.6, 0.2, 0.2], 555)
    assert (len(train), len(valid), len(test)) == (80_513, 24_038, 23_981)
    shift = raw.n_users + 1
    edges = kg_edges(raw.kg, 100) + shift
    assert int((np.bincount(raw.kg[:, 1]) >= 100).sum()) == 10          # relations kept

    def kept(parts) -> int:
        seeds = np.unique(np.concatenate([np.column_stack([p[:, 0] + 1, p[:, 1] + shift]).ravel()
                                          for p in parts]))
        return int(reachable(shift + raw.n_entities, edges, seeds, 2).sum())

    assert kept([train, test]) == 85_948
    data = prepare(cfg)
    assert (data.stats["train"], data.stats["valid"], data.stats["test"]) == (80_513, 24_038, 23_981)
    assert data.n_entity == kept([train, valid, test]) + 1          # + the padding entity
