"""The outage spool: decisions acknowledged while the database was unreachable.

When a decision cannot be written to the log, it is written here instead, durably, before the
visitor is told anything: one small JSON file per decision, written under a temporary name,
``fsync``-ed, renamed into place (atomic) and the directory ``fsync``-ed. A reader therefore
never sees a torn or half-written record, and several worker processes can spool at the same
time without sharing a file or a lock.

Replay reads the files oldest first and inserts each decision unless its ``event_id`` is
already in the log (a decision whose commit succeeded but whose answer was lost is spooled
too, and must not become two rows). A file is deleted only after its row is committed. Only
one process replays a spool directory at a time (``flock`` on ``.replay.lock``); the others
skip replay and carry on. A file that cannot be read as a spooled decision is moved to
``quarantine/`` with an error in the log, never deleted.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from .store import STORE_ERRORS, ConsentStore, NewRecord, NoticeCopy, as_utc
from .tables import records

log = logging.getLogger("consentkit")

#: Version of the spool file format.
SPOOL_FORMAT = 1
SUFFIX = ".json"
TMP_PREFIX = ".tmp-"
LOCK_NAME = ".replay.lock"
QUARANTINE = "quarantine"
#: A temporary file older than this was never acknowledged (its writer died before the
#: rename): replay removes it.
STALE_TMP_SECONDS = 3600
#: Spool files replayed per existence query.
REPLAY_BATCH = 100
#: How old a folder's modification time must be before an empty scan is trusted until it
#: changes (file systems keep times in ticks of up to a few milliseconds; some in seconds).
SETTLED_NS = 2_000_000_000

_TUPLE_FIELDS = ("granted", "denied", "withdrawn")
_TIME_FIELDS = ("occurred_at", "expires_at")


class SpoolError(ValueError):
    """A spool file that is not a well-formed spooled decision."""


@dataclass(slots=True)
class ReplayResult:
    """What one replay did."""

    inserted: int = 0
    duplicates: int = 0  # already in the log (written before the failure was seen)
    quarantined: int = 0
    remaining: int = 0  # still spooled after this replay
    busy: bool = False  # another process holds the replay lock: nothing was done
    error: str | None = None  # the database failed again during replay
    inserted_ids: list[str] = field(default_factory=list)


def encode(new: NewRecord, notice: NoticeCopy) -> bytes:
    """A spooled decision: every column of the row and the full notice copy."""
    if new.notice_hash != notice.notice_hash:
        raise ValueError("record and notice disagree on the notice hash")
    row: dict[str, Any] = {}
    for name in NewRecord.__slots__:
        value = getattr(new, name)
        if name in _TIME_FIELDS:
            value = as_utc(value).isoformat()
        elif name in _TUPLE_FIELDS:
            value = list(value)
        row[name] = value
    document = {
        "format": SPOOL_FORMAT,
        "record": row,
        "notice": {
            "notice_hash": notice.notice_hash,
            "locale": notice.locale,
            "policy_version": notice.policy_version,
            "texts": notice.texts,
        },
    }
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"


def decode(data: bytes) -> tuple[NewRecord, NoticeCopy]:
    """The inverse of :func:`encode`; :class:`SpoolError` on anything else."""
    try:
        document = json.loads(data.decode("utf-8"))
        if document["format"] != SPOOL_FORMAT:
            raise SpoolError(f"unknown spool format {document['format']!r}")
        row = dict(document["record"])
        for name in _TIME_FIELDS:
            row[name] = as_utc(datetime.fromisoformat(row[name]))
        for name in _TUPLE_FIELDS:
            if not isinstance(row[name], list):
                raise SpoolError(f"{name} is not a list")
            row[name] = tuple(row[name])
        new = NewRecord(**row)
        notice = NoticeCopy(**document["notice"])
    except SpoolError:
        raise
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise SpoolError(f"not a spooled decision: {exc.__class__.__name__}: {exc}") from None
    if new.notice_hash != notice.notice_hash:
        raise SpoolError("record and notice disagree on the notice hash")
    return new, notice


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def existing_events(store: ConsentStore, event_ids: list[str]) -> set[str]:
    """Which of these event ids are already in the log (one query)."""
    if not event_ids:
        return set()
    with store.engine.connect() as conn:
        found = conn.execute(
            select(records.c.event_id).where(records.c.event_id.in_(event_ids))
        ).scalars()
        return set(found)


def _insert_new(store: ConsentStore, new: NewRecord, notice: NoticeCopy) -> int | None:
    try:
        return store.record(new, notice)
    except IntegrityError:
        # The unique event_id: someone inserted it between our check and our insert.
        if existing_events(store, [new.event_id]):
            return None
        raise


def record_once(store: ConsentStore, new: NewRecord, notice: NoticeCopy) -> int | None:
    """Append ``new`` unless a row with its ``event_id`` exists; the new record id, or
    ``None`` for a duplicate. Goes through :meth:`ConsentStore.record`, so a replayed row is
    written exactly like a live one (with its tamper-evidence columns)."""
    store.create_all()
    if existing_events(store, [new.event_id]):
        return None
    return _insert_new(store, new, notice)


class Spool:
    """An append-only spool directory (one per host; any number of worker processes)."""

    def __init__(self, directory: str) -> None:
        self.directory = os.path.abspath(directory)
        # The folder's modification time when a scan last found it empty (see
        # has_pending), or None.
        self._empty_at: int | None = None

    # -- writing -------------------------------------------------------------------------

    def _ensure_dir(self) -> None:
        # Every time (one stat when it exists): the folder may have been removed since.
        os.makedirs(self.directory, mode=0o700, exist_ok=True)

    def write(self, new: NewRecord, notice: NoticeCopy) -> str:
        """Write one decision durably; returns its path. Raises ``OSError`` when it cannot
        be made durable (then the decision must not be acknowledged)."""
        data = encode(new, notice)
        self._ensure_dir()
        # Sortable by decision time, then unique by event id.
        stamp = int(as_utc(new.occurred_at).timestamp() * 1_000_000)
        name = f"{stamp:020d}-{new.event_id}{SUFFIX}"
        final = os.path.join(self.directory, name)
        tmp = os.path.join(self.directory, f"{TMP_PREFIX}{os.getpid()}-{name}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            try:
                view = memoryview(data)
                while view:
                    written = os.write(fd, view)
                    view = view[written:]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.rename(tmp, final)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        _fsync_dir(self.directory)
        return final

    # -- reading -------------------------------------------------------------------------

    def files(self) -> list[str]:
        """Spooled decisions, oldest first (file names)."""
        try:
            names = os.listdir(self.directory)
        except FileNotFoundError:
            return []
        return sorted(n for n in names if n.endswith(SUFFIX) and not n.startswith("."))

    def has_pending(self) -> bool:
        """Cheap check for the request path: is anything waiting?

        One ``stat`` when nothing changed: adding or removing a file changes the folder's
        modification time, so a folder found empty stays empty until that time moves. The
        shortcut is taken only once that time is :data:`SETTLED_NS` old, so that a file
        added within the same clock tick as the scan is never missed."""
        try:
            mtime = os.stat(self.directory).st_mtime_ns
        except FileNotFoundError:
            return False
        if mtime == self._empty_at:
            return False
        try:
            with os.scandir(self.directory) as entries:
                pending = any(
                    e.name.endswith(SUFFIX) and not e.name.startswith(".") for e in entries
                )
        except FileNotFoundError:
            return False
        settled = time.time_ns() - mtime > SETTLED_NS
        self._empty_at = mtime if not pending and settled else None
        return pending

    def pending(self) -> int:
        return len(self.files())

    def quarantined(self) -> list[str]:
        try:
            return sorted(os.listdir(os.path.join(self.directory, QUARANTINE)))
        except FileNotFoundError:
            return []

    def read(self, name: str) -> tuple[NewRecord, NoticeCopy]:
        with open(os.path.join(self.directory, name), "rb") as fh:
            return decode(fh.read())

    def writable(self) -> bool:
        """Whether a decision could be spooled now (for the health check)."""
        try:
            self._ensure_dir()
        except OSError:
            return False
        return os.access(self.directory, os.W_OK | os.X_OK)

    # -- replay --------------------------------------------------------------------------

    @contextlib.contextmanager
    def _replay_lock(self, wait: bool) -> Iterator[bool]:
        self._ensure_dir()
        fd = os.open(os.path.join(self.directory, LOCK_NAME), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            except OSError as exc:
                if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    yield False
                    return
                raise
            try:
                yield True
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def replay(
        self,
        store: ConsentStore,
        *,
        wait: bool = False,
        max_records: int | None = None,
        max_seconds: float | None = None,
    ) -> ReplayResult:
        """Insert spooled decisions into the log, oldest first, and delete their files.

        ``wait=False`` returns at once (``busy``) when another process is replaying.
        ``max_records`` / ``max_seconds`` bound the work (the request path replays a little
        at a time); database errors stop the replay and are reported, never raised.
        """
        result = ReplayResult()
        if not self.has_pending():
            return result
        with self._replay_lock(wait) as locked:
            if not locked:
                result.busy = True
                result.remaining = self.pending()
                return result
            started = time.monotonic()
            names = self.files()
            if max_records is not None:
                names = names[:max_records]
            for offset in range(0, len(names), REPLAY_BATCH):
                if not self._replay_batch(
                    store, names[offset : offset + REPLAY_BATCH], result, started, max_seconds
                ):
                    break
            self._remove_stale_tmp()
            result.remaining = self.pending()
        if result.inserted or result.duplicates:
            log.info(
                "consentkit: replayed %d spooled decision(s) (%d already logged), %d left",
                result.inserted,
                result.duplicates,
                result.remaining,
            )
        return result

    def _replay_batch(
        self,
        store: ConsentStore,
        names: list[str],
        result: ReplayResult,
        started: float,
        max_seconds: float | None,
    ) -> bool:
        """Replay some files (one query finds those already logged). False: stop here."""
        if max_seconds is not None and time.monotonic() - started > max_seconds:
            return False
        batch: list[tuple[str, NewRecord, NoticeCopy]] = []
        for name in names:
            try:
                batch.append((name, *self.read(name)))
            except FileNotFoundError:
                continue  # replayed and removed by a flush that ran before we locked
            except (SpoolError, OSError) as exc:
                self._quarantine(name, exc)
                result.quarantined += 1
        try:
            store.create_all()
            logged = existing_events(store, [new.event_id for _, new, _ in batch])
        except STORE_ERRORS as exc:
            result.error = f"{exc.__class__.__name__}: {exc}"
            return False
        for name, new, notice in batch:
            if max_seconds is not None and time.monotonic() - started > max_seconds:
                return False
            if new.event_id in logged:
                result.duplicates += 1
            else:
                try:
                    record_id = _insert_new(store, new, notice)
                except STORE_ERRORS as exc:
                    result.error = f"{exc.__class__.__name__}: {exc}"
                    return False
                if record_id is None:
                    result.duplicates += 1
                else:
                    result.inserted += 1
                    result.inserted_ids.append(new.event_id)
                logged.add(new.event_id)
            # Committed: the file may go. If the unlink is lost in a crash, the next replay
            # finds the event id in the log and counts a duplicate.
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(self.directory, name))
        return True

    def _quarantine(self, name: str, exc: Exception) -> None:
        target_dir = os.path.join(self.directory, QUARANTINE)
        os.makedirs(target_dir, mode=0o700, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            os.replace(os.path.join(self.directory, name), os.path.join(target_dir, name))
        log.error(
            "consentkit: spool file %s cannot be replayed (%s); moved to %s",
            name,
            exc,
            target_dir,
        )

    def _remove_stale_tmp(self) -> None:
        try:
            names = os.listdir(self.directory)
        except FileNotFoundError:
            return
        limit = time.time() - STALE_TMP_SECONDS
        for name in names:
            if name.startswith(TMP_PREFIX):
                path = os.path.join(self.directory, name)
                with contextlib.suppress(OSError):
                    if os.stat(path).st_mtime < limit:
                        os.unlink(path)


#: How long a request may spend replaying older spooled decisions before its own.
REQUEST_REPLAY_SECONDS = 0.25


def replay_some(store: ConsentStore, spool: Spool | None) -> ReplayResult | None:
    """On the request path, before reading the log: when decisions are spooled, replay
    them for at most :data:`REQUEST_REPLAY_SECONDS` (oldest first), so that a visitor's
    earlier decisions are in the log before their next one is decided and written. Costs
    one directory scan when nothing is spooled; never raises."""
    if spool is None:
        return None
    try:
        if not spool.has_pending():
            return None
        return spool.replay(store, max_seconds=REQUEST_REPLAY_SECONDS)
    except OSError:
        log.exception("consentkit: could not replay the spool")
        return None


class NotDurable(OSError):
    """A decision could be neither logged nor spooled: it must not be acknowledged."""


def record_or_spool(
    store: ConsentStore,
    spool: Spool | None,
    new: NewRecord,
    notice: NoticeCopy,
    *,
    store_reachable: bool = True,
) -> int | None:
    """Log a decision, or spool it when the log cannot be written.

    Returns the record id, or ``None`` when the decision was spooled. Raises
    :class:`NotDurable` (or, without a spool, the store's own error) when the decision is
    in neither place. ``store_reachable=False`` (the request already saw the store fail)
    goes straight to the spool.
    """
    if store_reachable:
        try:
            return store.record(new, notice)
        except STORE_ERRORS as exc:
            if spool is None:
                raise
            log.warning(
                "consentkit: the consent log is unreachable (%s: %s); spooling decision %s",
                exc.__class__.__name__,
                str(exc).splitlines()[0] if str(exc) else "",
                new.event_id,
            )
    if spool is None:
        raise NotDurable(errno.EIO, "the consent log is unreachable and no spool is configured")
    try:
        spool.write(new, notice)
    except OSError as exc:
        log.exception("consentkit: could not spool decision %s", new.event_id)
        raise NotDurable(exc.errno or errno.EIO, f"spool not writable: {exc}") from exc
    return None
