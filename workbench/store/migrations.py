"""Schema versions: the layout is upgraded in place by the hand-written steps of :data:`MIGRATIONS`.

The version is the integer ``meta.schema_version``. A writer that opens an older layout runs
the missing steps in one transaction with the version bump (an interrupted upgrade leaves
the old version intact); a fresh database runs the same list from version 1, so fresh and
upgraded databases are identical by construction. Each step is frozen at the layout of its
time (Core definitions, never the ORM classes). A database written by a newer release is
refused untouched. A read-only reader of an older SQLite layout reads it through temporary
views instead (:func:`shadow_old_layout`). Why not Alembic: docs/storage.md.
"""

from __future__ import annotations

from typing import Any, Callable

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    event,
    inspect,
    text,
)
from sqlalchemy.engine import Connection, Engine

from .errors import StoreError
from .records import METRIC_FIELDS
from .schema import Base


def _add_column(conn: Connection, table: str, column: Column) -> None:
    kind = column.type.compile(dialect=conn.dialect)
    conn.execute(text(f'ALTER TABLE {table} ADD COLUMN {column.name} {kind}'))


def _migrate_1(conn: Connection) -> None:
    """The first layout: meta, runs and epochs."""
    md = MetaData()
    Table("meta", md, Column("key", String(64), primary_key=True), Column("value", Text, nullable=False))
    Table("runs", md,
          Column("id", Integer, primary_key=True, autoincrement=True),
          Column("recipe", String(200), nullable=False, index=True),
          Column("recipe_path", Text),
          Column("recipe_text", Text, nullable=False),
          Column("config_json", Text, nullable=False),
          Column("config_hash", String(64), nullable=False, index=True),
          Column("dataset", String(200), nullable=False, index=True),
          Column("model", String(50), nullable=False),
          Column("seed", Integer, nullable=False),
          Column("device", String(100), nullable=False),
          Column("status", String(20), nullable=False, index=True),
          Column("pid", Integer),
          Column("host", String(255)),
          Column("created_at", DateTime, nullable=False),
          Column("started_at", DateTime),
          Column("finished_at", DateTime),
          Column("heartbeat_at", DateTime),
          Column("max_epochs", Integer, nullable=False),
          Column("select_on", String(10), nullable=False),
          Column("stopped_early", Boolean, nullable=False),
          *[Column(name, Integer if name == "best_epoch" else Float) for name in
            ("best_epoch", "best_valid_auc", "best_valid_logloss", "best_valid_acc",
             "best_test_auc", "best_test_logloss", "best_test_acc")],
          Column("error", Text),
          Column("traceback", Text))
    Table("epochs", md,
          Column("run_id", Integer, ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True),
          Column("epoch", Integer, primary_key=True),
          *[Column(name, Float) for name in METRIC_FIELDS],
          Column("created_at", DateTime))
    md.create_all(conn)


def _migrate_2(conn: Connection) -> None:
    """Provenance: the package version, the git commit and the prepared data's statistics."""
    _add_column(conn, "runs", Column("package_version", String(64)))
    _add_column(conn, "runs", Column("git_commit", String(64)))
    _add_column(conn, "runs", Column("data_stats", Text))


def _migrate_3(conn: Connection) -> None:
    """The start of the process that owns a row, beside its pid (pids are reused)."""
    _add_column(conn, "runs", Column("pid_start", String(80)))


def _migrate_4(conn: Connection) -> None:
    """Top-N results (issue 10): one row per run, epoch and protocol, metrics as JSON."""
    md = MetaData()
    Table("runs", md, Column("id", Integer, primary_key=True))          # for the foreign key only
    Table("topk", md,
          Column("run_id", Integer, ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True),
          Column("epoch", Integer, primary_key=True),
          Column("protocol", String(20), primary_key=True),
          Column("users", Integer, nullable=False),
          Column("seed", Integer, nullable=False),
          Column("n_eval", Integer, nullable=False),
          Column("seconds", Float),
          Column("metrics", Text, nullable=False),
          Column("created_at", DateTime))
    md.tables["topk"].create(conn)


def _migrate_5(conn: Connection) -> None:
    """User annotations (a run's note, tags on runs and groups, notes on groups), the run
    process's progress inside an epoch and its resource use."""
    _add_column(conn, "runs", Column("note", Text))
    _add_column(conn, "runs", Column("progress", Text))
    _add_column(conn, "runs", Column("peak_rss_mb", Float))
    _add_column(conn, "runs", Column("cpu_threads", Integer))
    _add_column(conn, "runs", Column("gpu_name", String(200)))
    _add_column(conn, "runs", Column("peak_gpu_mb", Float))
    md = MetaData()
    Table("tags", md,
          Column("target", String(100), primary_key=True),
          Column("tag", String(64), primary_key=True, index=True),
          Column("created_at", DateTime))
    Table("notes", md,
          Column("target", String(100), primary_key=True),
          Column("text", Text, nullable=False),
          Column("updated_at", DateTime))
    md.create_all(conn)


