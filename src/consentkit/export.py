"""Streaming writers for the consent log (CSV, JSON, NDJSON), the manifest, and the check of
an export against its manifest. Pure: no Flask, no database.

Writers are generators of text chunks, one record at a time, so memory stays flat however
many records there are, and the same code feeds a file or a streamed HTTP response.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from itertools import islice
from typing import Any, Protocol, TextIO, runtime_checkable

from .columns import INTEGRITY_COLUMNS, LOG_COLUMNS
from .integrity import LogKeys, canonical, iso, notice_digest, record_message

#: The contract's log columns, then the tamper-evidence columns, in export order.
COLUMNS: tuple[str, ...] = LOG_COLUMNS
FORMATS = ("csv", "json", "ndjson")
EXPORT_FORMAT = "consentkit-export/1"
MANIFEST_FORMAT = "consentkit-export-manifest/1"
_LIST_COLUMNS = frozenset({"granted", "denied", "withdrawn"})
_INT_COLUMNS = frozenset({"record_id", "stream_seq"})
# A spreadsheet runs a cell starting with one of these as a formula (CSV injection). The
# apostrophe is also escaped so that the escaping can be undone exactly.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_ESCAPE = "'"
BOM = "\ufeff"
# Rows per text chunk a writer yields: small enough to stream, large enough to be cheap.
_ROWS_PER_CHUNK = 200

__all__ = [
    "COLUMNS",
    "FORMATS",
    "WRITERS",
    "ExportCheck",
    "RowSource",
    "Tally",
    "build_manifest",
    "csv_cell",
    "iso",
    "iter_export",
    "json_record",
    "parse_utc",
    "verify_export",
]


def json_record(record: Mapping[str, Any]) -> dict[str, Any]:
    """A record with the export columns only, JSON-ready."""
    out: dict[str, Any] = {}
    for column in COLUMNS:
        value = record.get(column)
        out[column] = iso(value) if isinstance(value, datetime) else value
    return out


def _neutralise(text: str) -> str:
    return _ESCAPE + text if text.startswith((*_FORMULA_START, _ESCAPE)) else text


def csv_cell(value: Any) -> str:
    """One CSV cell: text a spreadsheet never evaluates (a leading apostrophe when needed)."""
    if isinstance(value, datetime):
        return iso(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return _neutralise(";".join(str(v) for v in value))
    return _neutralise("" if value is None else str(value))


_FIRST = frozenset((*_FORMULA_START, _ESCAPE))


def _text_cell(value: Any) -> str:
    if value.__class__ is str:  # the common case first: this runs ~14 times a row
        text: str = value
    elif value is None:
        return ""
    else:
        text = str(value)
    return _ESCAPE + text if text[:1] in _FIRST else text


def _time_cell(value: Any) -> str:
    if value.__class__ is datetime:
        text: str = value.isoformat()
        if value.tzinfo is None:
            return text + "Z"  # naive times are UTC (SQLite returns those)
        if text.endswith("+00:00"):
            return text[:-6] + "Z"  # already UTC (whatever the tzinfo): no conversion
    return iso(value) if isinstance(value, datetime) else _text_cell(value)


@lru_cache(maxsize=256)
def _categories_cell(stored: str) -> str:
    """The cell of a category list as the log stores it (comma-separated names), as
    :func:`_csv_row` writes the list. A handful of distinct values: each converted once."""
    return _text_cell(";".join(name for name in stored.split(",") if name))


def _csv_row(r: Mapping[str, Any]) -> list[str]:
    """:func:`csv_cell` for every column, spelled out: this runs once per exported record."""
    seq = r.get("stream_seq")
    return [
        str(r["record_id"]),
        _time_cell(r["occurred_at"]),
        _text_cell(r["site"]),
        _text_cell(r["subject"]),
        _text_cell(r["action"]),
        _text_cell(r["surface"]),
        _text_cell(";".join(r["granted"])),
        _text_cell(";".join(r["denied"])),
        _text_cell(";".join(r["withdrawn"])),
        _text_cell(r["policy_version"]),
        _text_cell(r["locale"]),
        _text_cell(r["notice_hash"]),
        "true" if r["gpc"] else "false",
        _time_cell(r["expires_at"]),
        _text_cell(r.get("stream_id")),
        "" if seq is None else str(seq),
        _text_cell(r.get("key_id")),
        _text_cell(r.get("mac")),
    ]


def _csv_db_row(row: Sequence[Any]) -> list[str]:
    """:func:`_csv_row` for a :class:`RowSource` row: the same cells, without a dict."""
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
    return [
        str(record_id),
        _time_cell(occurred_at),
        _text_cell(site),
        _text_cell(subject),
        _text_cell(action),
        _text_cell(surface),
        _categories_cell(granted),
        _categories_cell(denied),
        _categories_cell(withdrawn),
        _text_cell(policy_version),
        _text_cell(locale),
        _text_cell(notice_hash),
        "true" if gpc else "false",
        _time_cell(expires_at),
        _text_cell(stream_id),
        "" if stream_seq is None else str(stream_seq),
        _text_cell(key_id),
        _text_cell(mac),
    ]


def _untext(cell: str) -> str:
    return cell[1:] if cell[:1] == _ESCAPE else cell


def _unlist(cell: str) -> list[str]:
    return [v for v in _untext(cell).split(";") if v]


def _csv_record(row: Sequence[str]) -> dict[str, Any]:
    """:func:`csv_value` for every column of a CSV row, spelled out (once per record)."""
    seq = _untext(row[15])
    return {
        "record_id": int(_untext(row[0])),
        "occurred_at": _untext(row[1]),
        "site": _untext(row[2]),
        "subject": _untext(row[3]),
        "action": _untext(row[4]),
        "surface": _untext(row[5]),
        "granted": _unlist(row[6]),
        "denied": _unlist(row[7]),
        "withdrawn": _unlist(row[8]),
        "policy_version": _untext(row[9]),
        "locale": _untext(row[10]),
        "notice_hash": _untext(row[11]),
        "gpc": row[12] == "true",
        "expires_at": _untext(row[13]),
        "stream_id": _untext(row[14]) or None,
        "stream_seq": int(seq) if seq else None,
        "key_id": _untext(row[16]) or None,
        "mac": _untext(row[17]) or None,
    }


def csv_value(column: str, cell: str) -> Any:
    """Undo :func:`csv_cell` for one column (reading an export back)."""
    text = cell[1:] if cell.startswith(_ESCAPE) else cell
    if column in _LIST_COLUMNS:
        return [v for v in text.split(";") if v]
    if column == "gpc":
        return text == "true"
    if column in _INT_COLUMNS:
        return int(text) if text else None
    if column in INTEGRITY_COLUMNS and text == "":
        return None
    return text


def parse_utc(text: str, *, end: bool = False) -> datetime:
    """A date (``2026-01-31``) or a date and time (``2026-01-31T12:00``, ``…Z``,
    ``…+01:00``) as UTC; without an offset it is UTC. With ``end``, a bare date means the
    end of that day (so ``--until 2026-01-31`` includes the 31st). Raises ``ValueError``."""
    text = text.strip()
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
        day = date.fromisoformat(text)
        start = datetime(day.year, day.month, day.day, tzinfo=UTC)
        return start + timedelta(days=1) if end else start
    if not re.fullmatch(
        r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?(Z|[+-]\d{2}:\d{2})?", text
    ):
        raise ValueError(text)
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# -- writers -----------------------------------------------------------------------------


@runtime_checkable
class RowSource(Protocol):
    """Records that can also be read as rows, which the CSV writer then uses: no dict per
    record. A row holds the :data:`COLUMNS` in order, values as the database returns them:
    datetimes (naive ones are UTC), category lists as stored (names joined by commas),
    ``gpc`` true or false, ``None`` for absent tamper-evidence columns. A wrapper around
    records (:class:`Tally`) returns ``None`` when what it wraps has no rows."""

    def export_rows(self) -> Iterator[Sequence[Any]] | None: ...


def _rows_of(records: Iterable[Any]) -> Iterator[Sequence[Any]] | None:
    return records.export_rows() if isinstance(records, RowSource) else None


def iter_csv(records: Iterable[Mapping[str, Any]], *, bom: bool = False) -> Iterator[str]:
    """RFC 4180 CSV (CRLF line ends, quoted as needed), header row first; UTF-8 with an
    optional byte-order mark, which Excel needs to read UTF-8. Reads ``records`` as rows
    when it is a :class:`RowSource` with rows."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(COLUMNS)
    yield (BOM if bom else "") + buffer.getvalue()
    cells = _csv_rows(records)
    while chunk := list(islice(cells, _ROWS_PER_CHUNK)):
        yield _csv_chunk(writer, buffer, chunk)


