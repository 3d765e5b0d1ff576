"""consentkit's schema versions (Alembic, shipped inside the package; no alembic.ini).

How a fresh database and migrations live together:

- **No consentkit table yet** (a first deployment, the demo): the store creates the current
  tables itself on first use and records them as the newest revision ("head"). Nothing to run.
- **At head**: nothing to do.
- **Older than head** (consentkit was upgraded): the store refuses to use the database until
  ``flask consentkit db upgrade`` has run. It never alters a schema on a visitor's request:
  changing a large table is an operator's decision, taken once, not by every worker at once.
  Meanwhile decisions are still acknowledged into the outage spool and written to the log by
  the first decision (or ``flask consentkit flush``) after the upgrade.
- **Tables without a version table**: a database made by the first release, before
  migrations existed; ``db upgrade`` records it as the baseline revision, then upgrades.

Schema preparation and upgrades take a lock (a PostgreSQL advisory lock; a lock file next to a
SQLite database), so several workers starting on a fresh database at once create it once.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import os
import threading
from collections.abc import Iterator
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, inspect, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import SQLAlchemyError

from ..store.tables import metadata

#: consentkit's own Alembic version table (a host's ``alembic_version`` is left alone).
VERSION_TABLE = "consentkit_alembic_version"
#: The revision of the first release's schema (two tables, no version table).
BASELINE = "0001"
#: Tables that exist in every revision: their presence without a version table means
#: "baseline".
BASELINE_TABLES = frozenset({"consentkit_notices", "consentkit_records"})
_HERE = os.path.dirname(os.path.abspath(__file__))
# pg_advisory_xact_lock key: "consentk" as a big-endian signed 64-bit integer.
_PG_LOCK_KEY = int.from_bytes(b"consentk", "big", signed=True)
_thread_lock = threading.Lock()


class SchemaOutOfDate(SQLAlchemyError):
    """The database's consentkit schema is not the one this version of consentkit writes.

    A :class:`~sqlalchemy.exc.SQLAlchemyError`, so every path that survives an unreachable
    database survives this too (decisions go to the spool, the CLI says what to run)."""

    def __init__(self, current: str | None, head: str) -> None:
        if current is not None and current not in _revisions():
            detail = (
                f"the database's consentkit schema is at revision {current}, which this "
                f"version of consentkit does not know (newer consentkit?); expected {head}"
            )
        else:
            detail = (
                f"the consentkit schema is at revision {current or BASELINE + ' (unversioned)'}"
                f", this version of consentkit needs {head}: run `flask consentkit db upgrade`"
            )
        super().__init__(detail)
        self.current = current
        self.head = head

    def __reduce__(self) -> tuple[Any, ...]:  # picklable (multiprocessing, logging handlers)
        return (type(self), (self.current, self.head))


def include_object(
    obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any
) -> bool:
    """Autogenerate compares consentkit's tables only, never the host's."""
    if type_ == "table":
        return name is not None and name.startswith("consentkit_") and name != VERSION_TABLE
    table = getattr(obj, "table", None)
    table_name = getattr(table, "name", "")
    return not table_name or table_name.startswith("consentkit_")


def config(connection: Connection | None = None) -> Config:
    """The Alembic configuration, in code."""
    cfg = Config()
    cfg.set_main_option("script_location", _HERE)
    cfg.set_main_option("path_separator", "os")
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


@functools.cache
def script_directory() -> ScriptDirectory:
    return ScriptDirectory.from_config(config())


def head() -> str:
    found = script_directory().get_current_head()
    assert found is not None
    return found


def _revisions() -> set[str]:
    return {s.revision for s in script_directory().walk_revisions()}


def current_revision(conn: Connection) -> str | None:
    """The revision recorded in the database; ``None`` when there is no version table."""
    context = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE})
    return context.get_current_revision()


def schema_state(conn: Connection) -> str | None:
    """``"empty"`` (no consentkit table), ``None`` (baseline tables, unversioned), or the
    recorded revision."""
    names = set(inspect(conn).get_table_names())
    if VERSION_TABLE in names:
        revision = current_revision(conn)
        if revision is not None:
            return revision
    if not names & BASELINE_TABLES:
        return "empty"
    return None


@contextlib.contextmanager
def _locked(engine: Engine) -> Iterator[Connection]:
    """A connection in a transaction that holds consentkit's schema lock."""
    with _thread_lock, contextlib.ExitStack() as stack:
        url = engine.url
        if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
            path = os.path.abspath(url.database)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            fd = os.open(path + ".consentkit-schema.lock", os.O_RDWR | os.O_CREAT, 0o600)
            stack.callback(os.close, fd)
            fcntl.flock(fd, fcntl.LOCK_EX)
            stack.callback(fcntl.flock, fd, fcntl.LOCK_UN)
        conn = stack.enter_context(engine.connect())
        stack.enter_context(conn.begin())
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY})
        elif conn.dialect.name == "sqlite":
            # pysqlite runs DDL outside any transaction unless one is open: open it, so a
            # schema change is all or nothing here too (PostgreSQL's DDL is transactional).
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        yield conn


def _create_fresh(conn: Connection) -> None:
    metadata.create_all(conn, checkfirst=True)
    command.stamp(config(conn), "head")


def prepare(engine: Engine) -> None:
    """Before a store first uses a database: create the schema when there is none; raise
    :class:`SchemaOutOfDate` when it is not at head."""
    target = head()
    with engine.connect() as conn:
        state = schema_state(conn)
        conn.rollback()
    if state == target:
        return
    # Anything else is judged again under the lock: another worker may be creating it.
    with _locked(engine) as conn:
        state = schema_state(conn)  # another process may have been first
        if state == "empty":
            _create_fresh(conn)
        elif state != target:
            raise SchemaOutOfDate(state, target)


def upgrade(engine: Engine, revision: str = "head") -> tuple[str | None, str]:
    """Bring the schema to ``revision``; returns (state before, revision after), the state
    as :func:`schema_state` names it (``"empty"``, ``None`` for unversioned, a revision)."""
    with _locked(engine) as conn:
        before = schema_state(conn)
        if before == "empty":
            if revision != "head":
                command.upgrade(config(conn), revision)
            else:
                _create_fresh(conn)
        else:
            if before is None:
                command.stamp(config(conn), BASELINE)
            command.upgrade(config(conn), revision)
        after = current_revision(conn)
    assert after is not None
    return before, after
