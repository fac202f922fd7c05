"""Looking inside a trained run (issue 11): ``kni explain`` (the neighbour-pair matrix),
``kni recommend`` (a user's top-k, the hit rate) and ``kni compare --explain`` (attention on the
centre cell), on tiny synthetic runs trained by ``kni run`` with their default checkpoints."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from kni_core.checkpoint import load_model
from kni_core.config import RunConfig
from kni_core.data import load_raw
from kni_core.explain import (
    ENTITY,
    INTERACTED,
    ITEM,
    USER,
    ExplainError,
    Namer,
    Neighbour,
    PairMatrix,
    centre_mass,
    explain,
    run_score,
    why_absent,
)
from kni_core.recommend import ModelScorer, RecommendError, hit_rate, recommend
from kni_core.topk import TopKEvaluator, score_function, topk_seed
from kni_core.train import Trainer
from workbench.store.repository import Store

from helpers import tiny_recipe

ROOT = Path(__file__).resolve().parents[1]
KNI_MODEL = "{hop_n_sample: [1, 4], max_degree: 16, hidden: 16}"


def kni(*args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "workbench.cli", *args], cwd=ROOT, env={**os.environ, **env},
                          capture_output=True, text=True, timeout=600)


#: Run 4's evaluation: batches of 7 rows (the default is 1024) and the top-N stored with the run.
TOPK_EVAL = "eval: {n_eval: 3, batch_size: 7, topk: {enabled: true, users: 10, k: [5, 20], full: false}}"


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Runs 1 (KNI), 2 (NI), 3 (MF), 4 (KNI with top-N and eval.batch_size 7), 5 (popularity)
    and 6 (ItemKNN) in one database; returns (db, env)."""
    base = tmp_path_factory.mktemp("explain")
    env = {"KNI_CACHE_DIR": str(base / "cache"), "COLUMNS": "160"}
    for name, model in (("tiny-kni", KNI_MODEL), ("tiny-ni", KNI_MODEL.replace("{", "{kg: false, ")),
                        ("tiny-mf", "{name: mf, dim: 4}"), ("tiny-topk", KNI_MODEL), ("tiny-pop", "{name: pop}"),
                        ("tiny-itemknn", "{name: itemknn, k: 10}")):
        recipe = tiny_recipe(name, model=model[1:-1], train="lr: 0.01", n_eval=3)
        if name == "tiny-topk":
            recipe = recipe.replace("eval: {n_eval: 3}", TOPK_EVAL)
        (base / f"{name}.yaml").write_text(recipe)
        res = kni("run", str(base / f"{name}.yaml"), "--db", str(base / "runs.db"), env=env)
        assert res.returncode == 0, res.stderr
    return base / "runs.db", env


@pytest.fixture(scope="module")
def opened(runs):
    """``run id -> (cfg, model, data)`` loaded from the checkpoints."""
    db, env = runs
    old = os.environ.get("KNI_CACHE_DIR")
    os.environ["KNI_CACHE_DIR"] = env["KNI_CACHE_DIR"]
    out = {}
    with Store.open(db, readonly=True) as store:
        for run_id in (1, 2, 4):
            run = store.get(run_id)
            cfg = RunConfig.from_dict(json.loads(run.config_json))
            model, data = load_model(cfg, db.parent / run.checkpoint)
            out[run_id] = (cfg, model, data)
    yield out
    if old is None:
        os.environ.pop("KNI_CACHE_DIR", None)
    else:
        os.environ["KNI_CACHE_DIR"] = old


def a_test_positive(data) -> tuple[int, int]:
    pos = data.test[data.test[:, 2] == 1]
    return int(pos[0, 0]), int(pos[0, 1])


# --------------------------------------------------------------------------------------------
# explain: the matrix


