"""Streaming writers for the consent log: CSV, JSON and NDJSON. Pure: no Flask.

Each writer takes an iterator of record dicts (as :meth:`ConsentStore.iter_records` yields
them) and writes as it reads, so memory stays flat however many records there are.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any, TextIO

#: The contract's log columns, in export order.
COLUMNS: tuple[str, ...] = (
    "record_id",
    "occurred_at",
    "site",
    "subject",
    "action",
    "surface",
    "granted",
    "denied",
    "withdrawn",
    "policy_version",
    "locale",
    "notice_hash",
    "gpc",
    "expires_at",
)
FORMATS = ("csv", "json", "ndjson")
_LIST_COLUMNS = frozenset({"granted", "denied", "withdrawn"})
# A spreadsheet runs a cell starting with one of these as a formula (CSV injection).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def iso(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


def json_record(record: dict[str, Any]) -> dict[str, Any]:
    """A record with the contract's columns only, JSON-ready."""
    out: dict[str, Any] = {}
    for column in COLUMNS:
        value = record[column]
        out[column] = iso(value) if isinstance(value, datetime) else value
    return out


def csv_cell(value: Any) -> str:
    if isinstance(value, datetime):
        return iso(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return ";".join(value)
    text = "" if value is None else str(value)
    if text.startswith(_FORMULA_START):
        return "'" + text  # shown as text, never evaluated
    return text


def write_csv(records: Iterable[dict[str, Any]], out: TextIO) -> int:
    """RFC 4180 CSV (CRLF line ends, quoted as needed), header row first."""
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(COLUMNS)
    count = 0
    for record in records:
        writer.writerow([csv_cell(record[c]) for c in COLUMNS])
        count += 1
    return count


def write_ndjson(records: Iterable[dict[str, Any]], out: TextIO) -> int:
    count = 0
    for record in records:
        out.write(json.dumps(json_record(record), ensure_ascii=False, separators=(",", ":")))
        out.write("\n")
        count += 1
    return count


def write_json(records: Iterable[dict[str, Any]], out: TextIO) -> int:
    """``{"records": [...]}`` written element by element."""
    out.write('{"records":[')
    count = 0
    for record in records:
        if count:
            out.write(",")
        out.write("\n")
        out.write(json.dumps(json_record(record), ensure_ascii=False, separators=(",", ":")))
        count += 1
    out.write("\n]}\n")
    return count


Writer = Callable[[Iterable[dict[str, Any]], TextIO], int]
WRITERS: dict[str, Writer] = {"csv": write_csv, "json": write_json, "ndjson": write_ndjson}
