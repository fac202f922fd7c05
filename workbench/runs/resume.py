"""Which stopped runs can continue, and from where (``kni resume`` and the workbench's ``R``)."""

from __future__ import annotations

from typing import Any

from kni_core.errors import KniError

from ..store.statuses import LIVE


class ResumeRefused(KniError):
    """A run that cannot be resumed (nothing is changed)."""


def plan(store: Any, run_id: int, restart: bool = False) -> tuple:
    """``(run, epoch it continues after, its selected epoch)``, or ResumeRefused saying why.
    With ``restart``, a run whose last-epoch state is missing or unusable (one stored before
    states were written, or whose write failed) trains again from epoch 1 instead of being
    refused."""
    from kni_core import resume
    from kni_core.config import RunConfig

    from ..store.attempts import RESUMABLE
    from ..store.repository import Store
    from .checkpoints import last_state_path, run_identity
    run = store.get(run_id)
    status = Store.effective_status(run)
    if status in LIVE:
        raise ResumeRefused(f"run {run_id} is {status} (pid {run.pid} on {run.host}): it has not stopped; "
                            f"nothing resumed (kni cancel {run_id} stops it)")
    if status not in RESUMABLE:
        raise ResumeRefused(f"run {run_id} is {status}: only a crashed, cancelled or failed run resumes; nothing "
                            "resumed")
    if not run.n_epochs:
        return run, 0, None
    path = last_state_path(store.url, run.id)
    cfg = RunConfig.from_dict(run.config).validate()
    try:
        state = resume.read(path, config=cfg.to_dict(), identity=run_identity(run))
    except KniError as e:
        if restart:
            return run, 0, None
        raise ResumeRefused(f"run {run_id}: cannot resume: {e}; nothing resumed (--restart trains it again "
                            "from epoch 1)") from None
    if state["epoch"] > run.n_epochs:
        raise ResumeRefused(f"run {run_id}: its last-epoch state holds epoch {state['epoch']} but the run stores "
                            f"{run.n_epochs}; nothing resumed")
    return run, int(state["epoch"]), resume.selected(state)


def sweep_runs(store: Any, sweep_id: int) -> tuple[list[int], str]:
    """The runs of a sweep to resume (every crashed, cancelled or failed one, queued rows that
    were cancelled before they started included) and what resuming it cannot do. A grid or
    random sweep queued every run when it started, so these are exactly the runs it lacks. A
    TPE sweep asks for its points as results arrive: the points it never asked are not started."""
    from ..store.attempts import RESUMABLE
    from ..store.repository import Store
    sweep = store.get_sweep(sweep_id)
    runs = store.runs(sweep=sweep_id)
    stopped = [r.id for r in runs if Store.effective_status(r) in RESUMABLE]
    if not stopped:
        raise ResumeRefused(f"sweep {sweep_id} ({sweep.name}): no crashed, cancelled or failed run; nothing to "
                            "resume")
    note = ""
    if sweep.method == "tpe":
        asked = len({r.sweep_point for r in runs})
        note = (f"sweep {sweep_id} is a TPE sweep: its {len(stopped)} stopped run(s) resume; the "
                f"{max(0, sweep.planned - asked)} point(s) it never asked are not started (and a rerun: section "
                "waits for the search)")
    return stopped, note
