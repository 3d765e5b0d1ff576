"""Tamper evidence: the pure scheme, then raw-SQL tampering on SQLite and PostgreSQL caught
by `flask consentkit verify` (CLI runner and a real `flask` process)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta

import pytest

from consentkit.integrity import (
    LedgerEntry,
    LogKeys,
    RangeSet,
    StreamPool,
    Verifier,
    canonical,
    key_id,
    ledger_message,
    record_message,
    to_ranges,
)
from consentkit.store.dpo import record_operation
from dpo_support import (
    add_record,
    days_ago,
    ids_of,
    keys,
    listed,
    post,
    record_ids,
    report,
    run_flask,
    sql,
    sql_without_foreign_keys,
    state,
    write_app,
)

# -- the pure scheme ---------------------------------------------------------------------------


def test_to_ranges_compacts_positions():
    assert to_ranges([7, 1, 2, 3, 3, 9, 8]) == [[1, 3], [7, 9]]
    assert to_ranges([]) == []


def test_range_set_uncovered_parts():
    rs = RangeSet()
    rs.add_ranges({"s": [[3, 5], [10, 12]], "t": [[1, 1]]})
    rs.add("s", 6, 6)  # merges with 3-5
    assert rs.uncovered("s", 1, 15) == [(1, 2), (7, 9), (13, 15)]
    assert rs.uncovered("s", 3, 6) == []
    assert rs.uncovered("s", 11, 11) == []
    assert rs.uncovered("u", 1, 2) == [(1, 2)]
    assert rs.max("s") == 12
    assert rs.max("nope") == 0


def test_stream_pool_gives_concurrent_writers_distinct_streams():
    pool = StreamPool()
    a, b = pool.acquire(), pool.acquire()
    assert a.stream_id != b.stream_id
    assert (a.next_seq, b.next_seq) == (1, 1)
    pool.release(a, used=True)
    again = pool.acquire()
    assert again is a
    assert again.next_seq == 2
    pool.discard(again)  # after an error the stream is never reused
    fresh = pool.acquire()
    assert fresh is not a
    assert len(a.stream_id) >= 22  # 128 random bits


def test_a_forked_worker_never_continues_its_parents_streams():
    pool = StreamPool()
    parent = pool.acquire()
    pool.release(parent, used=True)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report the stream it would write with, and leave at once
        os.write(write_end, pool.acquire().stream_id.encode())
        os._exit(0)
    os.close(write_end)
    os.waitpid(pid, 0)
    child_stream = os.read(read_end, 100).decode()
    os.close(read_end)
    assert child_stream
    assert child_stream != parent.stream_id
    assert pool.acquire() is parent  # the parent keeps its own


def test_log_keys_rotation_and_unknown_key():
    old, new = b"old-key" * 4, b"new-key" * 4
    message = b"hello"
    kid_old, mac_old = LogKeys([old]).sign(message)
    rotated = LogKeys([new, old])
    assert rotated.current_id == key_id(new) != kid_old
    assert rotated.check(kid_old, message, mac_old) is True
    assert rotated.check(kid_old, b"other", mac_old) is False
    assert LogKeys([new]).check(kid_old, message, mac_old) is None


def _row(lk, stream, seq, record_id, **changes):
    row = {
        "record_id": record_id,
        "occurred_at": datetime(2026, 1, 1, tzinfo=UTC) + timedelta(minutes=seq),
        "site": "s",
        "subject": "a" * 64,
        "action": "accept_all",
        "surface": "banner",
        "granted": ["functional"],
        "denied": [],
        "withdrawn": [],
        "policy_version": "1",
        "locale": "en",
        "notice_hash": "n" * 64,
        "gpc": False,
        "expires_at": datetime(2026, 7, 1, tzinfo=UTC),
    }
    kid, mac = lk.sign(record_message(stream, seq, row))
    row.update(stream_id=stream, stream_seq=seq, key_id=kid, mac=mac)
    row.update(changes)
    return row


def _entry(lk, seq, kind, details):
    text = canonical(details)
    when = datetime(2026, 2, 1, tzinfo=UTC)
    kid, mac = lk.sign(ledger_message(seq, kind, when, text))
    return LedgerEntry(seq, kind, when, text, kid, mac)


def test_verifier_classifies_each_kind_of_tampering():
    lk = LogKeys([b"k" * 32])
    rows = [_row(lk, "s1", n, n) for n in range(1, 8)]
    rows[1] = {**rows[1], "site": "changed"}  # modified
    del rows[3]  # position 4 deleted
    forged = _row(lk, "s1", 8, 99)
    forged["mac"] = "0" * 64  # a forged row past the stream's end
    verifier = Verifier(lk)
    verifier.add_ledger([_entry(lk, 1, "seal", {"heads": {"s1": 7}})])
    for row in [*rows, forged]:
        verifier.add_record(row)
    rep = verifier.finish()
    assert rep.counts == {"modified": 1, "deleted": 1, "inserted": 1}
    assert ids_of(listed(rep, "modified")) == {2}
    assert ids_of(listed(rep, "inserted")) == {99}
    assert listed(rep, "deleted")[0].positions == (4, 4)


def test_verifier_accepts_holes_a_genuine_ledger_entry_explains():
    lk = LogKeys([b"k" * 32])
    rows = [_row(lk, "s1", n, n) for n in (1, 2, 5)]
    removal = _entry(lk, 1, "purge", {"removed": {"s1": [[3, 4]]}, "heads": {"s1": 5}})
    verifier = Verifier(lk)
    verifier.add_ledger([removal])
    for row in rows:
        verifier.add_record(row)
    assert verifier.finish().ok

    # The same removal forged (bad MAC) explains nothing and is itself reported.
    forged = LedgerEntry(1, "purge", removal.occurred_at, removal.details, removal.key_id, "f" * 64)
    verifier = Verifier(lk)
    verifier.add_ledger([forged])
    for row in rows:
        verifier.add_record(row)
    rep = verifier.finish()
    assert rep.counts == {"ledger-modified": 1, "deleted": 2}


def test_verifier_catches_tail_and_whole_stream_deletion_once_sealed():
    lk = LogKeys([b"k" * 32])
    seal = _entry(lk, 1, "seal", {"heads": {"s1": 3, "s2": 2}})
    verifier = Verifier(lk)
    verifier.add_ledger([seal])
    for row in [_row(lk, "s1", 1, 1), _row(lk, "s1", 2, 2)]:  # s1 lost 3, s2 lost everything
        verifier.add_record(row)
    rep = verifier.finish()
    assert rep.counts == {"deleted": 3}
    assert {(p.stream_id, p.positions) for p in rep.problems} == {
        ("s1", (3, 3)),
        ("s2", (1, 2)),
    }


def test_verifier_reports_missing_ledger_entries_and_rollback():
    lk = LogKeys([b"k" * 32])
    e1, e2, e3 = (_entry(lk, n, "seal", {"heads": {}}) for n in (1, 2, 3))
    verifier = Verifier(lk, anchors=[(4, "a" * 64)])
    verifier.add_ledger([e1, e3])
    rep = verifier.finish()
    assert rep.counts == {"ledger-deleted": 1, "rolled-back": 1}
    assert e2.seq == 2


# -- raw SQL tampering on the real databases ---------------------------------------------------


def _decisions(client, n=6):
    for i in range(n):
        post(client, ("accept_all", "reject_all", "custom")[i % 3])


def _verify(runner, *args):
    return runner.invoke(args=["consentkit", "verify", *args])


def test_untouched_log_verifies(app, client, runner):
    _decisions(client)
    result = _verify(runner)
    assert result.exit_code == 0, result.output
    assert "intact" in result.output
    rows = sql(app, "SELECT stream_id, stream_seq, key_id, mac FROM consentkit_records")
    assert all(r[0] and r[1] and r[2] and len(r[3]) == 64 for r in rows)


@pytest.mark.parametrize(
    "assignment",
    [
        "site = 'other-site'",
        "action = 'reject_all'",
        "granted = 'functional'",
        "withdrawn = 'marketing'",
        "policy_version = '2'",
        "locale = 'fr'",
        "gpc = NOT gpc",
        "subject = 'ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff'",
        "surface = 'preferences'",
        "mac = NULL",
    ],
)
def test_modified_record_is_reported(app, client, runner, assignment):
    _decisions(client)
    target = record_ids(app)[0]  # an accept_all: every assignment below changes it
    sql(app, f"UPDATE consentkit_records SET {assignment} WHERE record_id = :id", id=target)
    result = _verify(runner)
    assert result.exit_code == 1
    assert f"MODIFIED         record {target} " in result.output
    assert report(app).counts == {"modified": 1}


def test_modified_times_are_reported(app, client, runner):
    _decisions(client)
    first, second = record_ids(app)[:2]
    sql(
        app,
        "UPDATE consentkit_records SET occurred_at = :t WHERE record_id = :id",
        t=datetime(2020, 1, 1, tzinfo=UTC),
        id=first,
    )
    sql(
        app,
        "UPDATE consentkit_records SET expires_at = :t WHERE record_id = :id",
        t=datetime(2099, 1, 1, tzinfo=UTC),
        id=second,
    )
    rep = report(app)
    assert rep.counts == {"modified": 2}
    assert ids_of(rep.problems) == {first, second}
    assert _verify(runner).exit_code == 1


def test_inserted_records_are_reported(app, client, runner):
    _decisions(client, 3)
    stream, last = sql(
        app,
        "SELECT stream_id, max(stream_seq) FROM consentkit_records GROUP BY stream_id",
    )[0]
    columns = (
        "occurred_at, site, subject, action, surface, granted, denied, withdrawn,"
        " policy_version, locale, notice_hash, gpc, expires_at"
    )
    # A copy without any MAC, and a copy at the next position with a made-up MAC.
    sql(
        app,
        f"INSERT INTO consentkit_records (event_id, {columns}) SELECT 'forged1', {columns}"
        " FROM consentkit_records"
        " WHERE record_id = (SELECT min(record_id) FROM consentkit_records)",
    )
    sql(
        app,
        f"INSERT INTO consentkit_records (event_id, {columns}, stream_id, stream_seq, key_id, mac)"
        f" SELECT 'forged2', {columns}, stream_id, :seq, key_id, :mac FROM consentkit_records"
        " WHERE record_id = (SELECT min(record_id) FROM consentkit_records)",
        seq=last + 1,
        mac="ab" * 32,
    )
    forged = set(record_ids(app)[-2:])
    rep = report(app)
    assert rep.counts == {"inserted": 2}
    assert ids_of(rep.problems) == forged
    result = _verify(runner)
    assert result.exit_code == 1
    assert result.output.count("INSERTED") == 2
    assert stream


def test_deleted_records_are_reported(app, client, runner):
    _decisions(client, 6)
    ids = record_ids(app)
    sql(app, "DELETE FROM consentkit_records WHERE record_id IN (:a, :b)", a=ids[1], b=ids[2])
    result = _verify(runner)
    assert result.exit_code == 1
    assert "DELETED" in result.output
    assert "positions 2-3 missing" in result.output
    assert report(app).counts == {"deleted": 2}


def test_deleting_the_newest_records_is_caught_after_a_seal(app, client, runner):
    _decisions(client, 4)
    assert runner.invoke(args=["consentkit", "seal"]).exit_code == 0
    _decisions(client, 2)  # after the seal: these two are not vouched for yet
    ids = record_ids(app)
    sql(app, "DELETE FROM consentkit_records WHERE record_id = :id", id=ids[3])  # sealed
    rep = report(app)
    assert rep.counts == {"deleted": 1}
    assert listed(rep, "deleted")[0].positions == (4, 4)
    assert _verify(runner).exit_code == 1


def test_deleting_a_whole_sealed_stream_is_caught(app, make_app, database_uri, client, runner):
    _decisions(client, 2)
    # A second app process on the same log writes its own stream.
    other = make_app(CONSENTKIT_DATABASE_URI=database_uri)
    _decisions(other.test_client(), 3)
    assert len(sql(app, "SELECT DISTINCT stream_id FROM consentkit_records")) == 2
    record_operation(state(app).store, keys(app), "seal", {})
    victim = sql(app, "SELECT stream_id FROM consentkit_records ORDER BY record_id DESC")[0][0]
    sql(app, "DELETE FROM consentkit_records WHERE stream_id = :s", s=victim)
    rep = report(app)
    assert rep.counts == {"deleted": 3}
    assert {p.stream_id for p in rep.problems} == {victim}


def test_modified_and_deleted_notice_texts_are_reported(app, client, runner):
    post(client, "accept_all")
    client.post("/consent", json={"action": "reject_all", "locale": "fr"})
    hashes = [r[0] for r in sql(app, "SELECT notice_hash FROM consentkit_notices")]
    assert len(hashes) == 2
    sql(
        app,
        "UPDATE consentkit_notices SET texts = replace(texts, 'Accept all', 'OK')"
        " WHERE notice_hash = :h",
        h=hashes[0],
    )
    result = _verify(runner)
    assert result.exit_code == 1
    assert "NOTICE-MODIFIED" in result.output
    assert report(app).counts == {"notice-modified": 1}

    sql_without_foreign_keys(
        app, "DELETE FROM consentkit_notices WHERE notice_hash = :h", h=hashes[1]
    )
    assert report(app).counts == {"notice-modified": 1, "notice-missing": 1}


def test_ledger_tampering_is_reported(app, client, runner):
    _decisions(client, 2)
    for _ in range(3):
        assert runner.invoke(args=["consentkit", "seal"]).exit_code == 0
    sql(app, "UPDATE consentkit_ledger SET details = '{\"heads\":{}}' WHERE seq = 1")
    sql(app, "DELETE FROM consentkit_ledger WHERE seq = 2")
    rep = report(app)
    assert rep.counts == {"ledger-modified": 1, "ledger-deleted": 1}
    result = _verify(runner)
    assert result.exit_code == 1
    assert "LEDGER-MODIFIED" in result.output
    assert "LEDGER-DELETED" in result.output


def test_rollback_is_caught_with_an_anchor(app, client, runner, tmp_path):
    _decisions(client, 3)
    sealed = runner.invoke(args=["consentkit", "seal"])
    anchor = sealed.stdout.strip()
    seq = int(anchor.split(":")[0])
    assert _verify(runner, "--anchor", anchor).exit_code == 0
    # Roll the log back to before the seal: drop the seal and the rows it vouched for.
    sql(app, "DELETE FROM consentkit_ledger WHERE seq = :s", s=seq)
    sql(app, "DELETE FROM consentkit_records WHERE stream_seq = 3")
    assert report(app).ok  # without an outside anchor a clean rollback cannot be seen
    result = _verify(runner, "--anchor", anchor)
    assert result.exit_code == 1
    assert "ROLLED-BACK" in result.output
    # A verify --json report kept earlier serves as the anchor as well.
    kept = tmp_path / "report.json"
    kept.write_text(json.dumps({"ledger_head": {"seq": seq, "mac": anchor.split(":")[1]}}))
    assert _verify(runner, "--anchor", str(kept)).exit_code == 1


@pytest.mark.parametrize("anchor", ["12", "x:y", "3:" + "z" * 64, "/no/such/file.json"])
def test_bad_anchor_is_a_usage_error(app, runner, anchor):
    result = _verify(runner, "--anchor", anchor)
    assert result.exit_code == 2
    assert "--anchor" in result.output


def test_key_rotation(make_app, database_uri, runner):
    first = make_app(CONSENTKIT_DATABASE_URI=database_uri, CONSENTKIT_LOG_KEY="A" * 32)
    _decisions(first.test_client(), 2)
    rotated = make_app(
        CONSENTKIT_DATABASE_URI=database_uri,
        CONSENTKIT_LOG_KEY="B" * 32,
        CONSENTKIT_LOG_KEY_FALLBACKS=["A" * 32],
    )
    _decisions(rotated.test_client(), 2)
    assert len({r[0] for r in sql(rotated, "SELECT key_id FROM consentkit_records")}) == 2
    assert report(rotated).ok
    forgot = make_app(CONSENTKIT_DATABASE_URI=database_uri, CONSENTKIT_LOG_KEY="B" * 32)
    result = forgot.test_cli_runner().invoke(args=["consentkit", "verify"])
    assert result.exit_code == 1
    assert "UNKNOWN-KEY" in result.output
    assert "CONSENTKIT_LOG_KEY_FALLBACKS" in result.output


def test_unsigned_rows_are_inserted_until_adopted(app, client, runner):
    _decisions(client, 2)
    # Rows as an older consentkit (before tamper evidence) wrote them.
    sql(app, "UPDATE consentkit_records SET stream_id = NULL, stream_seq = NULL, mac = NULL")
    result = _verify(runner)
    assert result.exit_code == 1
    assert result.output.count("INSERTED") == 2
    adopted = runner.invoke(args=["consentkit", "seal", "--adopt-unsigned"])
    assert adopted.exit_code == 0, adopted.output
    assert "adopted 2" in adopted.output
    assert _verify(runner).exit_code == 0
    kinds = [r[0] for r in sql(app, "SELECT kind FROM consentkit_ledger ORDER BY seq")]
    assert kinds == ["adopt", "seal"]


_WRITER = """
import sys, threading
sys.path.insert(0, {tests!r})
from flask import Flask
from consentkit import ConsentKit
app = Flask("w", instance_path={instance!r})
app.config.update(SECRET_KEY={secret!r}, CONSENTKIT_DATABASE_URI={uri!r},
                  CONSENTKIT_COOKIE_SECURE=False)
