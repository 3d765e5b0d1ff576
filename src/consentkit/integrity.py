"""Tamper evidence for the consent log. Pure: no Flask, no database.

The scheme (threat model and limits in the DPO documentation):

- Every writer (a process's connection in use, see :class:`StreamPool`) appends to its own
  *stream*: a random id and a counter 1, 2, 3, … held in memory. A row stores its stream id,
  its position, the id of the log key, and an HMAC-SHA256 over the position and the row's
  content. Writing costs one HMAC and no extra query, and writers never wait for each other.
- Without the key nobody can produce a valid MAC, so a modified row or a forged row shows up;
  positions are covered by the MAC and numbered without gaps, so a deleted row leaves a hole.
- The DPO tools keep a *ledger*: entries numbered without gaps, each MAC'd. Purges and
  erasures list the positions they removed, so their holes are explained; every entry also
  records the head (highest position) of each stream, so deleting the newest rows of a stream
  is caught once a later entry (a ``seal``) has seen them.
"""

from __future__ import annotations

import bisect
import hashlib
import hmac
import json
import os
import secrets
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from .columns import CONTRACT_COLUMNS
from .keys import derive_key

RECORD_MAC_VERSION = "consentkit-record/1"
LEDGER_MAC_VERSION = "consentkit-ledger/1"

#: The record fields a MAC covers, besides the stream position. ``record_id`` (assigned by
#: the database after the MAC is computed) and ``event_id`` (only used to de-duplicate
#: replays) are not covered.
MAC_FIELDS: tuple[str, ...] = CONTRACT_COLUMNS[1:]

#: Kinds of problem :class:`Verifier` reports, in report order.
PROBLEM_KINDS: tuple[str, ...] = (
    "modified",
    "inserted",
    "deleted",
    "reordered",
    "unknown-key",
    "ledger-modified",
    "ledger-deleted",
    "rolled-back",
    "notice-modified",
    "notice-missing",
)


def iso(value: datetime) -> str:
    """UTC time as ISO 8601 with a ``Z``; naive values are UTC (SQLite returns those)."""
    if value.tzinfo is None:
        return value.isoformat() + "Z"
    if value.tzinfo is not UTC:
        value = value.astimezone(UTC)
    return value.isoformat()[:-6] + "Z"  # drop "+00:00"