def test_the_matrix_is_the_models_own_computation(opened):
    cfg, model, data = opened[1]
    u, v = a_test_positive(data)
    e = explain(model, data, u, v, n_eval=5, seed=3, samples=4)
    n = cfg.model.hop_n_sample[1] + 1
    assert len(e.samples) == 4 and [m.seed for m in e.samples] == [3, 4, 5, 6]
    for m in e.samples:
        assert m.attention.shape == m.score.shape == (n, n) and len(m.users) == len(m.items) == n
        # ni:1: one softmax of the pair scores / temperature over all (n1+1)^2 cells
        flat = torch.from_numpy(m.score).flatten() / cfg.model.temperature
        assert np.allclose(m.attention, torch.softmax(flat, 0).view(n, n).numpy(), atol=1e-6)
        assert m.attention.sum() == pytest.approx(1.0, abs=1e-6)
        # the pair scores are the dot products of the neighbours' vectors (one hop: raw embeddings)
        emb = model.embedding.detach().double().numpy()
        nu = emb[[x.entity for x in m.users]]
        nv = emb[[x.entity for x in m.items]]
        assert np.allclose(m.score, nu @ nv.T, atol=1e-5)
    # the sample's logit is what a forward pass with the same generator gives
    with torch.no_grad():
        logit = model(torch.tensor([u]), torch.tensor([v]), 1, torch.Generator().manual_seed(3))
    assert e.samples[0].logit == pytest.approx(float(logit), abs=1e-5)
    # the probability is the trainer's predict of the pair alone (a batch of one, n_eval passes, seed --seed)
    trainer = Trainer(cfg, data)
    trainer.model.load_state_dict(model.state_dict())
    expected = trainer.predict(torch.tensor([[u, v, 1]]), repeats=5, seed=3)[0]
    assert e.probability == pytest.approx(float(expected), abs=1e-6)
    assert e.label == "test positive" and e.user.kind == USER and e.item.kind == ITEM


def test_neighbours_are_named_by_kind_raw_id_and_relation(opened):
    cfg, model, data = opened[1]
    raw = load_raw(cfg)
    namer = Namer(data)
    # the raw ids are the generator's own: every training row maps back to one of its ratings
    raw_pairs = {(int(a), int(b)) for a, b in raw.ratings[:, :2]}
    assert all((namer.raw(int(a)), namer.raw(int(b))) in raw_pairs for a, b in data.train[:, :2])
    positives = {(int(a), int(b)) for a, b, y in data.train if y == 1}
    triples = {(int(h), int(r), int(t)) for h, r, t in data.kg_triples}
    seen_kg = False
    for u, v, _ in data.test[:10]:
        e = explain(model, data, int(u), int(v), n_eval=1, seed=0, samples=2)
        for m in e.samples:
            assert m.users[0].entity == u and m.items[0].entity == v
            assert m.users[0].relation == m.items[0].relation == "itself"
            for nb in m.users[1:]:                       # a user's neighbours: its training items
                assert nb.kind == ITEM and (int(u), nb.entity) in positives and nb.relation == INTERACTED
                assert nb.name == f"item {namer.raw(nb.entity)}"
            for nb in m.items[1:]:                       # an item's: its users, or KG entities
                if nb.kind == USER:
                    assert (nb.entity, int(v)) in positives and nb.relation == INTERACTED
                else:
                    assert nb.kind in (ITEM, ENTITY)
                    seen_kg = True
                    for part in nb.relation.split(" / "):
                        r = int(part.split()[1])                # "relation R" or "relation R (inverse)"
                        rel = int(np.flatnonzero(data.raw_relations == r)[0])
                        edge = (nb.entity, rel, int(v)) if "inverse" in part else (int(v), rel, nb.entity)
                        assert edge in triples
    assert seen_kg


def test_ni_has_no_kg_neighbours(opened):
    cfg, model, data = opened[2]
    assert cfg.model.kg is False
    u, v = a_test_positive(data)
    m = explain(model, data, u, v, n_eval=1, samples=1).samples[0]
    assert all(nb.kind == USER and nb.relation == INTERACTED for nb in m.items[1:] if nb.kind != "padding")
    assert all(nb.kind == ITEM for nb in m.users[1:] if nb.kind != "padding")


