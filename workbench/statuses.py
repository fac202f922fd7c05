"""Run statuses (see :mod:`workbench.store`), importable without SQLAlchemy so that
``kni --help`` and other commands that never open the database start fast.

``pruned``: a sweep's pruner stopped the run early (its epochs are kept; it counts like a
completed run at its best epoch, see :mod:`workbench.compare`)."""

QUEUED, RUNNING, COMPLETED, FAILED, CANCELLED, CRASHED, PRUNED = (
    "queued", "running", "completed", "failed", "cancelled", "crashed", "pruned")
STATUSES = (QUEUED, RUNNING, COMPLETED, FAILED, CANCELLED, CRASHED, PRUNED)
LIVE = (QUEUED, RUNNING)
FINAL = (COMPLETED, FAILED, CANCELLED, CRASHED, PRUNED)