def _migrate_6(conn: Connection) -> None:
    """Sweeps (issue 9): the sweeps table, each run's sweep and point, and the journal of the
    sweeps' Optuna studies. The ``pruned`` status needs no change (statuses are text)."""
    _add_column(conn, "runs", Column("sweep_id", Integer))
    _add_column(conn, "runs", Column("sweep_point", Integer))
    _add_column(conn, "runs", Column("sweep_params", Text))
    conn.execute(text("CREATE INDEX ix_runs_sweep_id ON runs (sweep_id)"))
    md = MetaData()
    Table("sweeps", md,
          Column("id", Integer, primary_key=True, autoincrement=True),
          Column("name", String(200), nullable=False, index=True),
          Column("recipe_path", Text),
          Column("recipe_text", Text, nullable=False),
          Column("method", String(40), nullable=False),
          Column("spec", Text, nullable=False),
          Column("seeds", Text, nullable=False),
          Column("planned", Integer, nullable=False),
          Column("prune", String(40)),
          Column("created_at", DateTime),
          Column("finished_at", DateTime))
    Table("sweep_journal", md,
          Column("sweep_id", Integer, primary_key=True, autoincrement=False),
          Column("seq", Integer, primary_key=True, autoincrement=False),
          Column("log", Text, nullable=False))
    md.create_all(conn)


def _migrate_7(conn: Connection) -> None:
    """Runs beyond one machine: the executor of each run and a cancel request that travels
    through the row. On PostgreSQL also what SQLite gives implicitly: 64-bit ids (SQLite's
    INTEGER is 64-bit, a SERIAL is not) and unbounded text where a user's value lands (a long
    recipe name, dataset folder, hostname or CUDA_VISIBLE_DEVICES list; SQLite ignores the
    VARCHAR lengths, PostgreSQL would refuse the row)."""
    _add_column(conn, "runs", Column("executor", String(20)))
    _add_column(conn, "runs", Column("cancel_requested_at", DateTime))
    if conn.dialect.name == "postgresql":
        for table in ("epochs", "topk"):            # the columns that reference runs.id first
            conn.execute(text(f"ALTER TABLE {table} ALTER COLUMN run_id TYPE BIGINT"))
        conn.execute(text("ALTER TABLE runs ALTER COLUMN id TYPE BIGINT"))
        conn.execute(text("ALTER SEQUENCE IF EXISTS runs_id_seq AS BIGINT"))
        for column in ("recipe", "dataset", "device", "host"):
            conn.execute(text(f"ALTER TABLE runs ALTER COLUMN {column} TYPE TEXT"))
        conn.execute(text("ALTER TABLE sweeps ALTER COLUMN name TYPE TEXT"))


def _migrate_8(conn: Connection) -> None:
    """The saved model of a run (issue 11): its file, relative to the database's folder when it
    lies beside a SQLite file (so a database moved with its checkpoints still finds them)."""
    _add_column(conn, "runs", Column("checkpoint", Text))


def _migrate_9(conn: Connection) -> None:
    """Honest comparisons (issue 16): the popularity floor of each split, and a run's AUC by
    user degree and item popularity stratum at its selected epoch (JSON)."""
    _add_column(conn, "runs", Column("strata", Text))
    md = MetaData()
    Table("floors", md,
          Column("key", String(64), primary_key=True),
          Column("dataset", Text, nullable=False),
          Column("metrics", Text, nullable=False),
          Column("created_at", DateTime))
    md.create_all(conn)


def _migrate_10(conn: Connection) -> None:
    """No training lost (issue 18): each earlier attempt of a resumed run, and the size and
    write time of a run's last-epoch state."""
    _add_column(conn, "runs", Column("last_state_bytes", BigInteger))
    _add_column(conn, "runs", Column("last_state_seconds", Float))
    md = MetaData()
    Table("runs", md, Column("id", BigInteger, primary_key=True))        # the foreign key's target
    Table("attempts", md,
          Column("run_id", BigInteger, ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True,
                 autoincrement=False),
          Column("attempt", Integer, primary_key=True, autoincrement=False),
          Column("host", Text), Column("pid", Integer),
          Column("started_at", DateTime), Column("ended_at", DateTime),
          Column("status", String(20)), Column("error", Text), Column("epochs", Integer))
    md.tables["attempts"].create(conn)


