"""`flask consentkit export` and `verify-export`: formats, filters, formula injection, the
manifest and the notice texts, on SQLite and PostgreSQL, in-process and as a real process."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import pty
import subprocess
import tracemalloc
from datetime import UTC, datetime, timedelta

import pytest

from consentkit.export import COLUMNS, Tally, csv_value, iter_export
from consentkit.integrity import canonical
from consentkit.store import RecordFilter
from consentkit.store.dpo import verify
from dpo_support import (
    FLASK,
    add_record,
    bulk_insert,
    keys,
    notice_copy,
    post,
    run_flask,
    sql,
    state,
    write_app,
)

# Cells a spreadsheet would run as a formula, and an apostrophe (the escape itself).
PAYLOADS = ['=HYPERLINK("http://x")', "+1+1", "-2+3", "@SUM(A1)", "\tTAB", "\rCR", "'quoted"]
_FORMULA = ("=", "+", "-", "@", "\t", "\r")
# The text columns a site can set, and their width in the table.
_WIDTHS = {"site": 64, "policy_version": 32, "locale": 16, "surface": 16, "action": 16}


def _export(runner, *args):
    return runner.invoke(args=["consentkit", "export", *args])


def _csv_rows(text):
    return list(csv.DictReader(io.StringIO(text.lstrip("\ufeff"), newline="")))


def _ledger(app):
    return [
        (kind, json.loads(details))
        for kind, details in sql(app, "SELECT kind, details FROM consentkit_ledger ORDER BY seq")
    ]


# -- CSV: injection, RFC 4180 ------------------------------------------------------------------


def test_csv_neutralises_formulas_in_every_text_column_a_site_influences(app, runner, tmp_path):
    # Through the store API a site (or a replayed spool, or another site sharing the store)
    # can put any text in these columns; the configured ones are validated but may still
    # start with "-".
    for payload in PAYLOADS:
        add_record(
            app,
            occurred_at=datetime(2026, 3, 1, tzinfo=UTC),
            **{column: payload[:width] for column, width in _WIDTHS.items()},
        )
    result = _export(runner, "--format", "csv")
    assert result.exit_code == 0, result.output
    assert not result.stdout.startswith("\ufeff")  # no BOM on stdout by default
    assert b"\r\n" in result.stdout_bytes  # RFC 4180 line ends
    rows = _csv_rows(result.stdout)
    assert len(rows) == len(PAYLOADS)
    for row, payload in zip(rows, PAYLOADS, strict=True):
        for column, width in _WIDTHS.items():
            cell = row[column]
            assert not cell.startswith(_FORMULA), (column, cell)
            assert cell == "'" + payload[:width]  # shown as text, escape reversible
            assert csv_value(column, cell) == payload[:width]
        assert row["granted"] == "functional;preferences;statistics;marketing"

    # Round trip is exact: every record's MAC checks from the CSV cells.
    out = tmp_path / "x.csv"
    assert _export(runner, "-o", str(out)).exit_code == 0
    check = runner.invoke(args=["consentkit", "verify-export", str(out)])
    assert check.exit_code == 0, check.output
    assert f"{len(PAYLOADS)} record MAC(s) valid" in check.output


def test_configured_site_and_policy_starting_with_a_minus(make_app, database_uri, tmp_path):
    app = make_app(
        CONSENTKIT_DATABASE_URI=database_uri, CONSENTKIT_SITE="-cmd", CONSENTKIT_POLICY_VERSION="-1"
    )
    post(app.test_client(), "accept_all")
    result = app.test_cli_runner().invoke(args=["consentkit", "export"])
    row = _csv_rows(result.stdout)[0]
    assert (row["site"], row["policy_version"]) == ("'-cmd", "'-1")


def test_csv_quotes_separators_and_newlines(app, runner):
    add_record(app, occurred_at=datetime(2026, 3, 1, tzinfo=UTC), site='a,b"c\nd')
    rows = _csv_rows(_export(runner).stdout)
    assert rows[0]["site"] == 'a,b"c\nd'


# -- JSON / NDJSON and the notice texts ---------------------------------------------------------


def test_json_carries_the_notice_texts(app, client, runner):
    post(client, "accept_all")
    client.post("/consent", json={"action": "reject_all", "locale": "fr"})
    result = _export(runner, "--format", "json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert [r["action"] for r in document["records"]] == ["accept_all", "reject_all"]
    assert tuple(document["records"][0]) == COLUMNS
    assert set(document["notices"]) == {r["notice_hash"] for r in document["records"]}
    for notice_hash, notice in document["notices"].items():
        digest = hashlib.sha256(canonical(notice["texts"]).encode()).hexdigest()
        assert digest == notice_hash
    assert document["notices"][document["records"][1]["notice_hash"]]["texts"]["title"] == (
        "Gérer le consentement aux cookies"
    )


def test_ndjson_on_stdout_says_where_the_notices_are(app, client, runner, tmp_path):
    post(client, "accept_all")
    result = _export(runner, "--format", "ndjson")
    assert result.exit_code == 0
    assert "--notices FILE" in result.stderr
    assert len(result.stdout.splitlines()) == 1
    notices_file = tmp_path / "n.json"
    result = _export(runner, "--format", "ndjson", "--notices", str(notices_file))
    assert result.exit_code == 0
    notices = json.loads(notices_file.read_text())["notices"]
    assert set(notices) == {json.loads(result.stdout)["notice_hash"]}


# -- filters --------------------------------------------------------------------------------------


def _dated_log(app):
    subject = "ab" * 32
    add_record(app, occurred_at=datetime(2026, 1, 31, 23, 0, tzinfo=UTC), site="a")
    add_record(app, occurred_at=datetime(2026, 2, 1, 0, 0, tzinfo=UTC), site="a", subject=subject)
    add_record(
        app, occurred_at=datetime(2026, 2, 28, 23, 59, tzinfo=UTC), site="b", action="reject_all"
    )
    add_record(app, occurred_at=datetime(2026, 3, 1, tzinfo=UTC), site="a", policy_version="2")
    return subject


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--since", "2026-02-01", "--until", "2026-02-28"], [2, 3]),  # --until: whole day
        (["--since", "2026-02-01T00:00:01Z"], [3, 4]),
        (["--until", "2026-02-01T00:00"], [1]),  # a time is excluded
        (["--until", "2026-02-01T01:01+02:00"], [1]),  # offsets are converted to UTC
        (["--site", "a"], [1, 2, 4]),
        (["--action", "reject_all"], [3]),
        (["--action", "reject_all", "--action", "accept_all"], [1, 2, 3, 4]),
        (["--policy-version", "2"], [4]),
        (["--subject", "ab" * 32], [2]),
        (["--site", "a", "--since", "2026-02-01", "--policy-version", "1"], [2]),
    ],
)
def test_filters(app, runner, args, expected):
    _dated_log(app)
    result = _export(runner, "--format", "ndjson", *args)
    assert result.exit_code == 0, result.output
    assert [json.loads(line)["record_id"] for line in result.stdout.splitlines()] == expected


def test_subject_filter_takes_a_consent_id(app, client, runner):
    consent_id = post(client, "accept_all").get_json()["consent_id"]
    post(app.test_client(), "reject_all")  # someone else
    result = _export(runner, "--format", "ndjson", "--subject", consent_id)
    assert [json.loads(line)["action"] for line in result.stdout.splitlines()] == ["accept_all"]


@pytest.mark.parametrize(
    "args",
    [
        ["--since", "31/01/2026"],
        ["--since", "2026-02-30"],
        ["--until", "yesterday"],
        ["--since", "2026-03-01", "--until", "2026-02-01"],
        ["--action", "accept"],
        ["--format", "xml"],
        ["--subject", "not a consent id!"],
        ["--output", "OUT", "--notices", "N"],
        ["--output", "."],
    ],
)
def test_bad_arguments_change_nothing(app, client, runner, tmp_path, args):
    post(client, "accept_all")
    args = [str(tmp_path / a) if a in ("OUT", "N") else a for a in args]
    if args[-1] == ".":
        args[-1] = str(tmp_path)
    before = sql(app, "SELECT count(*) FROM consentkit_ledger")
    listing = sorted(os.listdir(tmp_path))
    result = _export(runner, *args)
    assert result.exit_code == 2, result.output
    assert "Error" in result.output
    assert sql(app, "SELECT count(*) FROM consentkit_ledger") == before
    assert sorted(os.listdir(tmp_path)) == listing


# -- the manifest, verify-export, the ledger ---------------------------------------------------


@pytest.mark.parametrize("fmt", ["csv", "ndjson", "json"])
def test_output_writes_manifest_and_notices_and_verifies(app, client, runner, tmp_path, fmt):
    post(client, "accept_all")
    post(client, "custom", granted=["statistics"])
    out = tmp_path / f"log.{fmt}"
    result = _export(runner, "--format", fmt, "--output", str(out), "--site", "default")
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / f"log.{fmt}.manifest.json").read_text())
    assert manifest["records"] == 2
    assert manifest["format"] == fmt
    assert manifest["filters"]["site"] == "default"
    assert manifest["integrity"]["intact"] is True
    assert manifest["time_range"]["first_decision"] <= manifest["time_range"]["last_decision"]
    assert manifest["generated_at"].endswith("Z")
    names = {f["name"]: f for f in manifest["files"]}
    assert names[f"log.{fmt}"]["sha256"] == hashlib.sha256(out.read_bytes()).hexdigest()
    assert (f"log.{fmt}.notices.json" in names) is (fmt != "json")
    if fmt == "csv":
        assert out.read_bytes().startswith(b"\xef\xbb\xbf")  # BOM: Excel reads UTF-8
        assert manifest["encoding"] == "utf-8 with BOM"
    kind, details = _ledger(app)[-1]
    assert kind == "export"
    assert details["records"] == 2
    assert details["via"] == "cli"
    assert manifest["ledger_seq"] == len(_ledger(app))

    check = runner.invoke(args=["consentkit", "verify-export", str(out)])
    assert check.exit_code == 0, check.output
    assert "records the same SHA-256" in check.output
    # The manifest itself can be named too.
    check = runner.invoke(args=["consentkit", "verify-export", f"{out}.manifest.json"])
    assert check.exit_code == 0


def test_csv_without_bom(app, client, runner, tmp_path):
    post(client, "accept_all")
    out = tmp_path / "plain.csv"
    assert _export(runner, "-o", str(out), "--no-bom").exit_code == 0
    assert out.read_bytes().startswith(b"record_id,")
    assert _export(runner, "--bom").stdout.startswith("\ufeff")


def _tamper_cases(out, manifest_file):
    def edit_byte():
        data = bytearray(out.read_bytes())
        at = data.index(b"accept_all")
        data[at : at + 10] = b"reject_all"
        out.write_bytes(bytes(data))

    def rehash_after_edit():
        # An attacker who edits a record and updates the manifest's hash and size.
        edit_byte()
        manifest = json.loads(manifest_file.read_text())
        for entry in manifest["files"]:
            if entry["role"] == "records":
                entry["sha256"] = hashlib.sha256(out.read_bytes()).hexdigest()
                entry["bytes"] = out.stat().st_size
        manifest_file.write_text(json.dumps(manifest))

    def drop_a_row():
        lines = out.read_bytes().split(b"\r\n")
        out.write_bytes(b"\r\n".join(lines[:1] + lines[2:]))

    def lose_notices():
        (out.parent / (out.name + ".notices.json")).unlink()

    def change_count():
        manifest = json.loads(manifest_file.read_text())
        manifest["records"] = 3
        manifest_file.write_text(json.dumps(manifest))

    return {
        "edit": (edit_byte, "DIFFERS"),
        "rehash": (rehash_after_edit, "INVALID"),
        "drop": (drop_a_row, "DIFFERS"),
        "notices": (lose_notices, "notices.json"),
        "count": (change_count, "manifest MAC INVALID"),
    }


@pytest.mark.parametrize("case", ["edit", "rehash", "drop", "notices", "count"])
def test_verify_export_catches_a_changed_export(app, client, runner, tmp_path, case):
    post(client, "accept_all")
    post(client, "accept_all")
    out = tmp_path / "log.csv"
    assert _export(runner, "-o", str(out)).exit_code == 0
    change, message = _tamper_cases(out, tmp_path / "log.csv.manifest.json")[case]
    change()
    result = runner.invoke(args=["consentkit", "verify-export", str(out)])
    assert result.exit_code == 1
    assert message in result.output
    assert "does NOT match" in result.output


def test_verify_export_checks_the_ledger(app, client, runner, tmp_path):
    post(client, "accept_all")
    out = tmp_path / "log.csv"
    assert _export(runner, "-o", str(out)).exit_code == 0
    sql(app, "DELETE FROM consentkit_ledger")
    result = runner.invoke(args=["consentkit", "verify-export", str(out)])
    assert result.exit_code == 1
    assert "has no export #1" in result.output


def test_manifest_records_a_tampered_log(app, client, runner, tmp_path):
    post(client, "accept_all")
    sql(app, "UPDATE consentkit_records SET site = 'x'")
    out = tmp_path / "log.csv"
    result = _export(runner, "-o", str(out))
    assert result.exit_code == 0
    assert "NOT intact" in result.stderr
    manifest = json.loads((tmp_path / "log.csv.manifest.json").read_text())
    assert manifest["integrity"]["intact"] is False
    assert manifest["integrity"]["problems"] == {"modified": 1}


def test_every_export_is_recorded_without_subject(app, client, runner):
    consent_id = post(client, "accept_all").get_json()["consent_id"]
    subject = state(app).subjects(consent_id)[0]
    assert _export(runner, "--subject", consent_id, "--action", "accept_all").exit_code == 0
    assert _export(runner, "--format", "json", "--since", "2026-01-01").exit_code == 0
    entries = _ledger(app)
    assert [k for k, _ in entries] == ["export", "export"]
    first, second = entries[0][1], entries[1][1]
    assert first["filters"]["subject"] == "one subject"
    assert first["filters"]["actions"] == ["accept_all"]
    assert first["records"] == 1
    assert second["filters"]["since"] == "2026-01-01T00:00:00Z"
    raw = json.dumps(sql(app, "SELECT details FROM consentkit_ledger")[0][0])
    assert consent_id not in raw
    assert subject not in raw


# -- scale -------------------------------------------------------------------------------------


def test_100k_rows_export_matches_its_manifest(app, runner, tmp_path):
    bulk_insert(app, 100_000, start=datetime(2026, 1, 1, tzinfo=UTC))
    out = tmp_path / "big.csv"
    result = _export(runner, "-o", str(out))
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "big.csv.manifest.json").read_text())
    assert manifest["records"] == 100_000
    assert manifest["integrity"]["intact"] is True
    assert manifest["time_range"] == {
        "first_decision": "2026-01-01T00:00:01Z",
        "last_decision": "2026-01-02T03:46:40Z",
    }
    with out.open(encoding="utf-8-sig", newline="") as fh:
        rows = sum(1 for _ in csv.reader(fh)) - 1
    assert rows == 100_000
    check = runner.invoke(args=["consentkit", "verify-export", str(out)])
    assert check.exit_code == 0, check.output
    assert "100000 record(s) read, manifest says 100000" in check.output
    assert "100000 record MAC(s) valid" in check.output


def _peak(work):
    tracemalloc.start()
    try:
        work()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_export_and_verify_memory_stays_flat(make_app, tmp_path):
    """Four times the records, about the same peak: records stream through in batches."""
    app = make_app(CONSENTKIT_DATABASE_URI=f"sqlite:///{tmp_path}/flat.sqlite3")
    start = datetime(2026, 1, 1, tzinfo=UTC)
    bulk_insert(app, 16_000, start=start)
    store = state(app).store
    out = tmp_path / "flat.json"

    def export_until(until):
        def work():
            tally = Tally(store.iter_records(RecordFilter(until=until)))
            with out.open("w", encoding="utf-8") as fh:
                for chunk in iter_export("json", tally):
                    fh.write(chunk)
            assert tally.count in (4_000, 16_000)

        return work

    small = _peak(export_until(start + timedelta(seconds=4_001)))
    large = _peak(export_until(None))
    assert out.stat().st_size > 9_000_000  # 16,000 records written
    assert large < small * 1.5 + 500_000, (small, large)
    verified = _peak(lambda: verify(store, keys(app)))
    assert verified < 20_000_000, verified


# -- a real `flask` process --------------------------------------------------------------------


@pytest.mark.slow
def test_export_and_verify_export_in_a_real_process(app, client, tmp_path):
    post(client, "accept_all")
    post(client, "reject_all")
    add_record(app, occurred_at=datetime(2026, 3, 1, tzinfo=UTC), site="=1+1", notice=notice_copy())
    write_app(tmp_path, app)
    stdout_csv = run_flask(tmp_path, "export", "--format", "csv")
    assert stdout_csv.returncode == 0, stdout_csv.stderr
    rows = _csv_rows(stdout_csv.stdout)
    assert [r["site"] for r in rows] == ["default", "default", "'=1+1"]
    done = run_flask(tmp_path, "export", "--format", "ndjson", "-o", "out.ndjson")
    assert done.returncode == 0, done.stderr
    assert "exported 3 record(s)" in done.stderr
    assert "exporting" not in done.stderr  # no progress bar when stderr is not a terminal
    check = run_flask(tmp_path, "verify-export", "out.ndjson")
    assert check.returncode == 0, check.stdout + check.stderr
    (tmp_path / "out.ndjson").write_text("{}\n")
    check = run_flask(tmp_path, "verify-export", "out.ndjson")
    assert check.returncode == 1
    bad = run_flask(tmp_path, "export", "--since", "tomorrow")
    assert bad.returncode == 2
    assert "not a date" in bad.stderr


@pytest.mark.slow
def test_progress_bar_on_a_terminal(app, client, tmp_path):
    for _ in range(3):
        post(client, "accept_all")
    write_app(tmp_path, app)
    master, slave = pty.openpty()
    env = {**os.environ, "FLASK_APP": "dpoapp"}
    proc = subprocess.run(
        [str(FLASK), "consentkit", "export", "-o", "t.csv"],
        cwd=tmp_path,
        env=env,
        stderr=slave,
        stdout=subprocess.PIPE,
        timeout=60,
        check=False,
    )
    os.close(slave)
    chunks = []
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(master)
    err = b"".join(chunks).decode()
    assert proc.returncode == 0, err
    assert "exporting" in err
    assert "100%" in err
    assert proc.stdout == b""  # data went to the file, nothing to stdout


@pytest.mark.parametrize("text", ["plain", "=1", "+1", "-1", "@x", "\tx", "\rx", "'x", "", "a;b"])
def test_csv_row_and_reading_back_agree_with_the_cell_functions(text):
    from consentkit.export import _csv_record, _csv_row, csv_cell

    record = {
        "record_id": 7,
        "occurred_at": datetime(2026, 1, 1, 12, 30, 1, 5, tzinfo=UTC),
        "site": text,
        "subject": text,
        "action": text,
        "surface": text,
        "granted": [text] if text else [],
        "denied": [],
        "withdrawn": [text, "x"] if text else [],
        "policy_version": text,
        "locale": text,
        "notice_hash": text,
        "gpc": bool(text),
        "expires_at": datetime(2026, 7, 1),
        "stream_id": text or None,
        "stream_seq": 3,
        "key_id": None,
        "mac": text or None,
    }
    row = _csv_row(record)
    assert row == [csv_cell(record[c]) for c in COLUMNS]
    assert _csv_record(row) == {c: csv_value(c, cell) for c, cell in zip(COLUMNS, row, strict=True)}


def test_subject_filter_takes_a_consent_id_starting_with_a_dash(app, runner):
    # URL-safe base64: one visitor in 64 has an id like this one.
    result = _export(runner, "--format", "ndjson", "--subject", "-" + "A" * 21)
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