_CANONICAL = json.JSONEncoder(ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def canonical(value: Any) -> str:
    return _CANONICAL.encode(value)


# -- keys --------------------------------------------------------------------------------


def key_id(key: bytes) -> str:
    """A public fingerprint naming a log key, stored beside each MAC (for rotation)."""
    return derive_key(key, "log-key-id").hex()[:16]


class LogKeys:
    """The log keys: the first signs, all of them verify (older keys after a rotation)."""

    def __init__(self, keys: Sequence[bytes]) -> None:
        if not keys:
            raise ValueError("at least one log key is needed")
        self.current = keys[0]
        self.current_id = key_id(keys[0])
        self._by_id = {key_id(k): k for k in reversed(keys)}
        self._by_id[self.current_id] = self.current

    def sign(self, message: bytes) -> tuple[str, str]:
        return self.current_id, hmac.digest(self.current, message, "sha256").hex()

    def check(self, kid: str | None, message: bytes, mac: str | None) -> bool | None:
        """True/False, or None when ``kid`` names no configured key."""
        key = self._by_id.get(kid or "")
        if key is None:
            return None
        expected = hmac.digest(key, message, "sha256").hex()
        return hmac.compare_digest(expected, mac or "")

    def knows(self, kid: str | None) -> bool:
        return (kid or "") in self._by_id


def _when(value: Any) -> Any:
    return iso(value) if isinstance(value, datetime) else value


def record_message(stream_id: str, stream_seq: int, record: Mapping[str, Any]) -> bytes:
    """What a record's MAC covers. ``record`` maps :data:`MAC_FIELDS` to values as the store
    returns them (datetimes, lists, bool) or as an export writes them (ISO strings)."""
    # Spelled out (not a loop over MAC_FIELDS): this runs once per record in verify.
    r = record
    parts = [
        RECORD_MAC_VERSION,
        stream_id,
        int(stream_seq),
        _when(r["occurred_at"]),
        r["site"],
        r["subject"],
        r["action"],
        r["surface"],
        list(r["granted"]),
        list(r["denied"]),
        list(r["withdrawn"]),
        r["policy_version"],
        r["locale"],
        r["notice_hash"],
        bool(r["gpc"]),
        _when(r["expires_at"]),
    ]
    return _CANONICAL.encode(parts).encode("utf-8")


def ledger_message(seq: int, kind: str, occurred_at: datetime | str, details: str) -> bytes:
    when = occurred_at if isinstance(occurred_at, str) else iso(occurred_at)
    return canonical([LEDGER_MAC_VERSION, int(seq), kind, when, details]).encode("utf-8")


def notice_digest(texts: str) -> str:
    """A notice is content-addressed: its hash is the SHA-256 of its canonical texts."""
    return hashlib.sha256(texts.encode("utf-8")).hexdigest()


# -- writer streams ----------------------------------------------------------------------


@dataclass(slots=True)
class Stream:
    stream_id: str
    next_seq: int = 1


class StreamPool:
    """Streams of one process. A writer takes a stream for one insert and gives it back, so
    concurrent writers in threads use different streams and never wait for each other.

    A stream is given back *advanced* only when its row was committed. After any error the
    stream is dropped: whether the row committed or not, the stream ends on a row that
    exists, so no hole can appear.
    """

    def __init__(self) -> None:
        self._free: list[Stream] = []
        self._lock = threading.Lock()
        self._pid = os.getpid()

    def acquire(self) -> Stream:
        with self._lock:
            if self._pid != os.getpid():
                # A forked worker (gunicorn --preload) must not continue its parent's
                # streams: two processes would write the same positions.
                self._free = []
                self._pid = os.getpid()
            if self._free:
                return self._free.pop()
        return Stream(secrets.token_urlsafe(16))  # 128 bits: never collides in practice

    def release(self, stream: Stream, *, used: bool) -> None:
        if used:
            stream.next_seq += 1
        with self._lock:
            self._free.append(stream)

    def discard(self, stream: Stream) -> None:
        """Forget a stream after an error (see the class docstring)."""


# -- sets of positions -------------------------------------------------------------------


def to_ranges(positions: Iterable[int]) -> list[list[int]]:
    """``[1, 2, 3, 7]`` -> ``[[1, 3], [7, 7]]`` (compact form stored in the ledger)."""
    ranges: list[list[int]] = []
    for pos in sorted(set(positions)):
        if ranges and pos == ranges[-1][1] + 1:
            ranges[-1][1] = pos
        else:
            ranges.append([pos, pos])
    return ranges


class RangeSet:
    """Positions per stream, kept as merged ``[start, end]`` ranges."""

    def __init__(self) -> None:
        self._pending: dict[str, list[tuple[int, int]]] = {}
        self._starts: dict[str, list[int]] = {}
        self._ends: dict[str, list[int]] = {}

    def add(self, stream_id: str, start: int, end: int) -> None:
        self._pending.setdefault(stream_id, []).append((start, end))
        self._starts.pop(stream_id, None)

    def add_ranges(self, removed: Mapping[str, Sequence[Sequence[int]]]) -> None:
        for stream_id, ranges in removed.items():
            for start, end in ranges:
                self.add(stream_id, int(start), int(end))

    def _merged(self, stream_id: str) -> tuple[list[int], list[int]]:
        if stream_id not in self._starts:
            merged: list[list[int]] = []
            for start, end in sorted(self._pending.get(stream_id, [])):
                if merged and start <= merged[-1][1] + 1:
                    merged[-1][1] = max(merged[-1][1], end)
                else:
                    merged.append([start, end])
            self._pending[stream_id] = [(a, b) for a, b in merged]
            self._starts[stream_id] = [a for a, _ in merged]
            self._ends[stream_id] = [b for _, b in merged]
        return self._starts[stream_id], self._ends[stream_id]

    def max(self, stream_id: str) -> int:
        ends = self._merged(stream_id)[1]
        return ends[-1] if ends else 0

    def streams(self) -> list[str]:
        return list(self._pending)

    def uncovered(self, stream_id: str, start: int, end: int) -> list[tuple[int, int]]:
        """The parts of ``start..end`` (inclusive) not in the set."""
        starts, ends = self._merged(stream_id)
        out: list[tuple[int, int]] = []
        pos = start
        i = max(bisect.bisect_right(starts, pos) - 1, 0)
        while pos <= end:
            if i < len(starts) and starts[i] <= pos <= ends[i]:
                pos = ends[i] + 1
                i += 1
                continue
            if i < len(starts) and ends[i] < pos:
                i += 1
                continue
            nxt = starts[i] if i < len(starts) else end + 1
            stop = min(end, nxt - 1)
            out.append((pos, stop))
            pos = stop + 1
        return out


# -- verification ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Problem:
    kind: str
    message: str
    record_id: int | None = None
    stream_id: str | None = None
    positions: tuple[int, int] | None = None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind, "message": self.message}
        if self.record_id is not None:
            out["record_id"] = self.record_id
        if self.stream_id is not None:
            out["stream_id"] = self.stream_id
        if self.positions is not None:
            out["positions"] = list(self.positions)
        return out


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    seq: int
    kind: str
    occurred_at: datetime
    details: str  # canonical JSON, exactly as MAC'd
    key_id: str
    mac: str

    def parsed(self) -> dict[str, Any]:
        value = json.loads(self.details)
        return value if isinstance(value, dict) else {}