def _csv_rows(records: Iterable[Mapping[str, Any]]) -> Iterator[list[str]]:
    rows = _rows_of(records)
    return map(_csv_row, records) if rows is None else map(_csv_db_row, rows)


def _csv_chunk(writer: Any, buffer: io.StringIO, rows: list[list[str]]) -> str:
    buffer.seek(0)
    buffer.truncate()
    writer.writerows(rows)
    return buffer.getvalue()


def _json_line(record: Mapping[str, Any]) -> str:
    return json.dumps(json_record(record), ensure_ascii=False, separators=(",", ":"))


def iter_ndjson(records: Iterable[Mapping[str, Any]]) -> Iterator[str]:
    for record in records:
        yield _json_line(record) + "\n"


NoticeSource = Callable[[], Mapping[str, Any]]


def iter_json(
    records: Iterable[Mapping[str, Any]], *, notices: NoticeSource | None = None
) -> Iterator[str]:
    """``{"format": …, "records": [...], "notices": {...}}``, one record per line; the
    notices (asked for once the records are written) are those the records reference."""
    yield '{"format":"' + EXPORT_FORMAT + '","records":['
    first = True
    for record in records:
        yield ("\n" if first else ",\n") + _json_line(record)
        first = False
    yield '\n],"notices":'
    yield canonical(dict(notices()) if notices is not None else {})
    yield "}\n"