def test_a_planted_shared_entity_is_the_top_pair(opened):
    """Plant it in the weights: give an item the user trained on and a KG entity of the target
    item one large shared vector. With every neighbour drawn (n1 = max_degree, all the table's
    columns), that (item, entity) pair must hold the most attention - in the named cell. Large:
    top pairs sum a pair's cells, and the table repeats the neighbours of small nodes, so a
    pair of ordinary vectors filling many cells can outweigh a slightly favoured single one."""
    cfg, model, data = opened[1]
    from kni_core.models.kni import KNI
    planted = KNI(data.n_entity, torch.from_numpy(np.array(data.adjacency)), cfg.model)
    planted.load_state_dict(model.state_dict())
    planted.hops = [1, planted.max_degree]
    positives = data.train[data.train[:, 2] == 1]
    adjacency = np.asarray(data.adjacency)
    found = None
    for u, a in positives[:, :2]:
        if a not in adjacency[u]:
            continue
        for v in np.unique(data.test[data.test[:, 2] == 1][:, 1]):
            if v == a or a in adjacency[v]:        # a on both sides would tie with (a, x)
                continue
            shared = [x for x in np.intersect1d(adjacency[a], adjacency[v]) if x > data.n_users
                      and Namer(data).kind(int(x)) != ITEM and x != v and x not in adjacency[u]]
            if shared:
                found = int(u), int(a), int(v), int(shared[0])
                break
        if found:
            break
    assert found, "the tiny synthetic KG links some training item and some test item to one attribute"
    u, a, v, x = found
    with torch.no_grad():
        direction = torch.randn(cfg.model.hidden, generator=torch.Generator().manual_seed(0))
        planted.embedding[a] = planted.embedding[x] = 8 * direction / direction.norm()
    e = explain(planted, data, u, v, n_eval=1, seed=0, samples=3)
    for m in e.samples:
        top = m.top_pairs(1)[0]
        assert (m.users[top["row"]].entity, m.items[top["col"]].entity) == (a, x)
        assert top["user_side"] == Namer(data).entity(a).name and top["item_side"] == Namer(data).entity(x).name
    first = e.stability[0]              # ranked by how often a pair was the top one
    assert (first["user_entity"], first["item_entity"]) == (a, x) and first["top1"] == 1.0 and first["drawn"] == 1.0


def test_run_score_is_the_runs_own_evaluation_score_of_the_pair(runs, opened):
    """Run 4 evaluated in batches of 7 rows: its split scored again with the run's seed rule gives
    the stored AUCs (so the seeds are the trainer's), and run_score is that score of the pair,
    which explain's probability (the pair alone, its own draws) is not."""
    from kni_core.metrics import evaluate_scores
    db, _ = runs
    cfg, model, data = opened[4]
    with Store.open(db, readonly=True) as store:
        run = store.get(4)
    trainer = Trainer(cfg, data)
    trainer.model.load_state_dict(model.state_dict())
    for split, stored_auc in (("valid", run.best_valid_auc), ("test", run.best_test_auc)):
        rows = getattr(data, split)
        seed = cfg.seed * 100003 + run.best_epoch + (50000 if split == "test" else 0)
        scores = trainer.predict(torch.from_numpy(rows), seed=seed)
        assert evaluate_scores(rows[:, 2], scores, data.threshold).auc == pytest.approx(stored_auc, abs=1e-9)
        row = len(rows) // 2 + 3                      # a row past the first batches
        u, v = int(rows[row, 0]), int(rows[row, 1])
        got = run_score(model, data, u, v, run_seed=cfg.seed, epoch=run.best_epoch, n_eval=cfg.eval.n_eval,
                        eval_batch=cfg.eval.batch_size)
        assert (got.split, got.row, got.seed, got.batch) == (split, row, seed, 7)
        assert got.score == pytest.approx(float(scores[row]), abs=1e-7)
    alone = explain(model, data, u, v, n_eval=cfg.eval.n_eval).probability
    assert alone != pytest.approx(got.score, abs=1e-7)
    trained = data.train[0]
    assert run_score(model, data, int(trained[0]), int(trained[1]), run_seed=cfg.seed, epoch=1, n_eval=3,
                     eval_batch=7) is None


