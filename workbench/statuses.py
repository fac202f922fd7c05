"""Run statuses (see :mod:`workbench.store`), importable without SQLAlchemy so that
``kni --help`` and other commands that never open the database start fast."""

QUEUED, RUNNING, COMPLETED, FAILED, CANCELLED, CRASHED = (
    "queued", "running", "completed", "failed", "cancelled", "crashed")
STATUSES = (QUEUED, RUNNING, COMPLETED, FAILED, CANCELLED, CRASHED)
LIVE = (QUEUED, RUNNING)
FINAL = (COMPLETED, FAILED, CANCELLED, CRASHED)
