"""``kni explain | recommend`` and ``kni compare --explain``: questions to a finished run's saved
model. They read the database (read-only) and the run's checkpoint; an error (no saved model, a
missing file, a baseline asked for attention, an unknown id) prints one line and exits with 2.

Users and items are named by their ids in the dataset's files (as ``ratings_final.txt`` has
them); a prepared cache written before those ids were kept takes the internal entity ids."""

from __future__ import annotations

import json
from typing import List, Optional

import typer
from rich.markup import escape

from kni_core.errors import KniError

from .common import JSON_HELP, db_option, fail, open_store, out

USER_HELP = "User id as in the dataset's files (default: the first test positive's user)."
DEVICE_HELP = "Where the model runs: cpu (default) or cuda[:N]."


def _opened(db: str, run_id: int, device: str):
    from ..services.explain import open_run
    store = open_store(db)
    try:
        return open_run(store, run_id, device)
    except KniError as e:
        fail(e)
    finally:
        store.close()


def _entity(opened, kind: str, raw: int) -> int:
    """The internal entity of a user / item id typed by the user; when the run's data lacks it,
    the error says why, read in the dataset's ratings file (not in it, or dropped by
    preprocessing) where that file loads, else both possible reasons."""
    from kni_core.explain import ExplainError, why_absent
    try:
        return opened.namer.lookup(kind, raw)
    except ExplainError:
        ratings = _ratings(opened.cfg) if opened.namer.raw_ids is not None else None
        if ratings is None:
            raise
        raise ExplainError(why_absent(kind, raw, ratings)) from None


def _ratings(cfg):
    """The dataset's ``(user, item, label)`` rows as its files have them, None when they do not load."""
    from kni_core.data import load_raw
    try:
        return load_raw(cfg).file_ratings()
    except (KniError, OSError, ValueError):
        return None


def _probability_note(run, scored) -> str:
    """Beside the probability (the pair alone, see the view's headline): the run's own score of it."""
    if run is None:
        return ("the run's own evaluation drew the pair's neighbours from its own seed, one set of table columns "
                "per evaluation step, after the steps before the pair's: --run-score gives that score")
    if scored is None:
        return "this pair is in neither the validation nor the test split: the run's evaluation never scored it"
    return (f"the run's evaluation at epoch {run.best_epoch} gave it [bold]{scored.score:.4f}[/] ({scored.split} "
            f"split, row {scored.row}, steps of {scored.batch} rows, seed {scored.seed})")


def explain_command(run_id: int = typer.Argument(..., help="Run id (kni runs lists them); a KNI or NI run."),
                    user: Optional[int] = typer.Option(None, "--user", "-u", help=USER_HELP),
                    item: Optional[int] = typer.Option(None, "--item", "-i",
                                                       help="Item id as in the dataset's files (default: a test "
                                                            "positive of the user)."),
                    samples: int = typer.Option(1, "--samples", min=1, max=1000,
                                                help="Neighbourhood samples: with N > 1, how stable the top "
                                                     "pairs are (mean attention, share of samples as top-1)."),
                    seed: int = typer.Option(0, "--seed", min=0, help="Seed of the samples (sample s: seed + s) "
                                                                      "and of the n_eval passes."),
                    n_eval: Optional[int] = typer.Option(None, "--n-eval", min=1,
                                                         help="Passes averaged for the probability (default: "
                                                              "the run's eval.n_eval)."),
                    top: int = typer.Option(5, "--top", min=1, help="Pairs listed."),
                    run_score: bool = typer.Option(False, "--run-score",
                                                   help="Also the score the run's own evaluation gave the pair at "
                                                        "its selected epoch (its split scored again, batch by batch "
                                                        "with the run's seed, up to the pair's batch; the same "
                                                        "number on the device type the run ran on)."),
                    device: str = typer.Option("cpu", "--device", help=DEVICE_HELP),
                    json_out: bool = typer.Option(False, "--json", help=JSON_HELP),
                    db: str = db_option()) -> None:
    """Why the run predicts what it does for a (user, item) pair: the model's probability for it
    (n_eval passes of the pair alone, seeded --seed: not the run's stored evaluation score, see
    --run-score), then the neighbour-pair matrix of one sampled neighbourhood (attention weight and
    pair score per cell; rows the user and its neighbours, columns the item and its neighbours),
    and the top entity pairs. KNI and NI runs only."""
    from kni_core.explain import ExplainError, explain, run_score as score_of_run
    opened = _opened(db, run_id, device)
    scored = None
    try:
        if not opened.explainable:
            raise ExplainError(f"run {run_id} is a run of model {opened.cfg.model.name}: explain reads KNI's "
                               f"neighbour-pair attention (KNI and NI runs only); kni recommend {run_id} scores "
                               "any run")
        if user is not None:
            _entity(opened, "user", user)
        if item is None:
            u, v = opened.default_pair(user)
        else:
            u = _entity(opened, "user", user) if user is not None else opened.default_pair()[0]
            v = _entity(opened, "item", item)
        e = explain(opened.model, opened.data, u, v, n_eval=n_eval or opened.cfg.eval.n_eval, seed=seed,
                    samples=samples, namer=opened.namer)
        if run_score:
            scored = score_of_run(opened.model, opened.data, u, v, run_seed=opened.cfg.seed,
                                  epoch=opened.run.best_epoch, n_eval=opened.cfg.eval.n_eval,
                                  eval_batch=opened.cfg.eval.batch_size)
    except KniError as err:
        fail(err)
    if json_out:
        extra = {"run_score": scored.to_dict() if scored else None} if run_score else {}
        print(json.dumps({"run": run_id, "model": opened.cfg.model.name, "kg": getattr(opened.cfg.model, "kg", None),
                          **e.to_dict(top), **extra}))
        return
    from ..views.explain import explanation_view
    console = out()
    console.print(explanation_view(opened, e, k=top))
    console.print(f"[dim]{_probability_note(opened.run if run_score else None, scored)}[/]", highlight=False)