def test_top_pairs_sum_the_cells_of_one_entity_pair():
    """Neighbours are drawn with replacement: item 10 fills two rows, so the (item 10, item 20)
    pair holds 0.4 over two cells and leads, ahead of the single cell of 0.3."""
    def nb(entity, kind):
        return Neighbour(entity, kind, entity, "itself")
    users = [nb(1, USER), nb(10, ITEM), nb(10, ITEM)]
    items = [nb(20, ITEM), nb(30, ENTITY)]
    attention = np.array([[0.30, 0.05], [0.20, 0.05], [0.20, 0.20]])
    score = np.array([[1.0, 2.0], [3.0, 4.0], [3.0, 6.0]])       # deeper hops: one pair's cells can differ
    m = PairMatrix(0, users, items, attention, score, float((attention * score).sum()))
    top = m.top_pairs(10)
    assert [(p["user_entity"], p["item_entity"]) for p in top] == [(10, 20), (1, 20), (10, 30), (1, 30)]
    assert [p["cells"] for p in top] == [2, 1, 2, 1]
    assert [p["attention"] for p in top] == pytest.approx([0.4, 0.3, 0.25, 0.05])
    assert sum(p["attention"] for p in top) == pytest.approx(1.0)
    assert (top[0]["row"], top[0]["col"]) == (1, 0)                 # the first of its two tied cells
    assert (top[0]["score"], top[0]["contribution"]) == pytest.approx((3.0, 1.2))
    # (10, 30): cells 0.05 x 4 and 0.2 x 6; its cell of most attention is (2, 1)
    assert (top[2]["row"], top[2]["col"]) == (2, 1)
    assert top[2]["contribution"] == pytest.approx(1.4) and top[2]["score"] == pytest.approx(1.4 / 0.25)
    assert top[0]["user_side"] == "item 10" and top[2]["item_side"] == "entity 30"
    assert len(m.top_pairs(2)) == 2


# --------------------------------------------------------------------------------------------
# recommend


def test_recommend_excludes_training_items_and_marks_the_splits(opened):
    cfg, model, data = opened[1]
    u, _ = a_test_positive(data)
    rec = recommend(model, data, u, k=1000, n_eval=3, seed=2)
    trained = set(data.train[data.train[:, 0] == u][:, 1].tolist())
    assert not trained & set(rec.items.tolist())
    assert rec.candidates == len(data.items) - len(trained) == len(rec.items)
    assert list(rec.scores) == sorted(rec.scores, reverse=True)
    for split in ("valid", "test"):
        rows = getattr(data, split)
        for item, label in rows[rows[:, 0] == u][:, 1:].tolist():
            if item not in trained:
                mark = rec.marks[rec.items.tolist().index(item)]
                assert mark == f"{split} {'positive' if label else 'negative'}"
    # the scores are the top-N evaluation's (its score function over a trainer with these weights)
    trainer = Trainer(cfg, data)
    trainer.model.load_state_dict(model.state_dict())
    ev = TopKEvaluator(data, cfg.eval.topk)
    theirs = score_function(trainer, 3)(np.array([u]), ev.items, 2)[0]
    ours = score_function(ModelScorer(model), 3)(np.array([u]), ev.items, 2)[0]
    assert np.allclose(theirs, ours, atol=1e-7)
    assert np.allclose(rec.scores, theirs[np.searchsorted(ev.items, rec.items)], atol=1e-7)


def test_explain_and_recommend_refuse_what_is_not_a_user_or_an_item(opened):
    _, model, data = opened[1]
    u, v = a_test_positive(data)
    kg_entity = next(e for e in range(data.n_entity - 1, 0, -1) if e not in set(data.items.tolist()))
    for user, item, said in ((v, v, "entity .* is not a user"), (u, u, "is not an item"),
                             (0, v, "outside"), (10**6, v, "outside"), (u, kg_entity, "a KG entity")):
        with pytest.raises(ExplainError, match=said):
            explain(model, data, user, item, n_eval=1)
    with pytest.raises(RecommendError, match="is not a user"):
        recommend(model, data, v)
    with pytest.raises(RecommendError, match="k: expected at least 1"):
        recommend(model, data, u, k=0)


