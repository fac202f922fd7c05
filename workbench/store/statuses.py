"""Run statuses, importable without SQLAlchemy so that ``kni --help`` and other commands that
never open the database start fast (docs/storage.md says what each means).

``pruned``: a sweep's pruner stopped the run early (its epochs are kept; it counts like a
completed run at its best epoch, see :mod:`workbench.analysis`)."""

QUEUED, RUNNING, COMPLETED, FAILED, CANCELLED, CRASHED, PRUNED = (
    "queued", "running", "completed", "failed", "cancelled", "crashed", "pruned")
STATUSES = (QUEUED, RUNNING, COMPLETED, FAILED, CANCELLED, CRASHED, PRUNED)
LIVE = (QUEUED, RUNNING)
FINAL = (COMPLETED, FAILED, CANCELLED, CRASHED, PRUNED)
#: What a comparison counts by default: a running run with its best epoch so far (live mean ± std).
COUNTED = (COMPLETED, RUNNING, PRUNED)
