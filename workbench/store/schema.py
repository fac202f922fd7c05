"""The tables of the run database as SQLAlchemy ORM classes: the current layout.

Only the store's repository and its migrations use them; everything it hands out is a plain
record (:mod:`.records`). The migrations build the same tables from frozen Core definitions
(:mod:`.migrations`), so fresh and upgraded databases are identical by construction.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

from .records import Unreadable


class UTCDateTime(TypeDecorator):
    """Timezone-aware UTC datetimes, stored naive (SQLite has no time zones).

    SQLite keeps them as text (``YYYY-MM-DD HH:MM:SS.ffffff``, the format SQLAlchemy's
    DateTime writes); they are read as text and parsed here, so one unparseable value makes
    its row damaged instead of failing the whole query."""

    impl = DateTime
    cache_ok = True

    def load_dialect_impl(self, dialect: Any) -> Any:
        return dialect.type_descriptor(String() if dialect.name == "sqlite" else DateTime())

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | str | None:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        value = value.astimezone(timezone.utc).replace(tzinfo=None)
        return value.isoformat(sep=" ", timespec="microseconds") if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Any) -> datetime | Unreadable | None:
        if value is None:
            return None
        if isinstance(value, str):
            try:
                value = datetime.fromisoformat(value.strip())
            except ValueError:
                return Unreadable(value)
        if not isinstance(value, datetime):
            return Unreadable(repr(value))
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)


class Base(DeclarativeBase):
    pass


class Meta(Base):
    __tablename__ = "meta"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class RunRow(Base):
    __tablename__ = "runs"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True,
                                    autoincrement=True)
    recipe: Mapped[str] = mapped_column(String(200), index=True)
    recipe_path: Mapped[str | None] = mapped_column(Text)
    recipe_text: Mapped[str] = mapped_column(Text)
    config_json: Mapped[str] = mapped_column(Text)
    config_hash: Mapped[str] = mapped_column(String(64), index=True)
    dataset: Mapped[str] = mapped_column(String(200), index=True)
    model: Mapped[str] = mapped_column(String(50))
    seed: Mapped[int] = mapped_column(Integer)
    device: Mapped[str] = mapped_column(String(100))
    status: Mapped[str] = mapped_column(String(20), index=True)
    pid: Mapped[int | None] = mapped_column(Integer)
    host: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime | None] = mapped_column(UTCDateTime)   # None only when damaged
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    max_epochs: Mapped[int] = mapped_column(Integer)
    select_on: Mapped[str] = mapped_column(String(10))
    stopped_early: Mapped[bool] = mapped_column(Boolean, default=False)
    best_epoch: Mapped[int | None] = mapped_column(Integer)
    best_valid_auc: Mapped[float | None] = mapped_column(Float)
    best_valid_logloss: Mapped[float | None] = mapped_column(Float)
    best_valid_acc: Mapped[float | None] = mapped_column(Float)
    best_test_auc: Mapped[float | None] = mapped_column(Float)
    best_test_logloss: Mapped[float | None] = mapped_column(Float)
    best_test_acc: Mapped[float | None] = mapped_column(Float)
    error: Mapped[str | None] = mapped_column(Text)
    traceback: Mapped[str | None] = mapped_column(Text)
    # schema version 2
    package_version: Mapped[str | None] = mapped_column(String(64))
    git_commit: Mapped[str | None] = mapped_column(String(64))
    data_stats: Mapped[str | None] = mapped_column(Text)
    # schema version 3
    pid_start: Mapped[str | None] = mapped_column(String(80))
    # schema version 5
    note: Mapped[str | None] = mapped_column(Text)
    progress: Mapped[str | None] = mapped_column(Text)
    peak_rss_mb: Mapped[float | None] = mapped_column(Float)
    cpu_threads: Mapped[int | None] = mapped_column(Integer)
    gpu_name: Mapped[str | None] = mapped_column(String(200))
    peak_gpu_mb: Mapped[float | None] = mapped_column(Float)
    # schema version 6: sweeps
    sweep_id: Mapped[int | None] = mapped_column(Integer, index=True)
    sweep_point: Mapped[int | None] = mapped_column(Integer)
    sweep_params: Mapped[str | None] = mapped_column(Text)
    # schema version 7
    executor: Mapped[str | None] = mapped_column(String(20))            # None: a row from before it
    cancel_requested_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # schema version 8: the selected epoch's saved model (workbench.runs.checkpoints resolves it)
    checkpoint: Mapped[str | None] = mapped_column(Text)
    # schema version 9: AUC by user / item stratum at the selected epoch (JSON)
    strata: Mapped[str | None] = mapped_column(Text)
    # schema version 10: the last-epoch state a resume continues from (its latest write)
    last_state_bytes: Mapped[int | None] = mapped_column(BigInteger)
    last_state_seconds: Mapped[float | None] = mapped_column(Float)
    # schema version 11: the code, environment and data that gave the run's numbers (JSON)
    provenance: Mapped[str | None] = mapped_column(Text)



class EpochRow(Base):
    __tablename__ = "epochs"

    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    epoch: Mapped[int] = mapped_column(Integer, primary_key=True)
    train_loss: Mapped[float | None] = mapped_column(Float)
    valid_auc: Mapped[float | None] = mapped_column(Float)
    valid_logloss: Mapped[float | None] = mapped_column(Float)
    valid_acc: Mapped[float | None] = mapped_column(Float)
    test_auc: Mapped[float | None] = mapped_column(Float)
    test_logloss: Mapped[float | None] = mapped_column(Float)
    test_acc: Mapped[float | None] = mapped_column(Float)
    train_seconds: Mapped[float | None] = mapped_column(Float)
    eval_seconds: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class TopKRow(Base):
    __tablename__ = "topk"

    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    epoch: Mapped[int] = mapped_column(Integer, primary_key=True)
    protocol: Mapped[str] = mapped_column(String(20), primary_key=True)
    users: Mapped[int] = mapped_column(Integer)
    seed: Mapped[int] = mapped_column(Integer)
    n_eval: Mapped[int] = mapped_column(Integer)
    seconds: Mapped[float | None] = mapped_column(Float)
    metrics_json: Mapped[str] = mapped_column("metrics", Text)
    created_at: Mapped[datetime | None] = mapped_column(UTCDateTime)



class AttemptRow(Base):
    """An earlier attempt of a resumed run (the current one is the run's row itself)."""

    __tablename__ = "attempts"

    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    attempt: Mapped[int] = mapped_column(Integer, primary_key=True)
    host: Mapped[str | None] = mapped_column(Text)
    pid: Mapped[int | None] = mapped_column(Integer)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    status: Mapped[str | None] = mapped_column(String(20))
    error: Mapped[str | None] = mapped_column(Text)
    epochs: Mapped[int | None] = mapped_column(Integer)


class SweepRow(Base):
    __tablename__ = "sweeps"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(200), index=True)
    recipe_path: Mapped[str | None] = mapped_column(Text)
    recipe_text: Mapped[str] = mapped_column(Text)
    method: Mapped[str] = mapped_column(String(40))
    spec: Mapped[str] = mapped_column(Text)
    seeds: Mapped[str] = mapped_column(Text)
    planned: Mapped[int] = mapped_column(Integer)
    prune: Mapped[str | None] = mapped_column(String(40))
    created_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)



class FloorRow(Base):
    """The popularity floor of one split (:mod:`kni_core.floor`): its metrics as JSON."""

    __tablename__ = "floors"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    dataset: Mapped[str] = mapped_column(Text)
    metrics_json: Mapped[str] = mapped_column("metrics", Text)
    created_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class SweepLog(Base):
    """One operation of Optuna's journal of a sweep's studies (see :mod:`workbench.store.journal`)."""

    __tablename__ = "sweep_journal"

    sweep_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    log: Mapped[str] = mapped_column(Text)


class TagRow(Base):
    __tablename__ = "tags"

    target: Mapped[str] = mapped_column(String(100), primary_key=True)
    tag: Mapped[str] = mapped_column(String(64), primary_key=True, index=True)
    created_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class NoteRow(Base):
    __tablename__ = "notes"

    target: Mapped[str] = mapped_column(String(100), primary_key=True)
    text: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