def notice_entry(locale: str, policy_version: str, texts: str) -> dict[str, Any]:
    """A notice as exported. ``texts`` is parsed for reading; re-serialised canonically
    (sorted keys, no spaces, UTF-8) it hashes to the notice's id."""
    return {"locale": locale, "policy_version": policy_version, "texts": json.loads(texts)}


def notices_document(notices: Mapping[str, Any]) -> str:
    """The notices file written beside a CSV or NDJSON export."""
    return canonical({"format": EXPORT_FORMAT, "notices": dict(notices)}) + "\n"


def iter_export(
    fmt: str,
    records: Iterable[Mapping[str, Any]],
    *,
    bom: bool = False,
    notices: NoticeSource | None = None,
) -> Iterator[str]:
    if fmt == "csv":
        return iter_csv(records, bom=bom)
    if fmt == "ndjson":
        return iter_ndjson(records)
    if fmt == "json":
        return iter_json(records, notices=notices)
    raise ValueError(f"unknown export format {fmt!r}")


class _Count:
    def __init__(self, records: Iterable[Mapping[str, Any]]) -> None:
        self.records = records
        self.count = 0

    def __iter__(self) -> Iterator[Mapping[str, Any]]:
        for record in self.records:
            self.count += 1
            yield record

    def export_rows(self) -> Iterator[Sequence[Any]] | None:
        rows = _rows_of(self.records)
        return None if rows is None else self._count_rows(rows)

    def _count_rows(self, rows: Iterator[Sequence[Any]]) -> Iterator[Sequence[Any]]:
        for row in rows:
            self.count += 1
            yield row


def _drain(chunks: Iterable[str], out: TextIO, counter: _Count) -> int:
    for chunk in chunks:
        out.write(chunk)
    return counter.count


def write_csv(records: Iterable[Mapping[str, Any]], out: TextIO) -> int:
    counter = _Count(records)
    return _drain(iter_csv(counter), out, counter)


def write_ndjson(records: Iterable[Mapping[str, Any]], out: TextIO) -> int:
    counter = _Count(records)
    return _drain(iter_ndjson(counter), out, counter)


def write_json(records: Iterable[Mapping[str, Any]], out: TextIO) -> int:
    counter = _Count(records)
    return _drain(iter_json(counter), out, counter)


Writer = Callable[[Iterable[Mapping[str, Any]], TextIO], int]
WRITERS: dict[str, Writer] = {"csv": write_csv, "json": write_json, "ndjson": write_ndjson}


_OCCURRED_AT = COLUMNS.index("occurred_at")
_NOTICE_HASH = COLUMNS.index("notice_hash")


