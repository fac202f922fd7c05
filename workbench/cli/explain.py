"""``kni explain | recommend`` and ``kni compare --explain``: questions to a finished run's saved
model. They read the database (read-only) and the run's checkpoint; an error (no saved model, a
missing file, a baseline asked for attention, an unknown id) prints one line and exits with 2.

Users and items are named by their ids in the dataset's files (as ``ratings_final.txt`` has
them); a prepared cache written before those ids were kept takes the internal entity ids."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, List, Optional

import typer
from rich.markup import escape

from kni_core.errors import KniError

from .common import JSON_HELP, db_option, fail, open_store, out

if TYPE_CHECKING:                                  # imported where used, so `kni --help` starts fast

    pass



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
                    device: str = typer.Option("cpu", "--device", help=DEVICE_HELP),
                    json_out: bool = typer.Option(False, "--json", help=JSON_HELP),
                    db: str = db_option()) -> None:
    """Why the run predicts what it does for a (user, item) pair: the probability, then the
    neighbour-pair matrix of one sampled neighbourhood (attention weight and pair score per
    cell; rows the user and its neighbours, columns the item and its neighbours), and the top
    pairs. KNI and NI runs only."""
    from kni_core.explain import ExplainError, explain
    opened = _opened(db, run_id, device)
    try:
        if not opened.explainable:
            raise ExplainError(f"run {run_id} is a {opened.cfg.model.name} run: explain reads KNI's neighbour-pair "
                               f"attention (KNI and NI runs only); kni recommend {run_id} scores any run")
        if item is None:
            u, v = opened.default_pair(user)
        else:
            u = opened.user_entity(user) if user is not None else opened.default_pair()[0]
            v = opened.item_entity(item)
        e = explain(opened.model, opened.data, u, v, n_eval=n_eval or opened.cfg.eval.n_eval, seed=seed,
                    samples=samples, namer=opened.namer)
    except KniError as err:
        fail(err)
    if json_out:
        print(json.dumps({"run": run_id, "model": opened.cfg.model.name, "kg": getattr(opened.cfg.model, "kg", None),
                          **e.to_dict(top)}))
        return
    from ..views.explain import explanation_view
    out().print(explanation_view(opened, e, k=top))


def recommend_command(run_id: int = typer.Argument(..., help="Run id (kni runs lists them)."),
                      user: Optional[int] = typer.Option(None, "--user", "-u", help=USER_HELP),
                      k: int = typer.Option(20, "-k", "--top", min=1, help="Items listed."),
                      hit_rate: Optional[int] = typer.Option(None, "--hit-rate", min=1,
                                                             help="Instead: over N test users (the top-N "
                                                                  "protocol's seeded sample, eval.topk.seed), the "
                                                                  "share whose top k holds a test positive, with "
                                                                  "precision@k and recall@k."),
                      seed: int = typer.Option(0, "--seed", min=0, help="Seed of the sampled passes."),
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
    try:
        if hit_rate is not None:
            if user is not None:
                raise KniError("--hit-rate samples its users: drop --user")
            result = hit_rate_of(opened.model, opened.data, users=hit_rate, k=k, n_eval=passes,
                                 user_seed=opened.cfg.eval.topk.seed, seed=seed)
        else:
            u = opened.user_entity(user) if user is not None else opened.default_pair()[0]
            rec = recommend(opened.model, opened.data, u, k, n_eval=passes, seed=seed)
    except KniError as err:
        fail(err)
    if hit_rate is not None:
        if json_out:
            print(json.dumps({"run": run_id, **result}))
            return
        out().print(f"{escape(opened.label)}\nover {result['users']} test users (seed {result['user_seed']}), "
                     f"top {k}, {result['n_eval']} pass(es) per score: hit rate@{k} "
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
