"""Which runs a comparison counts, and the epoch of each it reads (``--at``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from kni_core import protocol

from ..store.errors import StoreError
from ..store.records import Epoch, Run
from ..store.repository import Store
from ..store.statuses import RUNNING, STATUSES
from .metrics import DEFAULT_STATUSES, CompareError, is_topk_metric
from .stats import mean_std
from .strata import is_stratum_metric, stratum_values


@dataclass
class RunPoint:
    """A run, its epochs and the one epoch ``--at`` chose (None when it has none)."""

    run: Run
    epochs: list[Epoch]
    point: Epoch | None
    truncated: bool = False      # --at original: the run stopped before the replayed rule would
    topk: dict = field(default_factory=dict)    # top-N metrics stored for the chosen epoch
    strata: dict = field(default_factory=dict)  # AUC by stratum, when the chosen epoch is the selected one

    def value(self, metric: str) -> float | None:
        if self.point is None:
            return None
        if is_topk_metric(metric):
            return self.topk.get(metric)
        if is_stratum_metric(metric):
            return self.strata.get(metric)
        return getattr(self.point, metric)

    def seconds_per_epoch(self) -> tuple[float, float]:
        """Mean training and evaluation seconds over the stored epochs."""
        return (mean_std(e.train_seconds for e in self.epochs)[0],
                mean_std(e.eval_seconds for e in self.epochs)[0])


def replay_original(run: Run, epochs: Sequence[Epoch]) -> tuple[Epoch, bool]:
    """The epoch the original code would report: selection *and* early stopping on test.

    ``select_on`` never changes a run's trajectory (evaluation has its own seeded generator),
    so replaying the rule on the stored test metrics gives exactly what a ``select_on: test``
    run reports - unless the stored run ended first (its own early stop), flagged ``True``.
    """
    patience = int(run.config.get("train", {}).get("patience", 10))
    aucs = [e.test_auc if e.test_auc is not None else float("nan") for e in epochs]
    lls = [e.test_logloss if e.test_logloss is not None else float("nan") for e in epochs]
    best, stop = protocol.replay(aucs, lls, patience)
    truncated = stop is None and len(epochs) < run.max_epochs and run.status != RUNNING
    return epochs[best], truncated


def choose_epoch(run: Run, epochs: Sequence[Epoch], at: str | int) -> Epoch | None:
    if not epochs:
        return None
    if at == "last":
        return epochs[-1]
    if at == "original":
        return replay_original(run, epochs)[0]
    if at == "best":
        target = run.best_epoch
    else:
        target = int(at)
    return next((e for e in epochs if e.epoch == target), None)


def select_runs(store: Store, *, ids: Sequence[int] = (), recipe: str | None = None, all_: bool = False,
                dataset: str | None = None, status: Sequence[str] | None = None,
                sweep: int | None = None) -> list[Run]:
    """The runs a compare / export selection names (ids must exist)."""
    given = sum(bool(x) for x in (ids, recipe, all_, sweep is not None))
    if given > 1:
        raise CompareError("give run ids, --recipe, --sweep or --all, not several")
    statuses = statuses_counted(status, explicit_ids=bool(ids))
    if sweep is not None:
        store.get_sweep(sweep)                            # a clear error for an unknown sweep
        return store.runs(sweep=sweep, dataset=dataset, status=statuses)
    if ids:
        missing = store.missing(ids)
        if missing:
            raise StoreError(f"no run with id {', '.join(map(str, missing))} in {store.where} (kni runs lists them)")
        runs = store.runs(ids=ids, dataset=dataset)
        return [r for r in runs if statuses is None or r.status in statuses]
    runs = store.runs(recipe=recipe, dataset=dataset, status=statuses)
    if recipe and not runs:
        known = sorted({r.recipe for r in store.runs()})
        hint = f"; recipes with runs: {', '.join(known)}" if known else ""
        raise CompareError(f"--recipe {recipe}: no {'/'.join(statuses or STATUSES)} runs{hint}")
    return runs


def statuses_counted(status: Sequence[str] | None, explicit_ids: bool) -> tuple[str, ...] | None:
    if not status:
        return None if explicit_ids else DEFAULT_STATUSES
    out: list[str] = []
    for s in status:
        for part in str(s).split(","):
            part = part.strip().lower()
            if part == "all":
                return None
            if part not in STATUSES:
                raise CompareError(f"--status: expected one of {', '.join(STATUSES)} or all; got {part!r}")
            out.append(part)
    return tuple(out)


def points(store: Store, runs: Sequence[Run], at: str | int) -> list[RunPoint]:
    epochs = store.epochs_of(r.id for r in runs)
    out = [RunPoint(r, epochs[r.id], choose_epoch(r, epochs[r.id], at)) for r in runs]
    if at == "original":
        for p in out:
            p.truncated = bool(p.epochs) and replay_original(p.run, p.epochs)[1]
    topk = store.topk_of(r.id for r in runs)
    for p in out:
        if p.point is not None:
            for t in topk[p.run.id]:
                if t.epoch == p.point.epoch:
                    p.topk.update(t.metrics)
            if at == "best" and p.point.epoch == p.run.best_epoch:     # measured there only: at an epoch
                p.strata = stratum_values(p.run.strata_dict)          # N, only the runs selected at N had one
    return out