def test_hit_rate_counts_users_with_a_test_positive_in_their_top_k(opened):
    cfg, model, data = opened[1]
    result = hit_rate(model, data, users=12, k=5, n_eval=2, user_seed=0, seed=1)
    ev = TopKEvaluator(data, cfg.eval.topk.__class__(users=12, seed=0, full=False))
    assert result["users"] == len(ev.sampled_users) == 12
    # recomputed by hand: the 12 users' scores in one seeded pass (as hits() scores one chunk),
    # each user's training items dropped, its 5 best checked against its test positives
    users = ev.sampled_users
    pairs = np.stack([np.repeat(users, len(data.items)), np.tile(data.items, len(users))], axis=1)
    scores = ModelScorer(model).predict(torch.from_numpy(pairs), repeats=2, seed=1).reshape(len(users), -1)
    hits, recall = 0, 0.0
    for n, user in enumerate(users):
        trained = set(data.train[data.train[:, 0] == user][:, 1].tolist())
        order = [int(data.items[j]) for j in np.argsort(-scores[n], kind="stable") if data.items[j] not in trained][:5]
        positives = set(data.test[(data.test[:, 0] == user) & (data.test[:, 2] == 1)][:, 1].tolist())
        hits += bool(positives & set(order))
        recall += len(positives & set(order)) / len(positives)
    assert result["hit_rate@5"] == pytest.approx(hits / 12)
    assert result["recall@5"] == pytest.approx(recall / 12)


# --------------------------------------------------------------------------------------------
# the centre cell


def test_centre_mass_is_the_explained_centre_cell(opened):
    cfg, model, data = opened[1]
    u, v = a_test_positive(data)
    mass = centre_mass(model, np.array([[u, v]]), repeats=1, seed=7)
    assert mass[0] == pytest.approx(explain(model, data, u, v, n_eval=1, seed=7).samples[0].centre_mass, abs=1e-7)
    many = centre_mass(model, data.test[:50, :2], repeats=3, seed=0)
    assert many.shape == (50,) and np.all((many > 0) & (many < 1))


# --------------------------------------------------------------------------------------------
# the commands


def test_explain_command_prints_the_matrix_and_json(runs):
    db, env = runs
    res = kni("explain", "1", "--db", str(db), "--samples", "3", env=env)
    assert res.returncode == 0, res.stderr
    assert "predicted probability" in res.stdout and "top pairs by attention" in res.stdout
    assert "stability over 3 neighbourhood samples" in res.stdout and "itself" in res.stdout
    out = json.loads(kni("explain", "1", "--db", str(db), "--json", env=env).stdout)
    n = 5
    assert out["kg"] is True and len(out["samples"]) == 1
    sample = out["samples"][0]
    assert np.array(sample["attention"]).shape == (n, n) and len(sample["rows"]) == len(sample["cols"]) == n
    assert sample["rows"][0]["kind"] == "user" and sample["cols"][0]["kind"] == "item"
    user, item = out["user"]["raw_id"], out["item"]["raw_id"]
    again = json.loads(kni("explain", "1", "--user", str(user), "--item", str(item), "--db", str(db), "--json",
                           env=env).stdout)
    assert again["probability"] == out["probability"] and again["samples"] == out["samples"]
    ni = json.loads(kni("explain", "2", "--db", str(db), "--json", env=env).stdout)
    assert ni["kg"] is False
    # top pairs are entity pairs, listed once each, with the cells they fill
    pairs = [(p["user_entity"], p["item_entity"]) for p in sample["top_pairs"]]
    assert len(set(pairs)) == len(pairs) and all(p["cells"] >= 1 for p in sample["top_pairs"])
    # the text says what the probability is, and is not
    said = " ".join(res.stdout.split())
    assert "scored alone" in said and "not the run's stored evaluation score" in said
    assert "--run-score" in said and "run_score" not in out


def test_explain_run_score_command(runs, opened):
    db, env = runs
    cfg, model, data = opened[4]
    with Store.open(db, readonly=True) as store:
        run = store.get(4)
    out = json.loads(kni("explain", "4", "--run-score", "--json", "--db", str(db), env=env).stdout)
    u, v = a_test_positive(data)
    expected = run_score(model, data, u, v, run_seed=cfg.seed, epoch=run.best_epoch, n_eval=3, eval_batch=7)
    assert out["run_score"] == expected.to_dict() and out["run_score"]["split"] == "test"
    text = kni("explain", "4", "--run-score", "--db", str(db), env=env).stdout
    assert f"the run's evaluation at epoch {run.best_epoch} gave it {expected.score:.4f}" in " ".join(text.split())