def recommend_command(run_id: int = typer.Argument(..., help="Run id (kni runs lists them)."),
                      user: Optional[int] = typer.Option(None, "--user", "-u", help=USER_HELP),
                      k: int = typer.Option(20, "-k", "--top", min=1, help="Items listed."),
                      hit_rate: Optional[int] = typer.Option(None, "--hit-rate", min=1,
                                                             help="Instead: over N test users (the top-N "
                                                                  "protocol's seeded sample, eval.topk.seed), the "
                                                                  "share whose top k holds a test positive, with "
                                                                  "precision@k and recall@k."),
                      seed: Optional[int] = typer.Option(None, "--seed", min=0,
                                                         help="Seed of the sampled passes (default: with "
                                                              "--hit-rate, the run's own top-N seed, so that "
                                                              "--hit-rate eval.topk.users gives the stored "
                                                              "top-N values; else 0)."),
                      n_eval: Optional[int] = typer.Option(None, "--n-eval", min=1,
                                                           help="Passes averaged per score (default: the run's "
                                                                "eval.topk.n_eval, else eval.n_eval; 1 for the "
                                                                "baselines)."),
                      device: str = typer.Option("cpu", "--device", help=DEVICE_HELP),
                      json_out: bool = typer.Option(False, "--json", help=JSON_HELP),
                      db: str = db_option()) -> None:
    """A user's top-k items among those not seen in training, with their scores, marking the
    validation and test items (positives in green); or, with --hit-rate N, the hit rate of test
    positives in the top k over N test users."""
    from kni_core.recommend import hit_rate as hit_rate_of, recommend
    opened = _opened(db, run_id, device)
    passes = n_eval or opened.cfg.eval.topk.n_eval or opened.cfg.eval.n_eval
    batch = opened.cfg.eval.batch_size
    try:
        if hit_rate is not None:
            if user is not None:
                raise KniError("--hit-rate samples its users: drop --user")
            result = hit_rate_of(opened.model, opened.data, users=hit_rate, k=k, n_eval=passes,
                                 user_seed=opened.cfg.eval.topk.seed, seed=_topk_seed(opened, seed),
                                 eval_batch=batch)
        else:
            u = _entity(opened, "user", user) if user is not None else opened.default_pair()[0]
            rec = recommend(opened.model, opened.data, u, k, n_eval=passes, seed=seed or 0, eval_batch=batch)
    except KniError as err:
        fail(err)
    if hit_rate is not None:
        if json_out:
            print(json.dumps({"run": run_id, **result}))
            return
        whose = " (the run's top-N seed)" if seed is None else ""
        out().print(f"{escape(opened.label)}\nover {result['users']} test users (seed {result['user_seed']}), "
                     f"top {k}, {result['n_eval']} pass(es) per score seeded {result['seed']}{whose}: hit rate@{k} "
                     f"[bold]{result[f'hit_rate@{k}']:.4f}[/], precision@{k} {result[f'precision@{k}']:.4f}, "
                     f"recall@{k} {result[f'recall@{k}']:.4f}", highlight=False)
        return
    from ..views.explain import recommendation_dict, recommendation_table
    if json_out:
        print(json.dumps(recommendation_dict(opened, rec)))
        return
    console = out()
    console.print(f"[dim]{escape(opened.label)}[/]", highlight=False)
    console.print(recommendation_table(opened, rec))


