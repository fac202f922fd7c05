"""What ``kni resume --sweep`` does with a sweep: which of its runs resume, whether its search
goes on, and when the sweep is whole again (its driver would then have ended it)."""

from __future__ import annotations

from dataclasses import dataclass

from ..runs.resume import ResumeRefused
from ..store.attempts import RESUMABLE
from ..store.liveness import effective_status
from ..store.records import Run, Sweep
from ..store.repository import Store
from ..store.statuses import COMPLETED, LIVE


@dataclass(frozen=True)
class SweepResume:
    """A sweep to resume: its stopped runs (resumed first, each as ``kni resume RUN``) and, for
    a TPE sweep, whether its search goes on after them (:meth:`SweepDriver.continuing`)."""

    sweep: Sweep
    stopped: list[int]
    searches: bool
    note: str = ""


def sweep_resume(store: Store, sweep_id: int) -> SweepResume:
    """How sweep ``sweep_id`` resumes, or ResumeRefused saying why (nothing changed). A grid or
    random sweep queued every run when it started: its crashed, cancelled and failed runs
    (queued rows a Ctrl-C cancelled before they started included) are exactly the runs it lacks.
    A TPE sweep asks its points as results arrive: once its stopped runs have ended, its search
    replays the stored results and asks the points it never asked. Either then runs its
    ``rerun:`` seeds when its driver was stopped before them."""
    sweep = store.get_sweep(sweep_id)
    runs = store.runs(sweep=sweep_id)
    stopped = [r.id for r in runs if effective_status(r) in RESUMABLE]
    if sweep.method != "tpe":
        reruns = bool(rerun_seeds(sweep))
        if not stopped and not rerun_missing(sweep, runs):
            raise ResumeRefused(f"sweep {sweep_id} ({sweep.name}): no crashed, cancelled or failed run"
                                + (", and its best point ran its rerun: seeds" if reruns else "")
                                + "; nothing to resume")
        return SweepResume(sweep, stopped, reruns,
                           f"sweep {sweep_id}: {len(stopped)} stopped run(s) resume, then the best point on "
                           "validation runs the rerun: seeds it has not run" if reruns else "")
    facts = _search_facts(store, sweep_id)
    if not facts:
        if not stopped:
            raise ResumeRefused(f"sweep {sweep_id} ({sweep.name}): no crashed, cancelled or failed run, and it was "
                                "started before sweeps kept what going on with their search needs; nothing to resume")
        asked = len({r.sweep_point for r in runs})
        return SweepResume(sweep, stopped, False,
                           f"sweep {sweep_id} is a TPE sweep started before sweeps kept what replaying their search "
                           f"needs: its {len(stopped)} stopped run(s) resume; the {max(0, sweep.planned - asked)} "
                           "point(s) it never asked are not started")
    live = [r for r in runs if effective_status(r) in LIVE]
    if live:
        r = live[0]
        where = f" (pid {r.pid} on {r.host})" if r.pid else ""
        raise ResumeRefused(f"sweep {sweep_id} ({sweep.name}): run {r.id} is {r.status}{where}, so its driver may "
                            "still be asking; nothing resumed (kni cancel stops its runs)")
    invalid = store.invalid_points(sweep_id)
    if not stopped and whole(sweep, runs, invalid):
        raise ResumeRefused(f"sweep {sweep_id} ({sweep.name}): every point it was to ask ran, and no run stopped; "
                            "nothing to resume")
    asked = len({r.sweep_point for r in runs} | invalid)
    return SweepResume(sweep, stopped, True,
                       f"sweep {sweep_id} is a TPE sweep: {len(stopped)} stopped run(s) resume, then its search "
                       f"replays the {asked} point(s) it asked and asks the {max(0, sweep.planned - asked)} it never "
                       "asked, as it would have (then its rerun: seeds, if any)")


def _search_facts(store: Store, sweep_id: int) -> dict:
    from ..recipe.sweep import require_optuna
    require_optuna("resuming a tpe sweep")
    from .search import search_facts
    return search_facts(store, sweep_id)


def whole(sweep: Sweep, runs: list[Run], invalid: set[int] = frozenset()) -> bool:
    """Whether the sweep has every run its driver would have made, each ended: every planned
    point asked (``invalid``: points asked that the recipe refused, without runs) and, with
    ``rerun:``, one point run over all the rerun seeds."""
    if not runs or any(effective_status(r) in LIVE + RESUMABLE for r in runs):
        return False
    points: dict[int, set] = {}
    for r in runs:
        points.setdefault(r.sweep_point, set()).add(r.seed)
    if len(set(points) | set(invalid)) < sweep.planned:
        return False
    rerun = rerun_seeds(sweep)
    return not rerun or any(rerun <= seeds for seeds in points.values())


def rerun_seeds(sweep: Sweep) -> set[int]:
    """The seeds of the sweep's ``rerun:`` section that its search did not run."""
    rerun = set(((sweep.spec_dict or {}).get("rerun") or {}).get("seeds") or ())
    return rerun - set(sweep.seed_list)


def rerun_missing(sweep: Sweep, runs: list[Run]) -> bool:
    """Whether the sweep's ``rerun:`` seeds are still to run: no point holds them all, and some
    point has a completed run of every search seed (the driver's rule for the point to rerun;
    without one it reruns nothing). A stop in its last search run skipped them."""
    rerun = rerun_seeds(sweep)
    if not rerun:
        return False
    points: dict[int, dict[int, Run]] = {}
    for r in runs:
        points.setdefault(r.sweep_point, {})[r.seed] = r
    if any(rerun <= set(by_seed) for by_seed in points.values()):
        return False
    search = set(sweep.seed_list)
    return any(search <= set(by_seed) and all(by_seed[s].status == COMPLETED for s in search)
               for by_seed in points.values())


def finish_if_whole(store: Store, sweep_id: int) -> bool:
    """Mark the sweep ended once resuming left it :func:`whole` (its driver, killed, could not);
    whether it did."""
    sweep = store.get_sweep(sweep_id)
    if sweep.finished_at is not None or not whole(sweep, store.runs(sweep=sweep_id), store.invalid_points(sweep_id)):
        return False
    store.finish_sweep(sweep_id)
    return True
