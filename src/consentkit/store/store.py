"""ConsentStore: the append-only consent log on any SQLAlchemy database."""

from __future__ import annotations

import os
import select as io_select
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, create_engine, event, func, insert, select
from sqlalchemy.engine import Connection, Row, make_url
from sqlalchemy.exc import DataError, DisconnectionError, IntegrityError, SQLAlchemyError
from sqlalchemy.sql.elements import ColumnElement

from ..categories import CATEGORY_NAMES
from ..columns import CONTRACT_COLUMNS, INTEGRITY_COLUMNS, LOG_COLUMNS
from ..integrity import LogKeys, StreamPool, record_message
from .group_commit import GroupCommit
from .tables import notices, records

#: What a store call raises when the database cannot be reached or written.
STORE_ERRORS: tuple[type[Exception], ...] = (SQLAlchemyError, OSError)


def join_categories(names: Sequence[str]) -> str:
    return ",".join(c for c in CATEGORY_NAMES if c in names)


def split_categories(value: str) -> list[str]:
    return [c for c in value.split(",") if c]


def as_utc(value: datetime) -> datetime:
    """SQLite returns naive datetimes; every time in the log is UTC."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


@dataclass(frozen=True, slots=True)
class NewRecord:
    """One decision to append to the log."""

    event_id: str
    occurred_at: datetime
    site: str
    subject: str
    action: str
    surface: str
    granted: tuple[str, ...]
    denied: tuple[str, ...]
    withdrawn: tuple[str, ...]
    policy_version: str
    locale: str
    notice_hash: str
    gpc: bool
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class NoticeCopy:
    notice_hash: str
    locale: str
    policy_version: str
    texts: str  # canonical JSON, exactly as hashed


@dataclass(slots=True)
class RecordFilter:
    since: datetime | None = None
    until: datetime | None = None
    site: str | None = None
    subjects: Sequence[str] = field(default_factory=tuple)
    actions: Sequence[str] = field(default_factory=tuple)
    policy_version: str | None = None


def filter_conditions(filters: RecordFilter) -> list[ColumnElement[bool]]:
    """SQL conditions selecting the records a filter describes."""
    conditions: list[ColumnElement[bool]] = []
    if filters.since is not None:
        conditions.append(records.c.occurred_at >= filters.since)
    if filters.until is not None:
        conditions.append(records.c.occurred_at < filters.until)
    if filters.site is not None:
        conditions.append(records.c.site == filters.site)
    if filters.subjects:
        conditions.append(records.c.subject.in_(list(filters.subjects)))
    if filters.actions:
        conditions.append(records.c.action.in_(list(filters.actions)))
    if filters.policy_version is not None:
        conditions.append(records.c.policy_version == filters.policy_version)
    return conditions


#: The columns :meth:`ConsentStore.iter_records` reads, in the order _row_to_dict unpacks.
_ROW_COLUMNS = (*CONTRACT_COLUMNS, "event_id", *INTEGRITY_COLUMNS)


def _row_to_dict(row: Any) -> dict[str, Any]:
    # Unpacked by position (attribute access by name costs more than the rest of an export).
    (
        record_id,
        occurred_at,
        site,
        subject,
        action,
        surface,
        granted,
        denied,
        withdrawn,
        policy_version,
        locale,
        notice_hash,
        gpc,
        expires_at,
        event_id,
        stream_id,
        stream_seq,
        key_id,
        mac,
    ) = row
    return {
        "record_id": record_id,
        "occurred_at": as_utc(occurred_at),
        "site": site,
        "subject": subject,
        "action": action,
        "surface": surface,
        "granted": split_categories(granted),
        "denied": split_categories(denied),
        "withdrawn": split_categories(withdrawn),
        "policy_version": policy_version,
        "locale": locale,
        "notice_hash": notice_hash,
        "gpc": bool(gpc),
        "expires_at": as_utc(expires_at),
        "event_id": event_id,
        "stream_id": stream_id,
        "stream_seq": stream_seq,
        "key_id": key_id,
        "mac": mac,
    }


#: Built once: constructing ``insert().values(...)`` per decision costs more than the MAC.
_INSERT_RECORD = insert(records).returning(records.c.record_id)


def _signature(keys: LogKeys, stream_id: str, seq: int, values: dict[str, Any]) -> dict[str, Any]:
    """The tamper-evidence columns of a row about to be inserted: its MAC covers the row
    exactly as it will read back (UTC times, categories in canonical order)."""
    readback = {
        **values,
        "granted": split_categories(values["granted"]),
        "denied": split_categories(values["denied"]),
        "withdrawn": split_categories(values["withdrawn"]),
    }
    kid, mac = keys.sign(record_message(stream_id, seq, readback))
    return {"stream_id": stream_id, "stream_seq": seq, "key_id": kid, "mac": mac}


#: How long a new SQLite connection waits for another one's lock (busy_timeout, and
#: the retries of the switch to WAL below).
SQLITE_BUSY_SECONDS = 10.0


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # The busy timeout makes concurrent writers (several gunicorn workers) wait their turn
    # instead of failing with "locked"; WAL lets readers run beside the writer.
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout={int(SQLITE_BUSY_SECONDS * 1000)}")
        _use_wal(cursor)
        cursor.execute("PRAGMA foreign_keys=ON")
    finally:
        cursor.close()


def _use_wal(cursor: Any) -> None:
    """Put the database file in WAL mode (a property of the file, kept once set).

    Switching needs the file to itself, and SQLite answers "database is locked" at once,
    without its busy handler, when another connection holds a lock meanwhile: workers
    starting together on a fresh file hit this. Retry until the busy timeout is spent."""
    if str(cursor.execute("PRAGMA journal_mode").fetchone()[0]).lower() == "wal":
        return
    deadline = time.monotonic() + SQLITE_BUSY_SECONDS
    delay = 0.005
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() + delay > deadline:
                raise
        time.sleep(delay)
        delay = min(delay * 2, 0.2)


#: A pooled connection idle for longer than this is tested before use (see make_engine).
IDLE_PING_SECONDS = 5.0


def make_engine(uri: str) -> Engine:
    url = make_url(uri)
    engine = create_engine(url)
    if url.get_backend_name() == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    else:
        _ping_idle_connections(engine)
    return engine


def _ping_idle_connections(engine: Engine) -> None:
    """Make sure a pooled connection still works before it is used, and let the pool
    replace a dead one (a server restart, a failover, a proxy's idle timeout).

    ``pool_pre_ping`` would cost a round trip per decision. Instead: a connection whose
    socket has something to read while it sits in the pool was closed by the server (it
    sends its "terminating connection" error, or end of file, to idle connections), which
    a non-blocking poll sees for about a microsecond; and one idle for longer than
    :data:`IDLE_PING_SECONDS` is pinged, for drops no message announces. A connection that
    dies in use fails that statement; a decision is then spooled."""
    dialect = engine.dialect

    @event.listens_for(engine, "checkin")
    def checked_in(_dbapi_connection: Any, record: Any) -> None:
        if record is not None:
            record.info["consentkit_idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def checked_out(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        idle_since = record.info.get("consentkit_idle_since")
        if idle_since is None:
            return  # just connected
        if time.monotonic() - idle_since <= IDLE_PING_SECONDS:
            if not closed_by_server(dbapi_connection):
                return  # used a moment ago, and nothing says it was closed since
            raise DisconnectionError("the server closed this pooled connection")
        try:
            dialect.do_ping(dbapi_connection)
        except dialect.loaded_dbapi.Error as exc:
            if dialect.is_disconnect(exc, dbapi_connection, None):
                raise DisconnectionError() from exc  # the pool connects again
            raise


def closed_by_server(dbapi_connection: Any) -> bool:
    """Whether an idle connection's socket has data waiting: with no query in flight, that
    is the server's goodbye (consentkit never LISTENs). False when it cannot tell."""
    poll = getattr(io_select, "poll", None)
    try:
        fd = dbapi_connection.fileno()
    except Exception:  # no socket to look at (closed, or another driver)
        return False
    if poll is None or not isinstance(fd, int) or fd < 0:
        return False
    poller = poll()
    poller.register(fd, io_select.POLLIN | io_select.POLLPRI)
    return bool(poller.poll(0))


class ConsentStore:
    """Appends decisions and answers the DPO's queries.

    Through this API the log is append-only: there is no update and no delete of a record
    here (retention and erasure live in the DPO tools).
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._ready = False
        self._lock = threading.Lock()
        self._known_notices: set[str] = set()
        # Tamper evidence (consentkit.integrity): without a key, rows are written unsigned.
        self._log_keys: LogKeys | None = None
        self._streams = StreamPool()
        # Decisions recorded at the same moment by threads of this process share one
        # commit; a constraint broken by one row fails that row alone.
        self._inserts: GroupCommit[dict[str, Any], int] = GroupCommit(
            self._insert_rows, row_errors=(IntegrityError, DataError)
        )

    @classmethod
    def from_uri(cls, uri: str) -> ConsentStore:
        return cls(make_engine(uri))

    def create_all(self) -> None:
        """Create the tables when missing (idempotent; safe from several processes)."""
        with self._lock:
            if not self._ready:
                url = self.engine.url
                if url.get_backend_name() == "sqlite" and url.database not in (
                    None,
                    "",
                    ":memory:",
                ):
                    # The default database lives in the instance folder, which may not exist.
                    os.makedirs(os.path.dirname(os.path.abspath(url.database)), exist_ok=True)
                # A fresh database gets the current tables; an older schema is refused
                # until `flask consentkit db upgrade` (consentkit.migrations).
                from ..migrations import prepare

                prepare(self.engine)
                self._ready = True

    def _connect(self) -> Connection:
        if not self._ready:
            self.create_all()
        return self.engine.connect()

    def dispose(self) -> None:
        self.engine.dispose()

    # -- writing -------------------------------------------------------------------------

    def store_notice(self, notice: NoticeCopy) -> None:
        """Store a notice's texts once per hash (idempotent, safe between processes).

        Committed before the record that references it, in its own transaction: the texts
        are content-addressed, so storing them twice or early is harmless.
        """
        if notice.notice_hash in self._known_notices:
            return
        if not self._ready:
            self.create_all()
        with self.engine.connect() as conn:
            exists = conn.execute(
                select(notices.c.notice_hash).where(notices.c.notice_hash == notice.notice_hash)
            ).first()
        if exists is None:
            try:
                with self.engine.begin() as conn:
                    conn.execute(
                        insert(notices).values(
                            notice_hash=notice.notice_hash,
                            locale=notice.locale,
                            policy_version=notice.policy_version,
                            created_at=datetime.now(UTC),
                            texts=notice.texts,
                        )
                    )
            except IntegrityError:
                pass  # another process stored the same texts first
        self._known_notices.add(notice.notice_hash)

    def record(self, new: NewRecord, notice: NoticeCopy) -> int:
        """Append one decision (after storing its notice texts). Returns its record id."""
        if new.notice_hash != notice.notice_hash:
            raise ValueError("record and notice disagree on the notice hash")
        self.store_notice(notice)
        values: dict[str, Any] = {
            "event_id": new.event_id,
            "occurred_at": as_utc(new.occurred_at),
            "site": new.site,
            "subject": new.subject,
            "action": new.action,
            "surface": new.surface,
            "granted": join_categories(new.granted),
            "denied": join_categories(new.denied),
            "withdrawn": join_categories(new.withdrawn),
            "policy_version": new.policy_version,
            "locale": new.locale,
            "notice_hash": new.notice_hash,
            "gpc": bool(new.gpc),
            "expires_at": as_utc(new.expires_at),
        }
        try:
            return self._insert_signed(values)
        except IntegrityError:
            # A purge removes notice texts no record references; this process may still
            # believe them stored. Store them again and retry once; any other conflict
            # (a duplicate event_id) is the caller's.
            if notice.notice_hash not in self._known_notices or self._has_notice(
                notice.notice_hash
            ):
                raise
            self._known_notices.discard(notice.notice_hash)
            self.store_notice(notice)
            return self._insert_signed(values)

    def _insert_signed(self, values: dict[str, Any]) -> int:
        """One row, with its stream position and MAC when a log key is set (committed with
        any rows other threads of this process insert at the same moment)."""
        stream = None
        if self._log_keys is not None:
            stream = self._streams.acquire()
            values = {
                **values,
                **_signature(self._log_keys, stream.stream_id, stream.next_seq, values),
            }
        try:
            record_id = self._inserts.submit(values)
        except BaseException:
            if stream is not None:
                self._streams.discard(stream)  # see StreamPool: never leave a hole
            raise
        if stream is not None:
            self._streams.release(stream, used=True)
        return record_id

    def _insert_rows(self, rows: Sequence[dict[str, Any]]) -> list[int]:
        """Insert ``rows`` in one transaction; their record ids, in order."""
        with self._connect() as conn, conn.begin():
            return [int(conn.execute(_INSERT_RECORD, values).scalar_one()) for values in rows]

    def _has_notice(self, notice_hash: str) -> bool:
        with self._connect() as conn:
            return (
                conn.execute(
                    select(notices.c.notice_hash).where(notices.c.notice_hash == notice_hash)
                ).first()
                is not None
            )

    # -- reading -------------------------------------------------------------------------

    def last_granted(self, subjects: Sequence[str]) -> list[str] | None:
        """Categories granted by the latest decision of any of these subject hashes.

        Latest by the time it was made, not by position in the log: a decision spooled
        during an outage is appended when replayed, possibly after the visitor's later
        ones (the same order the purge uses to tell which decision is current)."""
        if not subjects:
            return None
        with self._connect() as conn:
            row = conn.execute(
                select(records.c.granted)
                .where(records.c.subject.in_(list(subjects)))
                .order_by(records.c.occurred_at.desc(), records.c.record_id.desc())
                .limit(1)
            ).first()
        return None if row is None else split_categories(row.granted)

    def history(self, subjects: Sequence[str]) -> list[dict[str, Any]]:
        """Every decision of a subject (all its subject hashes), oldest first."""
        return list(self.iter_records(RecordFilter(subjects=subjects)))

    def iter_records(
        self, filters: RecordFilter | None = None, *, batch_size: int = 2000
    ) -> RecordStream:
        """Records in ``record_id`` order, read in keyset-paginated batches (flat memory);
        a CSV export reads them as rows (:meth:`RecordStream.export_rows`)."""
        return RecordStream(self, filters or RecordFilter(), batch_size)

    def _pages(
        self, columns: Sequence[str], filters: RecordFilter, batch_size: int
    ) -> Iterator[Row[Any]]:
        """Rows of ``columns`` (``record_id`` first) in ``record_id`` order. Keyset batches
        rather than one streaming cursor: each batch is its own short transaction, so a long
        export (or a slow download) holds no snapshot open on PostgreSQL nor a read
        transaction that lets SQLite's WAL grow, and keeps no pooled connection to itself."""
        base = (
            select(*(records.c[name] for name in columns))
            .where(*filter_conditions(filters))
            .order_by(records.c.record_id)
        )
        return self.pages(base, lambda last: records.c.record_id > last[0], batch_size)

    def pages(
        self, base: Any, after: Callable[[Any], ColumnElement[bool]], batch_size: int
    ) -> Iterator[Any]:
        """The rows of the ordered query ``base``, ``batch_size`` at a time (keyset
        pagination): ``after(last_row)`` selects the rows that follow the last one read."""
        last = None
        while True:
            query = base if last is None else base.where(after(last))
            with self._connect() as conn:
                rows = conn.execute(query.limit(batch_size)).all()
            yield from rows
            if len(rows) < batch_size:
                return
            last = rows[-1]

    def notice(self, notice_hash: str) -> NoticeCopy | None:
        with self._connect() as conn:
            row = conn.execute(select(notices).where(notices.c.notice_hash == notice_hash)).first()
        if row is None:
            return None
        return NoticeCopy(row.notice_hash, row.locale, row.policy_version, row.texts)

    def count(self) -> int:
        with self._connect() as conn:
            return int(conn.execute(select(func.count()).select_from(records)).scalar_one())

    # -- DPO tools: tamper evidence (the queries live in consentkit.store.dpo) -------------

    def use_log_keys(self, keys: LogKeys | None) -> None:
        """Sign every record appended from now on with ``keys.current``."""
        self._log_keys = keys

    @property
    def log_keys(self) -> LogKeys | None:
        return self._log_keys


class RecordStream(Iterator[dict[str, Any]]):
    """What :meth:`ConsentStore.iter_records` returns: an iterator of record dicts that an
    exporter can instead read as rows (:meth:`export_rows`), which costs no dict per record.
    The queries run when iteration starts."""

    def __init__(self, store: ConsentStore, filters: RecordFilter, batch_size: int) -> None:
        self._store = store
        self._filters = filters
        self._batch_size = batch_size
        self._records: Iterator[dict[str, Any]] | None = None

    def __next__(self) -> dict[str, Any]:
        if self._records is None:
            rows = self._store._pages(_ROW_COLUMNS, self._filters, self._batch_size)
            self._records = map(_row_to_dict, rows)
        return next(self._records)

    def export_rows(self) -> Iterator[Row[Any]]:
        """The same records as rows in :data:`consentkit.export.COLUMNS` order, values as
        the database returns them (times naive UTC on SQLite, categories comma-separated;
        see :class:`consentkit.export.RowSource`). Read these or the dicts, not both."""
        return self._store._pages(LOG_COLUMNS, self._filters, self._batch_size)
