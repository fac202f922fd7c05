"""The plain records the store hands to its callers: a run, an epoch, a top-N result, a sweep.

They are frozen dataclasses built from the rows when read, never ORM objects: nothing a
reader holds can be lazily loaded, expired or written back. This module imports no
SQLAlchemy, so views and commands can name the types without loading it.

A stored value that cannot be read (a date that does not parse) or is out of range (AUC or
accuracy outside [0, 1], a negative or non-finite logloss, loss or duration) is read as None
and described in the record's ``damage``: one bad row never stops a listing, and a bit flip
never enters a mean.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, fields
from datetime import datetime, timezone
from typing import Any, Iterable, Mapping

from .errors import StoreError
from .statuses import CRASHED, LIVE, QUEUED, RUNNING

#: The metrics of an epoch, in the order of the ``epochs`` table and of :class:`EpochResult`.
METRICS = ("train_loss", "valid_auc", "valid_logloss", "valid_acc", "test_auc", "test_logloss", "test_acc")
#: The columns of an epoch row: its metrics and its durations.
METRIC_FIELDS = (*METRICS, "train_seconds", "eval_seconds")
#: The metrics a run keeps of its selected epoch (``runs.best_*``).
BEST_FIELDS = ("valid_auc", "valid_logloss", "valid_acc", "test_auc", "test_logloss", "test_acc")
#: Resource use a run process records about itself (see :mod:`workbench.runs.resources`).
RESOURCE_FIELDS = ("peak_rss_mb", "cpu_threads", "gpu_name", "peak_gpu_mb")
#: Where a run's process executes (``runs.executor``): a child of the launcher, or a Ray task.
EXECUTORS = ("local", "ray")
#: The largest id SQLite (and a PostgreSQL BIGINT) can hold; larger ids name no run.
MAX_ID = 2 ** 63 - 1
#: Longest tag and note accepted.
TAG_MAX, NOTE_MAX = 64, 10_000

_DATES = ("created_at", "started_at", "finished_at", "heartbeat_at", "cancel_requested_at")


def storable(ids: Iterable[int]) -> list[int]:
    """The ids a row can have (SQLite's integers are 64-bit; larger ones would overflow)."""
    return [i for i in ids if -MAX_ID - 1 <= i <= MAX_ID]


class Unreadable(str):
    """A stored value that cannot be read as its column's type (the raw value, as text).

    Only ever seen while a row becomes a record, which turns it into None plus a ``damage`` note."""


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


@dataclass(frozen=True)
class NewRun:
    """What the launcher knows about a run before its process starts."""

    recipe: str
    recipe_text: str
    config_json: str
    config_hash: str
    dataset: str
    model: str
    seed: int
    device: str
    max_epochs: int
    select_on: str
    recipe_path: str | None = None
    package_version: str | None = None
    git_commit: str | None = None
    sweep_id: int | None = None
    sweep_point: int | None = None
    sweep_params: str | None = None           # JSON
    provenance: str | None = None             # JSON: the code part (workbench.runs.provenance)


@dataclass(frozen=True)
class Owner:
    """The run process that claimed a row (:meth:`~.repository.Store.claim`): its pid on its host
    and the time of the claim (``runs.started_at``). Each write of a run process matches the pid
    and that time, so a process that was superseded - ``kni resume`` claimed the row again while it was
    stopped, or its id went to another run after ``kni rm`` - writes nothing more into it."""

    pid: int
    host: str
    started_at: datetime

    def __str__(self) -> str:
        return f"pid {self.pid} on {self.host}, claimed at {_iso(self.started_at)}"


@dataclass(frozen=True)
class AttemptKey:
    """Which attempt of which run a launcher started: the row's creation time (an id reused
    after ``kni rm`` is another run; None when damaged) and the attempt's number (``kni resume``
    starts the next one)."""

    created_at: datetime | None
    number: int


@dataclass(frozen=True)
class Run:
    """One stored run (a recipe's seed), as read; columns are described in docs/storage.md."""

    id: int
    recipe: str = ""
    recipe_path: str | None = None
    recipe_text: str = ""
    config_json: str = "{}"
    config_hash: str = ""
    dataset: str = ""
    model: str = ""
    seed: int = 0
    device: str = ""
    status: str = QUEUED
    pid: int | None = None
    host: str | None = None
    created_at: datetime | None = None        # None only when damaged
    started_at: datetime | None = None
    finished_at: datetime | None = None
    heartbeat_at: datetime | None = None
    max_epochs: int = 0
    select_on: str = "valid"
    stopped_early: bool = False
    best_epoch: int | None = None
    best_valid_auc: float | None = None
    best_valid_logloss: float | None = None
    best_valid_acc: float | None = None
    best_test_auc: float | None = None
    best_test_logloss: float | None = None
    best_test_acc: float | None = None
    error: str | None = None
    traceback: str | None = None
    package_version: str | None = None
    git_commit: str | None = None
    data_stats: str | None = None
    pid_start: str | None = None
    note: str | None = None
    progress: str | None = None
    peak_rss_mb: float | None = None
    cpu_threads: int | None = None
    gpu_name: str | None = None
    peak_gpu_mb: float | None = None
    sweep_id: int | None = None
    sweep_point: int | None = None
    sweep_params: str | None = None
    executor: str | None = None               # None: a row from before executors were recorded
    cancel_requested_at: datetime | None = None
    checkpoint: str | None = None
    strata: str | None = None                 # JSON: AUC by stratum at the selected epoch
    last_state_bytes: int | None = None       # the last-epoch state a resume continues from: its size
    last_state_seconds: float | None = None   # and how long its latest write took
    provenance: str | None = None             # JSON: code, environment, data (workbench.runs.provenance)
    # not columns: filled by the store's queries
    n_epochs: int = 0
    damage: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    group_tags: tuple[str, ...] = ()
    group_note: str | None = None
    earlier_seconds: float = 0.0              # a resumed run: how long its ended attempts ran

    @property
    def config(self) -> dict:
        return json.loads(self.config_json)

    @property
    def params(self) -> dict:
        """The swept keys and this run's point values (empty outside a sweep or when unreadable)."""
        value = _json_or_none(self.sweep_params)
        return value if isinstance(value, dict) else {}

    @property
    def strata_dict(self) -> dict:
        """AUC by stratum at the selected epoch (:mod:`kni_core.strata`); empty when not measured."""
        value = _json_or_none(self.strata)
        return value if isinstance(value, dict) else {}

    def __repr__(self) -> str:
        return f"Run(id={self.id}, recipe={self.recipe!r}, seed={self.seed}, status={self.status!r})"


@dataclass(frozen=True)
class Attempt:
    """One attempt of a run: an earlier one (stored when the run was resumed) or, last in
    :meth:`~.repository.Store.attempts`, the current one read from the run's row."""

    attempt: int
    host: str | None
    pid: int | None
    started_at: datetime | None
    ended_at: datetime | None
    status: str | None
    error: str | None
    epochs: int | None

    @property
    def seconds(self) -> float | None:
        """How long it ran (None without both ends)."""
        if self.started_at is None or self.ended_at is None:
            return None
        return max(0.0, (self.ended_at - self.started_at).total_seconds())

    def to_dict(self) -> dict:
        return {"attempt": self.attempt, "host": self.host, "pid": self.pid, "started_at": _iso(self.started_at),
                "ended_at": _iso(self.ended_at), "status": self.status, "error": self.error, "epochs": self.epochs}


@dataclass(frozen=True)
class Epoch:
    run_id: int
    epoch: int
    train_loss: float | None = None
    valid_auc: float | None = None
    valid_logloss: float | None = None
    valid_acc: float | None = None
    test_auc: float | None = None
    test_logloss: float | None = None
    test_acc: float | None = None
    train_seconds: float | None = None
    eval_seconds: float | None = None
    created_at: datetime | None = None
    damage: tuple[str, ...] = ()

    def __repr__(self) -> str:
        return f"Epoch(run_id={self.run_id}, epoch={self.epoch}, valid_auc={self.valid_auc})"


@dataclass(frozen=True)
class TopK:
    run_id: int
    epoch: int
    protocol: str
    users: int
    seed: int
    n_eval: int
    seconds: float | None
    metrics_json: str
    created_at: datetime | None = None

    @property
    def metrics(self) -> dict[str, float]:
        return json.loads(self.metrics_json)


@dataclass(frozen=True)
class Sweep:
    id: int
    name: str
    recipe_path: str | None
    recipe_text: str
    method: str
    spec: str
    seeds: str
    planned: int
    prune: str | None = None
    created_at: datetime | None = None
    finished_at: datetime | None = None

    @property
    def spec_dict(self) -> dict:
        value = _json_or_none(self.spec)
        return value if isinstance(value, dict) else {}

    @property
    def seed_list(self) -> list[int]:
        value = _json_or_none(self.seeds)
        return [int(s) for s in value] if isinstance(value, list) else []


# --------------------------------------------------------------------------------------------
# rows -> records, with what could not be read


def metric_range(name: str) -> tuple[float, float]:
    """The valid range of a metric column (``test_auc``, ``best_valid_logloss``, ...)."""
    kind = name.rsplit("_", 1)[-1]
    return (0.0, 1.0) if kind in ("auc", "acc") else (0.0, math.inf)


def _checked(values: dict[str, Any], metrics: tuple[str, ...], prefix: str) -> tuple[str, ...]:
    """Unreadable dates and out-of-range metrics of ``values`` set to None; the notes returned."""
    notes: list[str] = []
    for name in _DATES:
        if isinstance(values.get(name), Unreadable):
            notes.append(f"{prefix}{name}: unreadable date {str(values[name])[:40]!r}")
            values[name] = None
    for name in metrics:
        value = values.get(name)
        if value is None:
            continue
        lo, hi = metric_range(name)
        if not isinstance(value, (int, float)) or not (lo <= value <= hi):
            shown = f"{value:.6g}" if isinstance(value, (int, float)) else repr(value)[:40]
            notes.append(f"{prefix}{name}: {shown} is outside [{lo:g}, {hi:g}]")
            values[name] = None
    return tuple(notes)


_RUN_COLUMNS = tuple(f.name for f in fields(Run) if f.name not in
                     ("n_epochs", "damage", "tags", "group_tags", "group_note", "earlier_seconds"))
_EPOCH_COLUMNS = tuple(f.name for f in fields(Epoch) if f.name != "damage")


def run_record(row: Mapping[str, Any], **extra: Any) -> Run:
    """A :class:`Run` from a row's column values (and the fields that are not columns)."""
    values = {c: row[c] for c in _RUN_COLUMNS}
    values["stopped_early"] = bool(values["stopped_early"])
    damage = _checked(values, tuple(f"best_{f}" for f in BEST_FIELDS), "")
    return Run(**values, damage=damage, **extra)


def epoch_record(row: Mapping[str, Any]) -> Epoch:
    values = {c: row[c] for c in _EPOCH_COLUMNS}
    damage = _checked(values, METRIC_FIELDS, f"epoch {values['epoch']} ")
    return Epoch(**values, damage=damage)


# --------------------------------------------------------------------------------------------
# targets of the user's annotations


def run_target(run_id: int) -> str:
    """The ``tags.target`` of a run."""
    return f"run:{int(run_id)}"


def group_target(config_hash: str) -> str:
    """The ``tags.target`` / ``notes.target`` of a group of seeds (its full config hash)."""
    return f"group:{config_hash}"


def check_tag(tag: str) -> str:
    """A tag as stored: one word of printable characters (no spaces or commas), at most
    :data:`TAG_MAX` long; StoreError otherwise."""
    t = str(tag).strip()
    if not t or len(t) > TAG_MAX or any(c.isspace() or c == "," for c in t) or not t.isprintable():
        raise StoreError(f"tag {tag!r}: expected one word of 1-{TAG_MAX} printable characters "
                         "without spaces or commas")
    return t


# --------------------------------------------------------------------------------------------
# the JSON and CSV views


def _iso(dt: datetime | None) -> str | None:
    return dt.isoformat(timespec="seconds") if dt is not None else None


def _json_or_none(text: str | None) -> Any:
    try:
        return json.loads(text) if text else None
    except ValueError:
        return None


def stopped_at(run: Run) -> datetime | None:
    """When the run's process stopped: its end, or when crashed its last sign of life (its
    ``finished_at`` is when the crash was noticed, maybe hours later); None while live."""
    if run.status == CRASHED:
        return run.heartbeat_at or run.finished_at
    return run.finished_at or (run.heartbeat_at if run.status not in LIVE else None)


def run_seconds(run: Run, now: datetime | None = None) -> float | None:
    """How long the run has run, every attempt of a resumed one counted: to its end, to now
    (``now``, default the clock) while live, to its last sign of life when crashed."""
    if run.started_at is None:
        return round(run.earlier_seconds, 3) if run.earlier_seconds else None
    end = stopped_at(run) if run.status not in LIVE else (now or utcnow())
    if end is None:
        return None
    return round(run.earlier_seconds + max(0.0, (end - run.started_at).total_seconds()), 3)


def run_to_dict(run: Run, status: str | None = None) -> dict:
    """The JSON/CSV view of a run (metrics at its best epoch); ``status`` overrides the stored one."""
    return {
        "id": run.id, "recipe": run.recipe, "dataset": run.dataset, "model": run.model, "seed": run.seed,
        "status": status or run.status, "epochs": run.n_epochs, "max_epochs": run.max_epochs,
        "pid": run.pid, "host": run.host, "executor": run.executor, "device": run.device,
        "config_hash": run.config_hash,
        "select_on": run.select_on, "best_epoch": run.best_epoch,
        **{f: getattr(run, f"best_{f}") for f in BEST_FIELDS},
        "stopped_early": bool(run.stopped_early),
        "created_at": _iso(run.created_at), "started_at": _iso(run.started_at),
        "finished_at": _iso(run.finished_at), "heartbeat_at": _iso(run.heartbeat_at),
        "seconds": run_seconds(run), "error": run.error, "recipe_path": run.recipe_path,
        "package_version": run.package_version, "git_commit": run.git_commit,
        "damaged": list(run.damage),
        "tags": list(run.tags), "note": run.note, "group_tags": list(run.group_tags), "group_note": run.group_note,
        "progress": _json_or_none(run.progress) if (status or run.status) == RUNNING else None,
        **{f: getattr(run, f) for f in RESOURCE_FIELDS},
        "sweep_id": run.sweep_id, "sweep_point": run.sweep_point, "sweep_params": run.params or None,
        "checkpoint": run.checkpoint,
        "last_state_bytes": run.last_state_bytes, "last_state_seconds": run.last_state_seconds,
        "provenance": _json_or_none(run.provenance),
    }


def epoch_to_dict(e: Epoch) -> dict:
    return {"epoch": e.epoch, **{f: getattr(e, f) for f in METRIC_FIELDS}}


def topk_to_dict(t: TopK) -> dict:
    return {"epoch": t.epoch, "protocol": t.protocol, "users": t.users, "seed": t.seed, "n_eval": t.n_eval,
            "seconds": t.seconds, "metrics": t.metrics}


def sweep_to_dict(sweep: Sweep) -> dict:
    return {"id": sweep.id, "name": sweep.name, "method": sweep.method, "planned": sweep.planned,
            "seeds": sweep.seed_list, "prune": sweep.prune, "spec": sweep.spec_dict,
            "created_at": _iso(sweep.created_at), "finished_at": _iso(sweep.finished_at),
            "recipe_path": sweep.recipe_path}