def _migrate_11(conn: Connection) -> None:
    """Provenance a reader can check (issue 19): the working tree's state and diff digest, the
    Python / torch / CUDA versions, the data files' digests and the prepared cache key."""
    _add_column(conn, "runs", Column("provenance", Text))


#: (version reached, what it does, the step). Append only; never edit a released step.
MIGRATIONS: list[tuple[int, str, Callable[[Connection], None]]] = [
    (1, "first layout: meta, runs, epochs", _migrate_1),
    (2, "runs.package_version, runs.git_commit, runs.data_stats", _migrate_2),
    (3, "runs.pid_start", _migrate_3),
    (4, "topk: top-N results per run, epoch and protocol", _migrate_4),
    (5, "runs.note/progress/peak_rss_mb/cpu_threads/gpu_name/peak_gpu_mb, tables tags and notes", _migrate_5),
    (6, "sweeps: tables sweeps and sweep_journal, runs.sweep_id/sweep_point/sweep_params", _migrate_6),
    (7, "runs.executor, runs.cancel_requested_at; PostgreSQL: BIGINT ids, TEXT names", _migrate_7),
    (8, "runs.checkpoint", _migrate_8),
    (9, "floors: the popularity floor of each split; runs.strata", _migrate_9),
    (10, "attempts: the earlier attempts of resumed runs; runs.last_state_bytes/seconds", _migrate_10),
    (11, "runs.provenance: code, environment and data digests", _migrate_11),
]
SCHEMA_VERSION = MIGRATIONS[-1][0]


def read_version(conn: Connection, where: str) -> int:
    """The stored schema version; 0 for an empty database. StoreError for a database that
    holds other tables but is not a run database."""
    names = set(inspect(conn).get_table_names())
    if "meta" not in names:
        if names:
            raise StoreError(f"{where}: a database, but not a kni run database "
                             f"(it has tables {', '.join(sorted(names)[:5])}); give --db another file")
        return 0
    row = conn.execute(text("SELECT value FROM meta WHERE key = 'schema_version'")).fetchone()
    if row is None:
        raise StoreError(f"{where}: not a kni run database (no schema version)")
    try:
        return int(row[0])
    except ValueError:
        raise StoreError(f"{where}: unreadable schema version {row[0]!r}") from None



def shadow_old_layout(engine: Engine) -> None:
    """Read an older layout as the current one without migrating it: on every connection,
    temporary views named like the tables (they take precedence over ``main``) add each
    column introduced since as NULL, and stand for each table introduced since as an empty one.
    Nothing is written to the database file."""
    with engine.connect() as conn:
        names = set(inspect(conn).get_table_names())
        have = {t: {c["name"] for c in inspect(conn).get_columns(t)} for t in names}
        conn.rollback()
    views = []
    for table in Base.metadata.sorted_tables:
        cols = [c.name for c in table.columns]
        present = have.get(table.name, set())
        if table.name == "meta" or set(cols) <= present:
            continue
        select_list = ", ".join(f'main.{table.name}."{c}"' if c in present else f'NULL AS "{c}"' for c in cols)
        source = f"FROM main.{table.name}" if present else "WHERE 0"       # a table added since: empty
        views.append(f"CREATE TEMP VIEW {table.name} AS SELECT {select_list} {source}")

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, record: Any) -> None:
        for sql in views:
            dbapi_conn.execute(sql)

    engine.dispose()                            # pooled connections predate the views



#: PostgreSQL advisory lock key held while a writer upgrades the layout ("kni" in ASCII).
MIGRATION_LOCK = 0x6B6E69


def upgrade(writer: Engine, where: str) -> None:
    """Run the missing steps and set the version, in one transaction, under the write lock."""
    with writer.begin() as conn:                   # one transaction: the steps and the version
        if conn.dialect.name == "postgresql":      # SQLite's BEGIN IMMEDIATE serialises writers
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
        version = read_version(conn, where)        # re-read under the write lock
        if version > SCHEMA_VERSION:
            raise StoreError(f"{where}: written by a newer kni-workbench (schema version "
                             f"{version}; this one reads up to {SCHEMA_VERSION})")
        for target, _what, step in MIGRATIONS:
            if target > version:
                step(conn)
        conn.execute(text("DELETE FROM meta WHERE key = 'schema_version'"))
        conn.execute(text("INSERT INTO meta (key, value) VALUES ('schema_version', :v)"),
                     {"v": str(SCHEMA_VERSION)})
