"""Shared fixtures. Real datasets are located as users locate them (KNI_DATA_DIR, then
../shared/data); with ``CI`` set, a missing dataset fails the test instead of skipping it."""

from __future__ import annotations

import os
from pathlib import Path

#: One torch / OpenMP thread per process unless the shell says otherwise: the suite runs in two
#: workers (``-n 2``) on two cores, and two runs of two spinning threads each would fight over
#: them. Set before anything imports torch, and inherited by every run process a test starts.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402

from kni_core.data.registry import locate  # noqa: E402
from kni_core.errors import DataError  # noqa: E402

#: Settings of the user's shell that would reach into the tests (their database, a cluster, a
#: crash threshold); KNI_DATA_DIR stays: it is where the real datasets are found.
USER_SETTINGS = ("KNI_DB", "KNI_STALE_SECONDS", "KNI_DB_TIMEOUT", "KNI_DB_PATIENCE", "KNI_CHECKPOINT_DIR",
                 "RAY_ADDRESS")


@pytest.fixture(autouse=True)
def _env(tmp_path_factory, monkeypatch):
    """Tests never touch the user's cache or database: one cache per session (so real-data
    reruns are cheap) and none of the user's settings."""
    monkeypatch.setenv("KNI_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "kni-cache"))
    for name in USER_SETTINGS:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture()
def in_tmp_path(tmp_path, monkeypatch):
    """The test runs in its own folder (the workbench shows runs.db and recipes/ relative to it)."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture()
def real_dataset():
    """``real_dataset(name)`` -> the dataset's folder, or skip (fail under CI) when missing."""
    def find(name: str) -> Path:
        try:
            return locate(name)
        except DataError as error:
            if os.environ.get("CI"):
                pytest.fail(f"CI is set but the real dataset {name!r} is missing: {error}")
            pytest.skip(f"real dataset {name!r} not available")
    return find


# --------------------------------------------------------------------------------------------
# run store backends: every store, lifecycle and compare test runs on SQLite and PostgreSQL

#: The admin URL of a PostgreSQL server the tests may create databases in
#: (``scripts/with-postgres`` starts a throwaway one and sets it).
POSTGRES_URL_ENV = "KNI_TEST_POSTGRES_URL"


def _unavailable(message: str) -> None:
    """Skip, or fail when CI is set (CI must test every backend)."""
    if os.environ.get("CI"):
        pytest.fail(f"CI is set but {message}", pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def postgres_server() -> str:
    """The admin URL of the test PostgreSQL server; skip without one (fail under CI)."""
    url = os.environ.get(POSTGRES_URL_ENV)
    if not url:
        _unavailable(f"{POSTGRES_URL_ENV} is not set, so there is no PostgreSQL server to test against "
                     f"(scripts/with-postgres python -m pytest starts one)")
    try:
        import psycopg  # noqa: F401
    except ImportError:
        _unavailable('the PostgreSQL driver is not installed (pip install -e ".[dev]" installs it)')
    from sqlalchemy import create_engine, text
    engine = create_engine(url, connect_args={"connect_timeout": 10})
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as e:                                          # noqa: BLE001
        pytest.fail(f"{POSTGRES_URL_ENV}={url}: cannot connect: {e}", pytrace=False)
    finally:
        engine.dispose()
    return url


@pytest.fixture()
def postgres_db(postgres_server):
    """The URL of a fresh, empty PostgreSQL database for one test, dropped after it."""
    import uuid

    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url
    name = f"kni_test_{uuid.uuid4().hex[:16]}"
    admin = create_engine(postgres_server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(postgres_server).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:               # FORCE: a leftover run process must not keep it
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request, tmp_path) -> str:
    """A run database for each backend: a SQLite file path, or a fresh PostgreSQL database URL."""
    if request.param == "sqlite":
        return str(tmp_path / "runs.db")
    return request.getfixturevalue("postgres_db")


@pytest.fixture()
def sql():
    """``sql(db, statement, **params)``: run one statement on a run database behind the
    store's back (as another program would), on either backend; returns the rows of a query.
    Datetime parameters are written the way the store writes them."""
    from datetime import datetime, timezone

    from sqlalchemy import create_engine, text

    from workbench.store.engine import resolve_url

    def run(db: str, statement: str, **params):
        url = resolve_url(db)
        sqlite = url.startswith("sqlite")
        for k, v in params.items():
            if isinstance(v, datetime):
                v = v.astimezone(timezone.utc).replace(tzinfo=None)
                params[k] = v.strftime("%Y-%m-%d %H:%M:%S.%f") if sqlite else v
        engine = create_engine(url)
        try:
            with engine.begin() as conn:
                result = conn.execute(text(statement), params)
                return result.fetchall() if result.returns_rows else result.rowcount
        finally:
            engine.dispose()
    return run
