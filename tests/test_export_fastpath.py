"""The CSV export's row path: ``ConsentStore.iter_records()`` read as rows
(``export_rows``) writes exactly the bytes the record dicts would, on SQLite and PostgreSQL,
formula escaping, empty and odd values included."""

from __future__ import annotations

import csv
import io
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import insert

from consentkit import export
from consentkit.export import (
    COLUMNS,
    RowSource,
    Tally,
    csv_cell,
    iso,
    iter_csv,
    iter_export,
    write_csv,
)
from consentkit.store import ConsentStore, NoticeCopy, RecordFilter, records
from consentkit.store.dpo import iter_export_records
from consentkit.store.store import as_utc, split_categories

# Cells a spreadsheet would run as a formula, the escape itself, and text that needs quoting.
TEXTS = [
    "plain",
    "",
    '=HYPERLINK("http://x")',
    "+1+1",
    "-2+3",
    "@SUM(A1)",
    "\tTAB",
    "\rCR",
    "'quoted",
    "a;b",
    'say "hi"',
    "two\r\nlines",
    "é,ü",
]
# Category lists as a row may hold them, canonical or not.
STORED_CATEGORIES = [
    "",
    "functional",
    "functional,preferences,statistics,marketing",
    ",functional,,marketing,",
    "=cmd,x",
    "-1",
    "a;b,c",
]
TIMES = [
    datetime(2026, 1, 31, 12, 30, 1, 5),  # naive: UTC, as SQLite returns it
    datetime(2026, 1, 31, 12, 30, 1),  # no microseconds: ISO leaves them out
    datetime(2026, 1, 31, 12, 30, 1, 5, tzinfo=UTC),
    datetime(2026, 1, 31, 12, 30, 1, 5, tzinfo=timezone(timedelta(0), "GMT")),  # not UTC
    datetime(2026, 7, 31, 12, 30, 1, 5, tzinfo=ZoneInfo("Etc/UTC")),  # PostgreSQL's
    datetime(2026, 7, 31, 12, 30, 1, 5, tzinfo=ZoneInfo("Europe/Paris")),
    datetime(2026, 1, 31, 23, 30, tzinfo=timezone(timedelta(hours=-5))),
]


def _as_record(row: tuple[Any, ...]) -> dict[str, Any]:
    """What ConsentStore.iter_records makes of a row (see store._row_to_dict)."""
    record = dict(zip(COLUMNS, row, strict=True))
    for column in ("granted", "denied", "withdrawn"):
        record[column] = split_categories(record[column])
    for column in ("occurred_at", "expires_at"):
        record[column] = as_utc(record[column])
    record["gpc"] = bool(record["gpc"])
    return record


def _row(text: str, *, categories: str = "", when: datetime = TIMES[0], **over: Any) -> tuple:
    values: dict[str, Any] = {
        "record_id": 7,
        "occurred_at": when,
        "site": text,
        "subject": text,
        "action": text,
        "surface": text,
        "granted": categories,
        "denied": "",
        "withdrawn": categories,
        "policy_version": text,
        "locale": text,
        "notice_hash": text,
        "gpc": 1,
        "expires_at": when + timedelta(days=183),
        "stream_id": text or None,
        "stream_seq": 3,
        "key_id": None,
        "mac": text or None,
        **over,
    }
    return tuple(values[c] for c in COLUMNS)


@pytest.mark.parametrize("text", TEXTS)
def test_a_row_gives_the_cells_of_its_record(text):
    row = _row(text, categories=text.replace(";", ","))
    record = _as_record(row)
    assert export._csv_db_row(row) == export._csv_row(record)
    assert export._csv_db_row(row) == [csv_cell(record[c]) for c in COLUMNS]


def test_a_row_with_no_tamper_evidence_and_no_categories():
    row = _row("x", gpc=False, stream_id=None, stream_seq=None, key_id=None, mac=None)
    cells = export._csv_db_row(row)
    assert cells == export._csv_row(_as_record(row))
    assert cells[COLUMNS.index("gpc")] == "false"
    assert cells[-4:] == ["", "", "", ""]
    assert cells[COLUMNS.index("granted")] == ""


@pytest.mark.parametrize("stored", STORED_CATEGORIES)
def test_categories_cell_is_the_cell_of_the_split_list(stored):
    assert export._categories_cell(stored) == csv_cell(split_categories(stored))


@pytest.mark.parametrize("when", TIMES)
def test_time_cell_is_iso_in_utc_whatever_the_tzinfo(when):
    assert export._time_cell(when) == iso(as_utc(when))
    assert export._time_cell(when).endswith("Z")


def test_time_cell_of_what_is_not_a_datetime_is_neutralised_text():
    assert export._time_cell("=1+1") == "'=1+1"
    assert export._time_cell(None) == ""


# -- through the store, on each database -------------------------------------------------