class Tally:
    """Passes records (or their rows, see :class:`RowSource`) through, counting them and
    noting what the manifest needs: the notice hashes they reference and the first and last
    decision times (as the records give them: naive ones are UTC)."""

    def __init__(
        self, records: Iterable[Mapping[str, Any]], on_record: Callable[[], None] | None = None
    ) -> None:
        self._records = records
        self._on_record = on_record
        self.count = 0
        self.notice_hashes: set[str] = set()
        self.first: datetime | None = None
        self.last: datetime | None = None

    def __iter__(self) -> Iterator[Mapping[str, Any]]:
        for record in self._records:
            self._note(record["notice_hash"], record["occurred_at"])
            yield record

    def export_rows(self) -> Iterator[Sequence[Any]] | None:
        rows = _rows_of(self._records)
        return None if rows is None else self._tally_rows(rows)

    def _tally_rows(self, rows: Iterator[Sequence[Any]]) -> Iterator[Sequence[Any]]:
        for row in rows:
            self._note(row[_NOTICE_HASH], row[_OCCURRED_AT])
            yield row

    def _note(self, notice_hash: Any, when: Any) -> None:
        self.count += 1
        self.notice_hashes.add(str(notice_hash))
        if isinstance(when, datetime):
            if self.first is None or when < self.first:
                self.first = when
            if self.last is None or when > self.last:
                self.last = when
        if self._on_record is not None:
            self._on_record()


# -- manifest ----------------------------------------------------------------------------


def sha256_file(path: str) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
            size += len(block)
    return digest.hexdigest(), size


def manifest_path(data_path: str) -> str:
    return data_path + ".manifest.json"


def notices_path(data_path: str) -> str:
    return data_path + ".notices.json"


def build_manifest(
    *,
    files: Sequence[tuple[str, str]],
    fmt: str,
    bom: bool,
    records: int,
    first: datetime | None,
    last: datetime | None,
    filters: Mapping[str, Any],
    generated_at: datetime,
    integrity: Mapping[str, Any],
    ledger_seq: int | None,
    generator: str,
) -> dict[str, Any]:
    """The manifest of an export: ``files`` are ``(path, role)``, named in the manifest
    relative to it (they sit beside it)."""
    entries = []
    for path, role in files:
        digest, size = sha256_file(path)
        entries.append(
            {"name": os.path.basename(path), "role": role, "sha256": digest, "bytes": size}
        )
    return {
        "manifest": MANIFEST_FORMAT,
        "generator": generator,
        "generated_at": iso(generated_at),
        "format": fmt,
        "encoding": "utf-8" + (" with BOM" if bom else ""),
        "files": entries,
        "records": records,
        "time_range": {
            "first_decision": iso(first) if first else None,
            "last_decision": iso(last) if last else None,
        },
        "filters": dict(filters),
        "integrity": dict(integrity),
        "ledger_seq": ledger_seq,
    }


def sign_manifest(manifest: dict[str, Any], keys: LogKeys) -> dict[str, Any]:
    body = {k: v for k, v in manifest.items() if k not in ("key_id", "mac")}
    kid, mac = keys.sign(canonical(body).encode("utf-8"))
    return {**body, "key_id": kid, "mac": mac}


# -- checking an export against its manifest ---------------------------------------------


@dataclass(slots=True)
class ExportCheck:
    checks: list[tuple[bool, str]] = field(default_factory=list)
    manifest: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(ok for ok, _ in self.checks)

    def add(self, ok: bool, message: str) -> None:
        self.checks.append((ok, message))


def _read_records(path: str, fmt: str) -> Iterator[dict[str, Any]]:
    """Records of an export file, values as in the JSON form."""
    if fmt == "csv":
        with open(path, encoding="utf-8-sig", newline="") as fh:
            reader = csv.reader(fh)
            header = next(reader, None)
            if header is None or tuple(header) != COLUMNS:
                raise ValueError("the CSV header is not consentkit's export columns")
            for row in reader:
                if len(row) != len(COLUMNS):
                    raise ValueError(f"a CSV row has {len(row)} cells, not {len(COLUMNS)}")
                yield _csv_record(row)
    elif fmt == "ndjson":
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                if line.strip():
                    yield json.loads(line)
    elif fmt == "json":
        # The JSON layout is one record per line between the first line and "]".
        with open(path, encoding="utf-8") as fh:
            head = fh.readline()
            if not head.startswith('{"format":"' + EXPORT_FORMAT):
                raise ValueError("not a consentkit JSON export")
            for line in fh:
                if line.startswith("]"):
                    return
                yield json.loads(line.rstrip("\n").rstrip(","))
    else:
        raise ValueError(f"unknown export format {fmt!r}")


