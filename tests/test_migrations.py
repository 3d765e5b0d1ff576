"""Schema versions: a database made by the first release is upgraded without losing a
record; a fresh database is created at the newest revision; an out-of-date schema is
refused (decisions wait in the spool) until ``flask consentkit db upgrade``.
"""

from __future__ import annotations

import contextlib
import hashlib
import multiprocessing
import sqlite3
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from conftest import log_rows
from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    inspect,
    select,
    text,
)
from sqlalchemy.exc import OperationalError

from consentkit import migrations
from consentkit.migrations import BASELINE, VERSION_TABLE, SchemaOutOfDate
from consentkit.store import ConsentStore, metadata
from consentkit.store import store as store_module
from consentkit.store.store import make_engine
from test_http import cookie_of

# -- the first release's schema, frozen here as it shipped ------------------------------------

first_release = MetaData()
_RecordId = BigInteger().with_variant(Integer(), "sqlite")
old_notices = Table(
    "consentkit_notices",
    first_release,
    Column("notice_hash", String(64), primary_key=True),
    Column("locale", String(16), nullable=False),
    Column("policy_version", String(32), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("texts", Text, nullable=False),
)
old_records = Table(
    "consentkit_records",
    first_release,
    Column("record_id", _RecordId, primary_key=True, autoincrement=True),
    Column("event_id", String(32), nullable=False, unique=True),
    Column("occurred_at", DateTime(timezone=True), nullable=False),
    Column("site", String(64), nullable=False),
    Column("subject", String(64), nullable=False),
    Column("action", String(16), nullable=False),
    Column("surface", String(16), nullable=False),
    Column("granted", String(64), nullable=False),
    Column("denied", String(64), nullable=False),
    Column("withdrawn", String(64), nullable=False),
    Column("policy_version", String(32), nullable=False),
    Column("locale", String(16), nullable=False),
    Column("notice_hash", String(64), ForeignKey("consentkit_notices.notice_hash"), nullable=False),
    Column("gpc", Boolean, nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Index("ix_consentkit_records_subject", "subject", "record_id"),
    Index("ix_consentkit_records_occurred_at", "occurred_at"),
)

OLD_ROWS = 300
T0 = datetime(2025, 1, 1, tzinfo=UTC)


def fill_first_release(uri: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """A database exactly as the first release left it, with records in it."""
    engine = create_engine(uri)
    try:
        first_release.create_all(engine)
        notices = []
        for n, locale in enumerate(["fr", "en"]):
            texts = f'{{"title":"Gérer le consentement aux cookies","n":{n}}}'
            notices.append(
                {
                    "notice_hash": hashlib.sha256(texts.encode()).hexdigest(),
                    "locale": locale,
                    "policy_version": "1",
                    "created_at": T0,
                    "texts": texts,
                }
            )
        rows = []
        for n in range(OLD_ROWS):
            granted = ["functional", "preferences,statistics", "functional,marketing"][n % 3]
            rows.append(
                {
                    "event_id": f"{n:032x}",
                    "occurred_at": T0 + timedelta(minutes=n),
                    "site": "default" if n % 5 else "shop",
                    "subject": f"{n % 97:064x}",
                    "action": ["accept_all", "reject_all", "custom", "close"][n % 4],
                    "surface": "banner" if n % 2 else "preferences",
                    "granted": granted,
                    "denied": "marketing" if n % 2 else "",
                    "withdrawn": "statistics" if n % 7 == 0 else "",
                    "policy_version": str(1 + n % 2),
                    "locale": "fr" if n % 2 else "en",
                    "notice_hash": notices[n % 2]["notice_hash"],
                    "gpc": n % 3 == 0,
                    "expires_at": T0 + timedelta(days=183, minutes=n),
                }
            )
        with engine.begin() as conn:
            conn.execute(old_notices.insert(), notices)
            conn.execute(old_records.insert(), rows)
        with engine.connect() as conn:
            stored_rows = [dict(r._mapping) for r in conn.execute(select(old_records))]
            stored_notices = [dict(r._mapping) for r in conn.execute(select(old_notices))]
        return stored_rows, stored_notices
    finally:
        engine.dispose()


def schema_diff(uri: str) -> list[Any]:
    """What differs between the database's consentkit tables and the current tables.py."""
    engine = create_engine(uri)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(
                conn,
                opts={
                    "include_object": migrations.include_object,
                    "compare_type": True,
                    "version_table": VERSION_TABLE,
                },
            )
            return compare_metadata(context, metadata)
    finally:
        engine.dispose()


def version_rows(uri: str) -> list[str]:
    engine = create_engine(uri)
    try:
        with engine.connect() as conn:
            return [r[0] for r in conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}"))]
    finally:
        engine.dispose()


def test_the_migrations_build_the_schema_that_tables_py_declares(database_uri):
    engine = create_engine(database_uri)
    try:
        assert migrations.upgrade(engine, BASELINE) == ("empty", BASELINE)
        assert schema_diff(database_uri), "the baseline is older than tables.py"
        before, after = migrations.upgrade(engine)
        assert (before, after) == (BASELINE, migrations.head())
    finally:
        engine.dispose()
    assert schema_diff(database_uri) == []
    assert version_rows(database_uri) == [migrations.head()]


def test_a_fresh_database_is_created_at_head(app, client, runner):
    assert client.post("/consent", json={"action": "accept_all"}).status_code == 200
    uri = app.extensions["consentkit"].settings.database_uri
    assert version_rows(uri) == [migrations.head()]
    assert schema_diff(uri) == []
    result = runner.invoke(args=["consentkit", "db", "current"])
    assert result.exit_code == 0
    assert f"database: {migrations.head()}" in result.output
    result = runner.invoke(args=["consentkit", "db", "upgrade"])
    assert result.exit_code == 0, result.output
    assert "up to date" in result.output
    assert len(log_rows(app)) == 1


def test_db_upgrade_on_an_empty_database_creates_it(app, runner):
    result = runner.invoke(args=["consentkit", "db", "upgrade"])
    assert result.exit_code == 0, result.output
    assert "from an empty database to" in result.output
    assert schema_diff(app.extensions["consentkit"].settings.database_uri) == []


def test_upgrade_from_the_first_release_keeps_every_record(make_app, database_uri):
    old_rows, old_notices_rows = fill_first_release(database_uri)
    app = make_app(CONSENTKIT_DATABASE_URI=database_uri)
    client = app.test_client()
    runner = app.test_cli_runner()

    # Before the upgrade: the schema is refused, the visitor's decision is still
    # acknowledged (into the spool), the health check and the CLI say what to do.
    current = runner.invoke(args=["consentkit", "db", "current"])
    assert current.exit_code == 1
    assert "baseline, unversioned" in current.output
    response = client.post("/consent", json={"action": "reject_all"})
    assert response.status_code == 200
    assert cookie_of(response) is not None
    assert app.extensions["consentkit"].spool.pending() == 1
    health = client.get("/consent/health").get_json()
    assert health["database"] == "schema out of date"
    export = runner.invoke(args=["consentkit", "export", "--format", "json"])
    assert export.exit_code != 0
    assert "db upgrade" in export.output

    result = runner.invoke(args=["consentkit", "db", "upgrade"])
    assert result.exit_code == 0, result.output
    assert f"from {BASELINE} (unversioned) to {migrations.head()}" in result.output
    assert schema_diff(database_uri) == []
    assert version_rows(database_uri) == [migrations.head()]

    # Nothing lost, nothing changed: every old row and notice reads back identically.
    rows = log_rows(app)
    assert len(rows) == OLD_ROWS
    for old, new in zip(old_rows, rows, strict=True):
        for key, value in old.items():
            got = new[key]
            if isinstance(value, datetime):
                value = value if value.tzinfo else value.replace(tzinfo=UTC)
                got = got if got.tzinfo else got.replace(tzinfo=UTC)
            assert got == value, (key, old["record_id"])
        assert new["mac"] is None  # written before tamper evidence: "unsigned"
    engine = create_engine(database_uri)
    try:
        with engine.connect() as conn:
            notices_now = [dict(r._mapping) for r in conn.execute(select(old_notices))]
    finally:
        engine.dispose()
    key = "notice_hash"
    assert sorted(notices_now, key=lambda r: r[key]) == sorted(
        old_notices_rows, key=lambda r: r[key]
    )

    # The new version writes: the spooled decision first, then a new one, after the old ids.
    assert client.post("/consent", json={"action": "accept_all"}).status_code == 200
    rows = log_rows(app)
    assert len(rows) == OLD_ROWS + 2
    assert [r["action"] for r in rows[-2:]] == ["reject_all", "accept_all"]
    assert rows[-2]["record_id"] > old_rows[-1]["record_id"]
    assert rows[-1]["mac"] is not None
    assert app.extensions["consentkit"].spool.pending() == 0
    assert client.get("/consent/health").get_json()["status"] == "ok"

    # The DPO adopts the records of the first release; then the whole log verifies.
    assert runner.invoke(args=["consentkit", "seal", "--adopt-unsigned"]).exit_code == 0
    verify = runner.invoke(args=["consentkit", "verify"])
    assert verify.exit_code == 0, verify.output


def test_a_schema_newer_than_this_consentkit_is_refused(make_app, database_uri):
    app = make_app(CONSENTKIT_DATABASE_URI=database_uri)
    st = app.extensions["consentkit"]
    st.store.create_all()
    with st.store.engine.begin() as conn:
        conn.execute(text(f"UPDATE {VERSION_TABLE} SET version_num = '9999'"))
    store = ConsentStore.from_uri(database_uri)
    try:
        with pytest.raises(SchemaOutOfDate, match="does not know"):
            store.create_all()
    finally:
        store.dispose()


def test_the_hosts_own_alembic_version_is_left_alone(make_app, database_uri):
    engine = create_engine(database_uri)
    try:
        with engine.begin() as conn:
            conn.execute(text("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL)"))
            conn.execute(text("INSERT INTO alembic_version VALUES ('host_rev_1')"))
        app = make_app(CONSENTKIT_DATABASE_URI=database_uri)
        assert app.test_client().post("/consent", json={"action": "close"}).status_code == 200
        with engine.connect() as conn:
            assert conn.execute(text("SELECT version_num FROM alembic_version")).all() == [
                ("host_rev_1",)
            ]
            assert "alembic_version" in inspect(conn).get_table_names()
    finally:
        engine.dispose()
    assert version_rows(database_uri) == [migrations.head()]


def _prepare(uri: str) -> str:
    store = ConsentStore.from_uri(uri)
    try:
        store.create_all()
        return "ok"
    finally:
        store.dispose()


def test_workers_starting_together_on_a_fresh_database(database_uri):
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(4) as pool:
        results = pool.map_async(_prepare, [database_uri] * 4, chunksize=1).get(timeout=120)
    assert results == ["ok"] * 4
    assert version_rows(database_uri) == [migrations.head()]
    assert schema_diff(database_uri) == []


def _hold_write_lock(path: Path) -> sqlite3.Connection:
    """Another process's view of a fresh file: a rollback-journal database with a write
    transaction open, the moment when SQLite refuses the switch to WAL at once."""
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("CREATE TABLE host_table (x INTEGER)")
    holder.execute("BEGIN IMMEDIATE")
    holder.execute("INSERT INTO host_table VALUES (1)")
    return holder


def test_a_new_connection_waits_for_another_writer_before_switching_to_wal(tmp_path):
    path = tmp_path / "log.sqlite3"
    holder = _hold_write_lock(path)
    release = threading.Timer(0.3, holder.execute, ("COMMIT",))
    release.start()
    engine = make_engine(f"sqlite:///{path}")
    try:
        with engine.connect() as conn:
            assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
            assert conn.execute(text("SELECT x FROM host_table")).scalars().all() == [1]
    finally:
        release.join()
        engine.dispose()
        holder.close()


def test_a_lock_held_past_the_busy_timeout_is_an_error_not_a_hang(tmp_path, monkeypatch):
    monkeypatch.setattr(store_module, "SQLITE_BUSY_SECONDS", 0.2)
    path = tmp_path / "log.sqlite3"
    holder = _hold_write_lock(path)
    engine = make_engine(f"sqlite:///{path}")
    try:
        with pytest.raises(OperationalError, match="locked"):
            engine.connect()
    finally:
        engine.dispose()
        holder.execute("ROLLBACK")
        holder.close()
    with contextlib.closing(sqlite3.connect(path)) as check:  # left as it was
        assert check.execute("PRAGMA journal_mode").fetchone() == ("delete",)


def test_a_failed_schema_change_leaves_nothing_behind(database_uri):
    """Creation and upgrades run in one transaction (on SQLite too): a crash midway leaves
    the database as it was, never half-made."""
    engine = create_engine(database_uri)
    try:
        with pytest.raises(RuntimeError, match="midway"):
            _create_then_crash(engine)
        with engine.connect() as conn:
            assert migrations.schema_state(conn) == "empty"
    finally:
        engine.dispose()


def _create_then_crash(engine: Any) -> None:
    with migrations._locked(engine) as conn:
        migrations._create_fresh(conn)
        raise RuntimeError("crash midway")