def _topk_seed(opened, seed: int | None) -> int:
    """``--seed``, else the seed the run's top-N used with its selected epoch's weights."""
    from kni_core.topk import topk_seed
    if seed is not None:
        return seed
    return topk_seed(opened.cfg.seed, opened.run.best_epoch or 0)


# --------------------------------------------------------------------------------------------
# kni compare --explain

def compare_explain(db: str, run_ids: List[int], recipe: Optional[str], all_: bool, dataset: Optional[str],
                    status: Optional[List[str]], pairs: int, repeats: int, seed: int, json_out: bool) -> None:
    """The early-summarization statistic per run: attention on the centre cell (the user itself
    with the item itself) over a seeded sample of test rows, against uniform attention."""
    import numpy as np
    from rich.table import Table

    from kni_core.config import DEFAULT_MODEL
    from kni_core.explain import centre_mass, side_size, summary
    from kni_core.models import get as model_class

    from ..analysis.selection import select_runs
    from ..runs.rows import model_label
    from ..services.explain import open_run
    store = open_store(db)
    rows, skipped = [], []
    try:
        runs = select_runs(store, ids=run_ids, recipe=recipe, all_=all_, dataset=dataset, status=status)
        for run in runs:
            if not model_class(run.config.get("model", {}).get("name", DEFAULT_MODEL)).explainable:
                skipped.append(f"run {run.id}: a baseline (no neighbour-pair attention)")
                continue
            try:
                opened = open_run(store, run.id)
            except KniError as e:
                skipped.append(str(e))
                continue
            test = opened.data.test
            rng = np.random.default_rng(seed)
            take = test if len(test) <= pairs else test[np.sort(rng.choice(len(test), size=pairs, replace=False))]
            mass = centre_mass(opened.model, take[:, :2], repeats=repeats, seed=seed)
            n = side_size(opened.model)
            rows.append({"run": run.id, "recipe": run.recipe, "dataset": run.dataset, "model": model_label(opened.cfg),
                         "seed": run.seed, "group": run.config_hash[:8], "n1": n - 1, "uniform": 1 / n ** 2,
                         "temperature": opened.cfg.model.temperature, **summary(mass),
                         "positives": summary(mass[take[:, 2] == 1])["mean"],
                         "negatives": summary(mass[take[:, 2] == 0])["mean"]})
    except KniError as e:
        fail(e)
    finally:
        store.close()
    if not rows:
        fail("no KNI or NI run with a saved model among the selected runs" +
              (f" ({'; '.join(skipped)})" if skipped else ""))
    if json_out:
        print(json.dumps({"pairs": pairs, "repeats": repeats, "seed": seed, "runs": rows, "skipped": skipped},
                         indent=2))
        return
    t = Table(title=f"early summarization: attention on the centre cell (user itself x item itself), {pairs} test "
                    f"rows sampled with seed {seed}, {repeats} neighbourhood samples each", title_justify="left")
    for col in ("run", "recipe", "model", "seed", "group", "n1", "rows", "mean", "q1", "median", "q3",
                "pos / neg", "uniform", "mean / uniform"):
        t.add_column(col, justify="left" if col in ("recipe", "model", "group") else "right")
    for r in sorted(rows, key=lambda r: (r["recipe"], r["run"])):
        t.add_row(str(r["run"]), r["recipe"], r["model"], str(r["seed"]), r["group"], str(r["n1"]), str(r["n"]),
                  f"{r['mean']:.5f}", f"{r['q1']:.5f}", f"{r['median']:.5f}", f"{r['q3']:.5f}",
                  f"{r['positives']:.5f} / {r['negatives']:.5f}", f"{r['uniform']:.5f}",
                  f"{r['mean'] / r['uniform']:.4f}")
    console = out()
    console.print(t)
    console.print("[dim]mean well above uniform: the prediction leans on the (user, item) pair itself, as models that "
              "summarise early do; near uniform: the neighbour pairs carry it[/]", highlight=False)
    for s in skipped:
        console.print(f"[dim]skipped: {escape(s)}[/]", highlight=False)