def _read_notices(path: str, fmt: str) -> dict[str, Any]:
    with open(path, encoding="utf-8") as fh:
        if fmt != "json":
            return dict(json.load(fh)["notices"])
        marker = '],"notices":'
        for line in fh:  # the section is the last line: read through, never all at once
            if line.startswith(marker):
                body = line.rstrip("\n")
                if body.endswith("}"):
                    return dict(json.loads(body[len(marker) : -1]))
    raise ValueError("the JSON export has no notices section")


def verify_export(path: str, keys: LogKeys | None = None) -> ExportCheck:
    """Check an export (``path``: the data file or its manifest) against its manifest: the
    SHA-256 and size of each file, the record count, the notices its records reference,
    and, when the log keys are at hand, the manifest's MAC and every record's MAC."""
    result = ExportCheck()
    mpath = path if path.endswith(".manifest.json") else manifest_path(path)
    try:
        with open(mpath, encoding="utf-8") as fh:
            manifest = json.load(fh)
        if not isinstance(manifest, dict) or manifest.get("manifest") != MANIFEST_FORMAT:
            raise ValueError("not a consentkit export manifest")
    except (OSError, ValueError) as exc:
        result.add(False, f"manifest {mpath}: {exc}")
        return result
    result.manifest = manifest
    folder = os.path.dirname(os.path.abspath(mpath))
    if keys is not None:
        body = {k: v for k, v in manifest.items() if k not in ("key_id", "mac")}
        ok = keys.check(
            manifest.get("key_id"), canonical(body).encode("utf-8"), manifest.get("mac")
        )
        if ok is None:
            result.add(False, f"manifest signed with unknown key {manifest.get('key_id')!r}")
        else:
            result.add(ok, "manifest MAC " + ("valid" if ok else "INVALID: manifest altered"))
    fmt = str(manifest.get("format"))
    data_file = notices_file = None
    for entry in manifest.get("files", []):
        file_path = os.path.join(folder, os.path.basename(str(entry.get("name"))))
        try:
            digest, size = sha256_file(file_path)
        except OSError as exc:
            result.add(False, f"{entry.get('name')}: {exc.strerror or exc}")
            continue
        same = digest == entry.get("sha256") and size == entry.get("bytes")
        result.add(
            same,
            f"{entry.get('name')}: SHA-256 "
            + ("matches" if same else f"DIFFERS (file {digest}, manifest {entry.get('sha256')})"),
        )
        if entry.get("role") == "records":
            data_file = file_path
        elif entry.get("role") == "notices":
            notices_file = file_path
    if fmt == "json":
        notices_file = data_file  # a section of the same file
    if data_file is None:
        result.add(False, "the manifest names no records file")
        return result
    _check_content(result, data_file, notices_file, fmt, manifest, keys)
    return result


def _check_content(
    result: ExportCheck,
    data_file: str,
    notices_file: str | None,
    fmt: str,
    manifest: Mapping[str, Any],
    keys: LogKeys | None,
) -> None:
    count = valid = unsigned = 0
    bad: list[Any] = []
    hashes: set[str] = set()
    try:
        for record in _read_records(data_file, fmt):
            count += 1
            hashes.add(str(record.get("notice_hash")))
            if keys is None:
                continue
            if record.get("mac") is None or record.get("stream_id") is None:
                unsigned += 1
            elif keys.check(
                record.get("key_id"),
                record_message(record["stream_id"], record["stream_seq"], record),
                record["mac"],
            ):
                valid += 1
            else:
                bad.append(record.get("record_id"))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        result.add(False, f"cannot read the records: {exc}")
        return
    expected = manifest.get("records")
    result.add(count == expected, f"{count} record(s) read, manifest says {expected}")
    if keys is not None:
        shown = ", ".join(str(r) for r in bad[:10])
        result.add(
            not bad,
            f"{valid} record MAC(s) valid"
            + (f", {unsigned} unsigned" if unsigned else "")
            + (f"; INVALID for record(s) {shown}" if bad else ""),
        )
    if notices_file is None:
        result.add(False, "the manifest names no notices file")
        return
    try:
        notices = _read_notices(notices_file, fmt)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        result.add(False, f"cannot read the notices: {exc}")
        return
    missing = sorted(hashes - set(notices))
    altered = sorted(h for h, n in notices.items() if notice_digest(canonical(n.get("texts"))) != h)
    result.add(
        not missing and not altered,
        f"{len(notices)} notice(s) for {len(hashes)} referenced"
        + (f"; missing {', '.join(m[:12] for m in missing)}" if missing else "")
        + (f"; texts altered: {', '.join(a[:12] for a in altered)}" if altered else ""),
    )