def test_explain_errors_exit_2(runs, tmp_path):
    db, env = runs
    mf = kni("explain", "3", "--db", str(db), env=env)
    assert mf.returncode == 2 and "KNI and NI runs only" in mf.stderr and "Traceback" not in mf.stderr
    gpu = kni("explain", "1", "--device", "gpu", "--db", str(db), env=env)
    assert gpu.returncode == 2 and "--device gpu" in gpu.stderr and "Traceback" not in gpu.stderr
    bad = kni("explain", "1", "--user", "99999", "--db", str(db), env=env)
    assert bad.returncode == 2 and "no user 99999 in the ratings file" in bad.stderr
    shutil.copy(db, tmp_path / "moved.db")
    moved = kni("explain", "1", "--db", str(tmp_path / "moved.db"), env=env)
    assert moved.returncode == 2 and "missing" in moved.stderr and "Traceback" not in moved.stderr
    rec = kni("recommend", "1", "--db", str(tmp_path / "moved.db"), env=env)
    assert rec.returncode == 2 and "missing" in rec.stderr


def test_recommend_command(runs):
    db, env = runs
    res = kni("recommend", "1", "--db", str(db), "-k", "5", "--json", env=env)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert [r["rank"] for r in out["items"]] == [1, 2, 3, 4, 5] and out["n_eval"] == 3
    assert all(r["kind"] == "item" for r in out["items"])
    mf = json.loads(kni("recommend", "3", "--db", str(db), "-k", "3", "--json", env=env).stdout)
    assert mf["n_eval"] == 1 and len(mf["items"]) == 3                  # a baseline scores once
    for floor in ("5", "6"):                                            # the floors: models without parameters
        res = kni("recommend", floor, "--db", str(db), "-k", "3", "--json", env=env)
        assert res.returncode == 0 and "Traceback" not in res.stderr, res.stderr
        assert len(json.loads(res.stdout)["items"]) == 3
    text = kni("recommend", "1", "--db", str(db), "-k", "5", env=env).stdout
    assert "candidates for user" in text
    hr = json.loads(kni("recommend", "1", "--db", str(db), "--hit-rate", "10", "-k", "20", "--json", env=env).stdout)
    assert hr["users"] == 10 and 0.0 <= hr["hit_rate@20"] <= 1.0 and hr["recall@20"] <= 1.0


def test_recommend_hit_rate_by_default_gives_the_stored_top_n(runs):
    """Run 4 stored its top-N (10 users, k 5 and 20) evaluated in batches of 7: by default the
    hit rate takes the run's top-N seed and batch size, so its precision and recall are those."""
    db, env = runs
    with Store.open(db, readonly=True) as store:
        run = store.get(4)
        (stored,) = store.topk(4)
    assert stored.protocol == "sampled" and stored.users == 10 and stored.epoch == run.best_epoch
    for k in (5, 20):
        res = kni("recommend", "4", "--db", str(db), "--hit-rate", "10", "-k", str(k), "--json", env=env)
        assert res.returncode == 0, res.stderr
        hr = json.loads(res.stdout)
        assert hr["seed"] == topk_seed(run.seed, run.best_epoch) and hr["n_eval"] == stored.n_eval == 3
        assert hr[f"precision@{k}"] == pytest.approx(stored.metrics[f"precision@{k}"], abs=1e-12)
        assert hr[f"recall@{k}"] == pytest.approx(stored.metrics[f"recall@{k}"], abs=1e-12)
    other = json.loads(kni("recommend", "4", "--db", str(db), "--hit-rate", "10", "-k", "20", "--seed", "5",
                           "--json", env=env).stdout)
    assert other["seed"] == 5