@dataclass(slots=True)
class Report:
    records: int = 0
    signed: int = 0
    streams: int = 0
    ledger_entries: int = 0
    notices: int = 0
    head: dict[str, Any] | None = None
    counts: dict[str, int] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    max_listed: int = 1000

    @property
    def ok(self) -> bool:
        return not self.counts

    def add(self, problem: Problem, *, weight: int = 1) -> None:
        self.counts[problem.kind] = self.counts.get(problem.kind, 0) + weight
        if len(self.problems) < self.max_listed:
            self.problems.append(problem)

    def state(self) -> dict[str, Any]:
        """A summary for manifests and the ledger (no record content, no subject)."""
        return {
            "intact": self.ok,
            "records": self.records,
            "streams": self.streams,
            "ledger_entries": self.ledger_entries,
            "notices": self.notices,
            "problems": dict(sorted(self.counts.items())),
            "ledger_head": self.head,
        }

    def as_dict(self) -> dict[str, Any]:
        ordered = sorted(
            self.problems,
            key=lambda p: (PROBLEM_KINDS.index(p.kind), p.stream_id or "", p.record_id or 0),
        )
        return {**self.state(), "listed": [p.as_dict() for p in ordered]}


class Verifier:
    """Checks a log streamed through it: ledger first, then records ordered by
    ``(stream_id, stream_seq)`` (unsigned rows anywhere), then notices; then :meth:`finish`.

    Memory holds per-stream counters, the removed ranges and the holes found, never the
    records themselves.
    """

    def __init__(self, keys: LogKeys, *, anchors: Iterable[tuple[int, str]] = ()) -> None:
        self.keys = keys
        self.report = Report()
        self.removed = RangeSet()
        self.heads: dict[str, int] = {}
        self.anchors = list(anchors)
        self._anchor_macs: dict[int, str] = {}
        self._ledger_seen: set[int] = set()
        self._ledger_max = 0
        self._seen_max: dict[str, int] = {}
        self._holes: list[tuple[str, int, int]] = []
        # The stream being read: its id, last position and record id, and its bad rows.
        self._stream: str | None = None
        self._last_seq = 0
        self._last_record_id = 0
        self._max_valid = 0
        self._bad: list[tuple[int, int]] = []  # (record_id, seq) with an invalid MAC

    # ledger

    def add_ledger(self, entries: Iterable[LedgerEntry]) -> None:
        """Ledger entries in ``seq`` order (may be called again with entries written since:
        already seen ones are skipped)."""
        for entry in entries:
            if entry.seq in self._ledger_seen:
                continue
            self._ledger_seen.add(entry.seq)
            self._anchor_macs[entry.seq] = entry.mac
            if entry.seq > self._ledger_max:
                self._ledger_max = entry.seq
            ok = self.keys.check(
                entry.key_id,
                ledger_message(entry.seq, entry.kind, entry.occurred_at, entry.details),
                entry.mac,
            )
            if ok is None:
                self.report.add(
                    Problem(
                        "unknown-key",
                        f"ledger entry {entry.seq} is signed with key {entry.key_id!r}, which "
                        "is not configured (add it to CONSENTKIT_LOG_KEY_FALLBACKS)",
                    )
                )
                continue
            if not ok:
                self.report.add(
                    Problem(
                        "ledger-modified",
                        f"ledger entry {entry.seq} ({entry.kind}) does not match its MAC",
                    )
                )
                continue  # a forged entry explains nothing
            try:
                details = entry.parsed()
            except ValueError:
                details = {}
            for stream_id, head in (details.get("heads") or {}).items():
                if int(head) > self.heads.get(stream_id, 0):
                    self.heads[stream_id] = int(head)
            self.removed.add_ranges(details.get("removed") or {})
            self.report.head = {"seq": entry.seq, "mac": entry.mac}

    # records

    def add_record(self, row: Mapping[str, Any]) -> None:
        """One row: ``record_id``, ``stream_id``, ``stream_seq``, ``key_id``, ``mac`` and the
        :data:`MAC_FIELDS`."""
        self.report.records += 1
        record_id = int(row["record_id"])
        stream_id, seq = row.get("stream_id"), row.get("stream_seq")
        if stream_id is None or seq is None:
            self.report.add(
                Problem(
                    "inserted",
                    f"record {record_id} has no MAC: written outside consentkit (or before "
                    "tamper evidence and never adopted)",
                    record_id=record_id,
                )
            )
            return
        seq = int(seq)
        if stream_id != self._stream:
            self._end_stream()
            self._stream = stream_id
            self.report.streams += 1
        if seq <= self._last_seq:
            self.report.add(
                Problem(
                    "inserted",
                    f"record {record_id} repeats position {seq} of stream {stream_id}",
                    record_id=record_id,
                    stream_id=stream_id,
                    positions=(seq, seq),
                )
            )
            return
        if seq > self._last_seq + 1:
            self._hole(stream_id, self._last_seq + 1, seq - 1)
        if record_id < self._last_record_id:
            self.report.add(
                Problem(
                    "reordered",
                    f"record {record_id} (stream {stream_id}, position {seq}) has a smaller "
                    f"record id than the row before it in its stream ({self._last_record_id})",
                    record_id=record_id,
                    stream_id=stream_id,
                )
            )
        self._last_seq = seq
        self._last_record_id = record_id
        if row.get("mac") is None or row.get("key_id") is None:
            ok: bool | None = False  # a MAC wiped from a genuine position
        else:
            ok = self.keys.check(row["key_id"], record_message(stream_id, seq, row), row["mac"])
        if ok is None:
            self.report.add(
                Problem(
                    "unknown-key",
                    f"record {record_id} is signed with key {row.get('key_id')!r}, which is "
                    "not configured (add it to CONSENTKIT_LOG_KEY_FALLBACKS)",
                    record_id=record_id,
                    stream_id=stream_id,
                )
            )
        elif ok:
            self.report.signed += 1
            self._max_valid = seq
        else:
            self._bad.append((record_id, seq))

    def _hole(self, stream_id: str, start: int, end: int) -> None:
        for a, b in self.removed.uncovered(stream_id, start, end):
            self._holes.append((stream_id, a, b))

    def _end_stream(self) -> None:
        if self._stream is None:
            return
        stream_id = self._stream
        # A bad MAC at a position a genuine row (or a seal) vouches for is a modified row;
        # past every genuine position of its stream, it is a forged, inserted one. A stream
        # nothing vouches for is ambiguous (a changed row, or a made-up stream): "modified".
        known = max(self._max_valid, self.heads.get(stream_id, 0))
        for record_id, seq in self._bad:
            if seq <= known or known == 0:
                self.report.add(
                    Problem(
                        "modified",
                        f"record {record_id} (stream {stream_id}, position {seq}) does not "
                        "match its MAC: its content was changed",
                        record_id=record_id,
                        stream_id=stream_id,
                        positions=(seq, seq),
                    )
                )
            else:
                self.report.add(
                    Problem(
                        "inserted",
                        f"record {record_id} (stream {stream_id}, position {seq}) has an "
                        "invalid MAC past the stream's last genuine row: it was added",
                        record_id=record_id,
                        stream_id=stream_id,
                        positions=(seq, seq),
                    )
                )
        self._seen_max[stream_id] = max(self._last_seq, self._seen_max.get(stream_id, 0))
        self._stream = None
        self._last_seq = 0
        self._last_record_id = 0
        self._max_valid = 0
        self._bad = []

    # notices

    def add_notice(self, notice_hash: str, texts: str) -> None:
        self.report.notices += 1
        if notice_digest(texts) != notice_hash:
            self.report.add(
                Problem(
                    "notice-modified",
                    f"notice {notice_hash[:12]}…: its texts no longer hash to its id",
                )
            )

    def missing_notices(self, hashes: Iterable[str]) -> None:
        for notice_hash in hashes:
            self.report.add(
                Problem(
                    "notice-missing",
                    f"notice {notice_hash[:12]}… is referenced by records but not stored",
                )
            )

    # end

    def finish(self, late_ledger: Iterable[LedgerEntry] = ()) -> Report:
        """Conclude. ``late_ledger``: the ledger re-read at the end, so that a purge that ran
        during verification explains the holes it made."""
        self._end_stream()
        self.add_ledger(late_ledger)
        self.report.ledger_entries = len(self._ledger_seen)
        missing = [s for s in range(1, self._ledger_max + 1) if s not in self._ledger_seen]
        for a, b in to_ranges(missing):
            self.report.add(
                Problem(
                    "ledger-deleted",
                    f"ledger entries {a}-{b} are missing"
                    if a != b
                    else f"ledger entry {a} is missing",
                ),
                weight=b - a + 1,
            )
        for seq, _mac in self.anchors:
            if seq not in self._ledger_seen:
                self.report.add(
                    Problem(
                        "rolled-back",
                        f"the anchor names ledger entry {seq}, which the log no longer has: "
                        "the log was rolled back or truncated",
                    )
                )
        self._check_anchor_macs()
        # Rows cut from the end of a stream: positions up to the highest head the ledger saw.
        for stream_id, head in self.heads.items():
            seen = self._seen_max.get(stream_id, 0)
            if head > seen:
                self._hole(stream_id, seen + 1, head)
        for stream_id, a, b in self._holes:
            for x, y in self.removed.uncovered(stream_id, a, b):
                where = f"position {x}" if x == y else f"positions {x}-{y}"
                self.report.add(
                    Problem(
                        "deleted",
                        f"stream {stream_id}: {where} missing (deleted outside consentkit)",
                        stream_id=stream_id,
                        positions=(x, y),
                    ),
                    weight=y - x + 1,
                )
        return self.report

    def _check_anchor_macs(self) -> None:
        for seq, mac in self.anchors:
            stored = self._anchor_macs.get(seq)
            if stored is not None and not hmac.compare_digest(stored, mac):
                self.report.add(
                    Problem(
                        "rolled-back",
                        f"ledger entry {seq} differs from the anchor: the ledger was rewritten",
                    )
                )
