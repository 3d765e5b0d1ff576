"""The DPO tools' database work: the ledger, verification, purge, erasure, statistics counts.

Nothing here runs on a visitor's request. Every removal happens in the same transaction as
the ledger entry that accounts for it, so the log verifies at every moment.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any, TypeVar

from sqlalchemy import and_, delete, exists, func, insert, or_, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.sql.elements import ColumnElement

from ..columns import LOG_COLUMNS
from ..integrity import (
    LedgerEntry,
    LogKeys,
    Report,
    Verifier,
    canonical,
    ledger_message,
    record_message,
    to_ranges,
)
from .store import (
    ConsentStore,
    NoticeCopy,
    RecordFilter,
    RecordStream,
    as_utc,
    filter_conditions,
)
from .store import split_categories as _split
from .tables import ledger, notices, records

T = TypeVar("T")

_RETRIES = 8
#: An unreferenced notice younger than this is kept: a writer stores the texts just before
#: the record that references them, in its own transaction.
NOTICE_GRACE = timedelta(days=1)


class TamperedRows(Exception):
    """Rows to be removed fail their MAC: removing them would destroy the evidence."""

    def __init__(self, record_ids: Sequence[int]) -> None:
        shown = ", ".join(str(r) for r in record_ids[:10])
        more = "…" if len(record_ids) > 10 else ""
        super().__init__(
            f"record(s) {shown}{more} fail their MAC; nothing of them was removed. "
            "Run `flask consentkit verify` and restore them from a backup first."
        )
        self.record_ids = list(record_ids)


# -- rows --------------------------------------------------------------------------------


@lru_cache(maxsize=1024)
def _categories(value: str) -> tuple[str, ...]:
    return tuple(_split(value))  # a handful of distinct values: parse each once


#: The columns the DPO tools read, in the order :func:`record_dict` unpacks them.
_COLUMNS = LOG_COLUMNS


_STREAM, _SEQ = _COLUMNS.index("stream_id"), _COLUMNS.index("stream_seq")


def _select_rows() -> Any:
    return select(*(records.c[name] for name in _COLUMNS))


def record_dict(row: Any) -> dict[str, Any]:
    """A row of :func:`_select_rows` as the verifier and the MAC see it (times as the driver
    returns them: the MAC reads naive ones as UTC). Unpacked by position: this runs once per
    record in verify."""
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
        stream_id,
        stream_seq,
        key_id,
        mac,
    ) = row
    return {
        "record_id": record_id,
        "occurred_at": occurred_at,
        "site": site,
        "subject": subject,
        "action": action,
        "surface": surface,
        "granted": _categories(granted),
        "denied": _categories(denied),
        "withdrawn": _categories(withdrawn),
        "policy_version": policy_version,
        "locale": locale,
        "notice_hash": notice_hash,
        "gpc": bool(gpc),
        "expires_at": expires_at,
        "stream_id": stream_id,
        "stream_seq": stream_seq,
        "key_id": key_id,
        "mac": mac,
    }


def mac_ok(keys: LogKeys, row: dict[str, Any]) -> bool:
    """True for a signed row whose MAC is valid under a configured key."""
    if row["stream_id"] is None or row["stream_seq"] is None or row["mac"] is None:
        return False
    return bool(
        keys.check(
            row["key_id"], record_message(row["stream_id"], row["stream_seq"], row), row["mac"]
        )
    )


def _write(store: ConsentStore, work: Callable[[Connection], T]) -> T:
    """Run ``work`` in a transaction, again when another tool took the same ledger number
    (unique key) or SQLite was busy: DPO operations are rare and short."""
    store.create_all()
    for attempt in range(_RETRIES):
        try:
            with store.engine.begin() as conn:
                return work(conn)
        except (IntegrityError, OperationalError) as exc:
            transient = isinstance(exc, IntegrityError) or "locked" in str(exc)
            if not transient or attempt == _RETRIES - 1:
                raise
            time.sleep(0.02 * (attempt + 1))
    raise AssertionError("unreachable")


# -- the ledger --------------------------------------------------------------------------


def _entry(row: Any) -> LedgerEntry:
    return LedgerEntry(row.seq, row.kind, as_utc(row.occurred_at), row.details, row.key_id, row.mac)


def iter_ledger(store: ConsentStore, conn: Connection | None = None) -> Iterator[LedgerEntry]:
    """Ledger entries in order."""
    store.create_all()
    query = select(ledger).order_by(ledger.c.seq)
    if conn is not None:
        yield from (_entry(r) for r in conn.execute(query).all())
        return
    with store.engine.connect() as own:
        rows = own.execute(query).all()
    yield from (_entry(r) for r in rows)


def _heads_delta(conn: Connection) -> dict[str, int]:
    """Stream heads the ledger has not recorded yet (each entry stores only what is new)."""
    known: dict[str, int] = {}
    for entry in conn.execute(select(ledger.c.details)).scalars():
        for stream_id, head in (_parse(entry).get("heads") or {}).items():
            known[stream_id] = max(known.get(stream_id, 0), int(head))
    present = conn.execute(
        select(records.c.stream_id, func.max(records.c.stream_seq))
        .where(records.c.stream_id.is_not(None), records.c.stream_seq.is_not(None))
        .group_by(records.c.stream_id)
    ).all()
    return {sid: int(head) for sid, head in sorted(present) if int(head) > known.get(sid, 0)}


def _parse(details: str) -> dict[str, Any]:
    try:
        value = json.loads(details)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _append(
    conn: Connection, keys: LogKeys, kind: str, details: dict[str, Any], *, seal: bool = True
) -> LedgerEntry:
    """Append a ledger entry (inside the caller's transaction). With ``seal`` it also records
    the stream heads (one grouped scan of an index: once per operation, not per batch)."""
    if seal:
        details = {**details, "heads": _heads_delta(conn)}
    seq = int(conn.execute(select(func.coalesce(func.max(ledger.c.seq), 0))).scalar_one()) + 1
    now = datetime.now(UTC)
    text = canonical(details)
    kid, mac = keys.sign(ledger_message(seq, kind, now, text))
    conn.execute(
        insert(ledger).values(
            seq=seq, kind=kind, occurred_at=now, details=text, key_id=kid, mac=mac
        )
    )
    return LedgerEntry(seq, kind, now, text, kid, mac)


def record_operation(
    store: ConsentStore, keys: LogKeys, kind: str, details: dict[str, Any]
) -> LedgerEntry:
    """Record an operation (an export, a seal) in the ledger. ``details`` must not hold a
    subject or any record content."""
    return _write(store, lambda conn: _append(conn, keys, kind, details))


# -- verification ------------------------------------------------------------------------


def verify(
    store: ConsentStore,
    keys: LogKeys,
    *,
    anchors: Iterable[tuple[int, str]] = (),
    batch: int = 5000,
) -> Report:
    """Check the whole log: ledger, every record, every notice. Reads in batches."""
    store.create_all()
    verifier = Verifier(keys, anchors=anchors)
    verifier.add_ledger(iter_ledger(store))
    c = records.c
    signed = (
        _select_rows()
        .where(c.stream_id.is_not(None), c.stream_seq.is_not(None))
        .order_by(c.stream_id, c.stream_seq)
    )
    for row in store.pages(
        signed,
        lambda last: or_(
            c.stream_id > last[_STREAM],
            and_(c.stream_id == last[_STREAM], c.stream_seq > last[_SEQ]),
        ),
        batch,
    ):
        verifier.add_record(record_dict(row))
    unsigned = (
        _select_rows()
        .where(or_(c.stream_id.is_(None), c.stream_seq.is_(None)))
        .order_by(c.record_id)
    )
    for row in store.pages(unsigned, lambda last: c.record_id > last[0], batch):
        verifier.add_record(record_dict(row))
    stored: set[str] = set()
    with store.engine.connect() as conn:
        for notice_hash, texts in conn.execute(
            select(notices.c.notice_hash, notices.c.texts).order_by(notices.c.notice_hash)
        ):
            verifier.add_notice(notice_hash, texts)
            stored.add(notice_hash)
        referenced = set(conn.execute(select(c.notice_hash).distinct()).scalars())
    verifier.missing_notices(sorted(referenced - stored))
    return verifier.finish(iter_ledger(store))


# -- removal -----------------------------------------------------------------------------


def _removal_details(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    by_stream: dict[str, list[int]] = {}
    unsigned = 0
    for row in rows:
        if row["stream_id"] is None or row["stream_seq"] is None:
            unsigned += 1
        else:
            by_stream.setdefault(row["stream_id"], []).append(int(row["stream_seq"]))
    return {
        "records": len(rows),
        "unsigned": unsigned,
        "removed": {sid: to_ranges(seqs) for sid, seqs in sorted(by_stream.items())},
    }


def _check_removable(keys: LogKeys, rows: Sequence[dict[str, Any]]) -> None:
    # Unsigned rows (never adopted) carry no evidence to protect; signed ones must be intact.
    bad = [
        r["record_id"]
        for r in rows
        if r["stream_id"] is not None and r["stream_seq"] is not None and not mac_ok(keys, r)
    ]
    if bad:
        raise TamperedRows(bad)


@dataclass(slots=True)
class PurgeResult:
    cutoff: datetime
    dry_run: bool
    records: int = 0
    notices: int = 0
    batches: int = 0
    ledger_seqs: list[int] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "cutoff": as_utc(self.cutoff).isoformat().replace("+00:00", "Z"),
            "dry_run": self.dry_run,
            "records": self.records,
            "notices": self.notices,
            "ledger_entries": self.ledger_seqs,
        }


def _no_longer_current(table: Any, cutoff: datetime) -> ColumnElement[bool]:
    """Records of ``table`` that stopped being current before ``cutoff``: expired, or
    followed by a later decision of the same subject made before ``cutoff``.

    Stable under purging: a record's end is never after the end of the next one, so
    removing records never changes whether another one qualifies.
    """
    later = records.alias("later")
    return or_(
        table.c.expires_at < cutoff,
        exists().where(
            later.c.subject == table.c.subject,
            later.c.occurred_at < cutoff,
            or_(
                later.c.occurred_at > table.c.occurred_at,
                and_(
                    later.c.occurred_at == table.c.occurred_at,
                    later.c.record_id > table.c.record_id,
                ),
            ),
        ),
    )


def _orphan_notices(cutoff_notice: datetime) -> ColumnElement[bool]:
    return and_(
        notices.c.created_at < cutoff_notice,
        ~exists().where(records.c.notice_hash == notices.c.notice_hash),
    )


def purge(
    store: ConsentStore,
    keys: LogKeys,
    *,
    retention: timedelta,
    now: datetime | None = None,
    dry_run: bool = False,
    batch: int = 1000,
    progress: Callable[[int], None] | None = None,
) -> PurgeResult:
    """Remove the records that stopped being current more than ``retention`` ago, then the
    notice texts no record references any more. Each batch is one transaction together
    with the ledger entry that accounts for it (positions and counts, never a subject)."""
    store.create_all()
    now = now or datetime.now(UTC)
    cutoff = now - retention
    result = PurgeResult(cutoff=cutoff, dry_run=dry_run)
    condition = _no_longer_current(records, cutoff)
    if dry_run:
        kept = records.alias("kept")
        with store.engine.connect() as conn:
            result.records = int(
                conn.execute(
                    select(func.count()).select_from(records).where(condition)
                ).scalar_one()
            )
            # Notices that would be left without a record once the purge is done.
            result.notices = int(
                conn.execute(
                    select(func.count())
                    .select_from(notices)
                    .where(
                        notices.c.created_at < now - NOTICE_GRACE,
                        ~exists().where(
                            kept.c.notice_hash == notices.c.notice_hash,
                            ~_no_longer_current(kept, cutoff),
                        ),
                    )
                ).scalar_one()
            )
        return result
    run = secrets.token_hex(8)
    last_id = 0
    while True:
        with store.engine.connect() as conn:
            page = [
                record_dict(r)
                for r in conn.execute(
                    _select_rows()
                    .where(records.c.record_id > last_id, condition)
                    .order_by(records.c.record_id)
                    .limit(batch)
                )
            ]
        if not page:
            break
        _check_removable(keys, page)
        ids = [r["record_id"] for r in page]
        details = {"run": run, "cutoff": _iso(cutoff), **_removal_details(page)}

        def work(conn: Connection, ids: list[int] = ids, details: dict[str, Any] = details) -> int:
            conn.execute(delete(records).where(records.c.record_id.in_(ids)))
            return _append(conn, keys, "purge", details, seal=False).seq

        result.ledger_seqs.append(_write(store, work))
        result.records += len(page)
        result.batches += 1
        last_id = ids[-1]
        if progress is not None:
            progress(len(page))

    def finish(conn: Connection) -> int:
        removed = conn.execute(delete(notices).where(_orphan_notices(now - NOTICE_GRACE)))
        result.notices = int(removed.rowcount or 0)
        summary = {
            "run": run,
            "cutoff": _iso(cutoff),
            "summary": {"records": result.records, "notices": result.notices},
        }
        return _append(conn, keys, "purge", summary).seq

    result.ledger_seqs.append(_write(store, finish))
    return result


def _iso(value: datetime) -> str:
    return as_utc(value).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class EraseResult:
    records: int
    unsigned: int
    ledger_seq: int | None


def subject_rows(store: ConsentStore, subjects: Sequence[str]) -> list[dict[str, Any]]:
    store.create_all()
    with store.engine.connect() as conn:
        return [
            record_dict(r)
            for r in conn.execute(
                _select_rows()
                .where(records.c.subject.in_(list(subjects)))
                .order_by(records.c.record_id)
            )
        ]


def erase(store: ConsentStore, keys: LogKeys, subjects: Sequence[str]) -> EraseResult:
    """Delete every record of these subject hashes (GDPR Art. 17) and account for it in the
    ledger without naming the subject: only counts and stream positions."""
    if not subjects:
        raise ValueError("no subject to erase")

    def work(conn: Connection) -> EraseResult:
        rows = [
            record_dict(r)
            for r in conn.execute(
                _select_rows()
                .where(records.c.subject.in_(list(subjects)))
                .order_by(records.c.record_id)
            )
        ]
        if not rows:
            return EraseResult(0, 0, None)
        _check_removable(keys, rows)
        conn.execute(delete(records).where(records.c.record_id.in_([r["record_id"] for r in rows])))
        details = _removal_details(rows)
        entry = _append(conn, keys, "erase", details)
        return EraseResult(len(rows), details["unsigned"], entry.seq)

    return _write(store, work)


def adopt_unsigned(store: ConsentStore, keys: LogKeys, *, batch: int = 1000) -> int:
    """Sign the rows that have no MAC (written before tamper evidence existed) into a new
    stream, and record how many in the ledger. Whoever runs this vouches for those rows."""
    store.create_all()
    stream_id = "adopt-" + secrets.token_urlsafe(12)
    seq = 0
    c = records.c
    while True:
        with store.engine.connect() as conn:
            page = [
                record_dict(r)
                for r in conn.execute(
                    _select_rows()
                    .where(or_(c.stream_id.is_(None), c.stream_seq.is_(None), c.mac.is_(None)))
                    .order_by(c.record_id)
                    .limit(batch)
                )
            ]
        if not page:
            break

        def work(conn: Connection, page: list[dict[str, Any]] = page, start: int = seq) -> None:
            for offset, row in enumerate(page, start=1):
                kid, mac = keys.sign(record_message(stream_id, start + offset, row))
                conn.execute(
                    update(records)
                    .where(c.record_id == row["record_id"])
                    .values(stream_id=stream_id, stream_seq=start + offset, key_id=kid, mac=mac)
                )

        _write(store, work)
        seq += len(page)
    if seq:
        record_operation(store, keys, "adopt", {"records": seq})
    return seq


# -- reading for exports, receipts and statistics ------------------------------------------


def notices_for(store: ConsentStore, hashes: Iterable[str]) -> list[NoticeCopy]:
    """The stored notices with these hashes, sorted by hash (missing ones are skipped)."""
    wanted = sorted(set(hashes))
    found: list[NoticeCopy] = []
    store.create_all()
    with store.engine.connect() as conn:
        for start in range(0, len(wanted), 500):
            chunk = wanted[start : start + 500]
            for row in conn.execute(
                select(notices)
                .where(notices.c.notice_hash.in_(chunk))
                .order_by(notices.c.notice_hash)
            ):
                found.append(NoticeCopy(row.notice_hash, row.locale, row.policy_version, row.texts))
    return found


def iter_export_records(
    store: ConsentStore, filters: RecordFilter, *, batch: int = 5000
) -> RecordStream:
    """:meth:`ConsentStore.iter_records` (``record_id`` order, keyset batches, flat memory)
    in larger batches; the CSV writer reads its rows (:class:`consentkit.export.RowSource`)."""
    return store.iter_records(filters, batch_size=batch)


def notice_hashes(store: ConsentStore, filters: RecordFilter) -> set[str]:
    """The notices the records a filter selects reference."""
    store.create_all()
    with store.engine.connect() as conn:
        return set(
            conn.execute(
                select(records.c.notice_hash).distinct().where(*filter_conditions(filters))
            ).scalars()
        )


def count_records(store: ConsentStore, filters: RecordFilter) -> int:
    store.create_all()
    with store.engine.connect() as conn:
        return int(
            conn.execute(
                select(func.count()).select_from(records).where(*filter_conditions(filters))
            ).scalar_one()
        )


@dataclass(frozen=True, slots=True)
class CountRow:
    """Decisions of one day with the same locale, policy, site, action and granted set."""

    day: str  # YYYY-MM-DD (UTC)
    locale: str
    policy_version: str
    site: str
    action: str
    granted: tuple[str, ...]
    count: int


def decision_counts(store: ConsentStore, filters: RecordFilter) -> list[CountRow]:
    """Counts grouped in the database: a few rows per day, whatever the log's size."""
    store.create_all()
    if store.engine.dialect.name == "postgresql":
        day: Any = func.to_char(func.timezone("UTC", records.c.occurred_at), "YYYY-MM-DD")
    else:
        day = func.substr(records.c.occurred_at, 1, 10)  # stored as "YYYY-MM-DD HH:MM:SS…"
    day = day.label("day")
    c = records.c
    query = (
        select(day, c.locale, c.policy_version, c.site, c.action, c.granted, func.count())
        .where(*filter_conditions(filters))
        .group_by(day, c.locale, c.policy_version, c.site, c.action, c.granted)
        .order_by(day)
    )
    with store.engine.connect() as conn:
        return [
            CountRow(str(d), loc, pol, site, action, tuple(_split(granted)), int(n))
            for d, loc, pol, site, action, granted, n in conn.execute(query)
        ]