def test_a_user_dropped_by_preprocessing_is_told_apart_from_an_unknown_id(tmp_path):
    """User 30 and item 40 are in the ratings file, but user 30 has no positive rating (so none
    in training either) and is the only one to rate item 40: preprocessing drops both."""
    rng = np.random.default_rng(0)
    folder = tmp_path / "mini"
    folder.mkdir()
    rows = {(int(u), int(i)): int(rng.integers(0, 2)) for u, i in zip(rng.integers(0, 30, 600),
                                                                       rng.integers(0, 40, 600))}
    rows.update({(30, i): 0 for i in (0, 1, 2, 40)})
    (folder / "ratings_final.txt").write_text("".join(f"{u}\t{i}\t{y}\n" for (u, i), y in rows.items()))
    (folder / "kg_final.txt").write_text("".join(f"{i}\t0\t{50 + i % 5}\n" for i in range(41)))
    recipe = tiny_recipe("mini", model=KNI_MODEL[1:-1], epochs=1).replace(
        "dataset: {name: synthetic, min_relation_triples: 1, synthetic: {preset: tiny}}",
        f"dataset: {{path: '{folder}', min_relation_triples: 1}}")
    (tmp_path / "mini.yaml").write_text(recipe)
    env = {"KNI_CACHE_DIR": str(tmp_path / "cache")}
    db = str(tmp_path / "runs.db")
    assert kni("run", str(tmp_path / "mini.yaml"), "--db", db, env=env).returncode == 0
    dropped = kni("explain", "1", "--user", "30", "--db", db, env=env)
    assert dropped.returncode == 2 and "user 30 is in the ratings file but not in this run's data" in dropped.stderr
    assert "no positive rating in the training split" in dropped.stderr
    unknown = kni("recommend", "1", "--user", "31", "--db", db, env=env)
    assert unknown.returncode == 2 and "no user 31 in the ratings file" in unknown.stderr
    item = kni("explain", "1", "--item", "40", "--db", db, env=env)
    assert item.returncode == 2 and "item 40 is in the ratings file but not in this run's data" in item.stderr
    # without the ratings file at hand, the message gives both reasons
    with Store.open(db, readonly=True) as store:
        run = store.get(1)
        cfg = RunConfig.from_dict(json.loads(run.config_json))
    old = os.environ.get("KNI_CACHE_DIR")
    os.environ["KNI_CACHE_DIR"] = env["KNI_CACHE_DIR"]
    try:
        _, data = load_model(cfg, tmp_path / run.checkpoint)
    finally:
        if old is None:
            os.environ.pop("KNI_CACHE_DIR", None)
        else:
            os.environ["KNI_CACHE_DIR"] = old
    with pytest.raises(ExplainError, match="the ratings file has no such user, or preprocessing dropped it"):
        Namer(data).lookup(USER, 30)
    ratings = np.array([(u, i, y) for (u, i), y in rows.items()])
    assert why_absent(USER, 30, ratings).startswith("user 30 is in the ratings file")
    assert why_absent(USER, 77, ratings) == "no user 77 in the ratings file (ids as in the dataset's files)"


def test_compare_explain(runs):
    db, env = runs
    res = kni("compare", "--explain", "--all", "--explain-rows", "40", "--json", "--db", str(db), env=env)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert [r["model"] for r in out["runs"]] == ["KNI", "NI", "KNI"] and out["skipped"]       # runs 1, 2, 4
    for r in out["runs"]:
        assert r["n"] == 40 and 0 < r["q1"] <= r["median"] <= r["q3"] < 1 and r["uniform"] == pytest.approx(1 / 25)
    text = kni("compare", "--explain", "1", "2", "--explain-rows", "20", "--db", str(db), env=env)
    assert text.returncode == 0 and "early summarization" in text.stdout
    bad = kni("compare", "--explain", "--matrix", "--db", str(db), env=env)
    assert bad.returncode == 2


def test_stability_names_each_samples_top_pair_as_the_top_pairs_table_does(opened):
    from kni_core.explain import explain as explain_pair
    _, model, data = opened[1]
    u, v = a_test_positive(data)
    e = explain_pair(model, data, u, v, n_eval=1, samples=6)
    tops = [(m.top_pairs(1)[0]["user_entity"], m.top_pairs(1)[0]["item_entity"]) for m in e.samples]
    shares = {(r["user_entity"], r["item_entity"]): r["top1"] for r in e.stability}
    for pair in set(tops):
        if pair in shares:                      # the table keeps the 8 first rows
            assert shares[pair] == pytest.approx(tops.count(pair) / len(tops))
    assert sum(shares.values()) == pytest.approx(1.0) or len(e.stability) == 8