ConsentKit(app)
errors = []
def work():
    client = app.test_client()
    for i in range(15):
        r = client.post("/consent", json={{"action": "accept_all" if i % 2 else "reject_all"}})
        if r.status_code != 200:
            errors.append(r.status_code)
threads = [threading.Thread(target=work) for _ in range(3)]
[t.start() for t in threads]
[t.join() for t in threads]
sys.exit(1 if errors else 0)
"""


@pytest.mark.slow
def test_concurrent_writer_processes_and_threads_verify(app, tmp_path):
    script = tmp_path / "writer.py"
    script.write_text(
        _WRITER.format(
            tests=str(tmp_path),
            instance=str(tmp_path / "w"),
            secret=app.config["SECRET_KEY"],
            uri=state(app).settings.database_uri,
        )
    )
    procs = [
        subprocess.Popen([sys.executable, str(script)], stderr=subprocess.PIPE, text=True)
        for _ in range(3)
    ]
    # Meanwhile, this process seals and writes too.
    client = app.test_client()
    sealer = threading.Thread(
        target=lambda: [record_operation(state(app).store, keys(app), "seal", {}) for _ in range(5)]
    )
    sealer.start()
    _decisions(client, 5)
    sealer.join()
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    rep = report(app)
    assert rep.ok, rep.as_dict()
    assert rep.records == 3 * 3 * 15 + 5
    assert rep.streams >= 4  # several writers, never one serialised chain


@pytest.mark.slow
def test_verify_in_a_real_flask_process(app, client, tmp_path):
    _decisions(client, 3)
    write_app(tmp_path, app)
    ok = run_flask(tmp_path, "verify", "--json")
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["intact"] is True
    sealed = run_flask(tmp_path, "seal")
    assert sealed.returncode == 0, sealed.stderr
    head = sealed.stdout.strip()
    assert run_flask(tmp_path, "verify", "--anchor", head).returncode == 0
    listing = run_flask(tmp_path, "ledger", "--json")
    assert listing.returncode == 0, listing.stderr
    (entry,) = [json.loads(line) for line in listing.stdout.splitlines()]
    assert entry["kind"] == "seal"
    assert entry["seq"] == int(head.split(":")[0])
    sql(app, "UPDATE consentkit_records SET action = 'accept_all' WHERE stream_seq = 2")
    bad = run_flask(tmp_path, "verify")
    assert bad.returncode == 1
    assert "MODIFIED" in bad.stdout
    assert "NOT intact" in bad.stderr


def test_writes_stay_one_insert(app, client):
    """Tamper evidence adds no query to a decision: the row and its MAC go in one INSERT."""
    post(client, "accept_all")  # notice stored, tables created
    statements: list[str] = []
    from sqlalchemy import event

    engine = state(app).store.engine

    def count(conn, cursor, statement, *args):
        statements.append(statement.split()[0].upper())

    event.listen(engine, "before_cursor_execute", count)
    try:
        post(client, "reject_all")
    finally:
        event.remove(engine, "before_cursor_execute", count)
    writes = [s for s in statements if s in ("INSERT", "UPDATE", "DELETE")]
    assert writes == ["INSERT"]


def test_old_records_signed_in_the_past_still_verify(app):
    add_record(app, occurred_at=days_ago(400))
    add_record(app, occurred_at=days_ago(1))
    assert report(app).ok


def test_ledger_lists_operations_without_positions_detail(app, client, runner):
    _decisions(client, 2)
    sql(app, "DELETE FROM consentkit_records WHERE stream_seq = 1")  # make a hole first
    assert runner.invoke(args=["consentkit", "seal"]).exit_code == 0
    result = runner.invoke(args=["consentkit", "ledger"])
    assert result.exit_code == 0
    (line,) = result.stdout.splitlines()
    assert " seal " in line
    assert '"via": "cli"' in line
    assert "heads" not in line
    # A seal never explains a hole: only a purge or an erasure through the tools does.
    assert report(app).counts == {"deleted": 1}


def test_an_export_manifest_serves_as_anchor(app, client, runner, tmp_path):
    _decisions(client, 2)
    assert runner.invoke(args=["consentkit", "seal"]).exit_code == 0
    out = tmp_path / "e.ndjson"
    assert (
        runner.invoke(args=["consentkit", "export", "--format", "ndjson", "-o", str(out)]).exit_code
        == 0
    )
    manifest = str(tmp_path / "e.ndjson.manifest.json")
    assert _verify(runner, "--anchor", manifest).exit_code == 0
    head = json.loads((tmp_path / "e.ndjson.manifest.json").read_text())["integrity"]["ledger_head"]
    sql(app, "DELETE FROM consentkit_ledger WHERE seq >= :s", s=head["seq"])
    result = _verify(runner, "--anchor", manifest)
    assert result.exit_code == 1
    assert "ROLLED-BACK" in result.output