def _fill(store: ConsentStore) -> int:
    """Records with every awkward value, signed-looking or unsigned; returns how many."""
    store.create_all()
    rows = []
    for n, text in enumerate(TEXTS):
        width = {"action": 16, "surface": 16, "locale": 16, "policy_version": 32}
        notice_hash = f"{n:02d}{text}"[:64]
        store.store_notice(NoticeCopy(notice_hash, "en", "1", "{}"))
        when = datetime(2026, 3, 1, tzinfo=UTC) + timedelta(seconds=n, microseconds=n * 7)
        rows.append(
            {
                "event_id": uuid.uuid4().hex,
                "occurred_at": when,
                "site": text,
                "subject": text,
                "notice_hash": notice_hash,
                "granted": STORED_CATEGORIES[n % len(STORED_CATEGORIES)],
                "denied": "",
                "withdrawn": STORED_CATEGORIES[-1 - n % len(STORED_CATEGORIES)],
                "gpc": n % 2 == 0,
                "expires_at": when + timedelta(days=183),
                "stream_id": None if n % 3 == 0 else text[:32],
                "stream_seq": None if n % 3 == 0 else n,
                "key_id": None if n % 3 == 0 else text[:16],
                "mac": None if n % 3 == 0 else text,
                **{column: text[:w] for column, w in width.items()},
            }
        )
    with store.engine.begin() as conn:
        conn.execute(insert(records), rows)
    return len(rows)


@pytest.fixture
def store(database_uri):
    st = ConsentStore.from_uri(database_uri)
    yield st
    st.dispose()


def _written(records_: Any) -> tuple[int, str]:
    out = io.StringIO(newline="")
    count = write_csv(records_, out)
    return count, out.getvalue()


def _no_dicts(*_args: Any) -> list[str]:
    raise AssertionError("the row path built a dict")


def test_store_rows_and_dicts_give_the_same_csv(store, monkeypatch):
    total = _fill(store)
    # A list of the dicts has no rows: the dict path, as before the row path existed.
    by_dicts = _written(list(store.iter_records()))
    by_bom_dicts = "".join(iter_csv(list(store.iter_records()), bom=True))
    with monkeypatch.context() as patch:
        patch.setattr(export, "_csv_row", _no_dicts)
        by_rows = _written(store.iter_records(batch_size=4))
        by_bom_rows = "".join(iter_csv(store.iter_records(), bom=True))
    assert by_rows == by_dicts
    assert by_rows[0] == total
    assert by_bom_rows == by_bom_dicts
    assert by_bom_rows.startswith("\ufeffrecord_id,")
    # And both are the documented cells of each record.
    expected = [list(COLUMNS)] + [[csv_cell(r[c]) for c in COLUMNS] for r in store.iter_records()]
    assert list(csv.reader(io.StringIO(by_rows[1], newline=""))) == expected
    sites = [row[COLUMNS.index("site")] for row in expected[1:]]
    assert {'\'=HYPERLINK("http://x")', "''quoted", "'-2+3", ""} <= set(sites)


def test_export_records_are_rows_for_the_cli_and_the_admin(store, monkeypatch):
    _fill(store)
    filters = RecordFilter(since=datetime(2026, 3, 1, 0, 0, 3, tzinfo=UTC))
    assert isinstance(iter_export_records(store, filters), RowSource)
    by_dicts = Tally(list(iter_export_records(store, filters)))
    text_dicts = "".join(iter_export("csv", by_dicts, bom=True))
    by_rows = Tally(iter_export_records(store, filters, batch=3))
    with monkeypatch.context() as patch:
        patch.setattr(export, "_csv_row", _no_dicts)
        text_rows = "".join(iter_export("csv", by_rows, bom=True))
    assert text_rows == text_dicts
    assert by_rows.count == by_dicts.count == len(TEXTS) - 3
    assert by_rows.notice_hashes == by_dicts.notice_hashes
    times = [by_rows.first, by_dicts.first, by_rows.last, by_dicts.last]
    assert all(isinstance(t, datetime) for t in times)
    assert [iso(t) for t in times] == ["2026-03-01T00:00:03.000021Z"] * 2 + [
        iso(datetime(2026, 3, 1, 0, 0, len(TEXTS) - 1, (len(TEXTS) - 1) * 7, tzinfo=UTC))
    ] * 2


@pytest.mark.parametrize("batch_size", [1, 2, 3, 13, 2000])
def test_rows_and_dicts_cover_every_record_once_whatever_the_batch(store, batch_size):
    total = _fill(store)
    stream = store.iter_records(batch_size=batch_size)
    ids = [row[0] for row in stream.export_rows()]
    assert len(ids) == total
    assert ids == sorted(set(ids))
    assert [r["record_id"] for r in store.iter_records(batch_size=batch_size)] == ids


def test_rows_follow_the_filters(store):
    _fill(store)
    filters = RecordFilter(site="plain")
    rows = list(store.iter_records(filters).export_rows())
    assert [row[COLUMNS.index("site")] for row in rows] == ["plain"]
    assert [r["record_id"] for r in store.iter_records(filters)] == [rows[0][0]]


def test_a_record_stream_is_a_lazy_iterator_of_dicts(store):
    stream = store.iter_records()  # no query yet: the tables do not even exist
    _fill(store)
    first = next(stream)
    assert (first["record_id"], first["granted"]) == (1, [])
    assert first["event_id"]  # the dicts keep every column the store reads
    assert len(list(stream)) == len(TEXTS) - 1


def test_a_tally_of_plain_records_has_no_rows():
    tally = Tally([{"notice_hash": "h", "occurred_at": datetime(2026, 1, 1, tzinfo=UTC)}])
    assert tally.export_rows() is None
    assert len(list(tally)) == tally.count == 1
