"""`flask consentkit purge`: retention after a record stops being current, never a current
record before it expires, notice texts only when unreferenced, verify stays green."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from consentkit.store.dpo import purge
from dpo_support import (
    add_record,
    keys,
    notice_copy,
    post,
    report,
    run_flask,
    sql,
    state,
    write_app,
)

RETENTION_DAYS = 30
NOW = datetime.now(UTC)


def ago(days):
    return NOW - timedelta(days=days)


@pytest.fixture
def app(make_app, database_uri):
    return make_app(
        CONSENTKIT_DATABASE_URI=database_uri,
        CONSENTKIT_LOG_RETENTION=timedelta(days=RETENTION_DAYS),
    )


def _log(app):
    """Records named by what the purge must do with them."""
    old_notice = notice_copy({"format": 1, "title": "an old banner"})
    ids = {}
    # A decision replaced by a later one 100 days ago: ended 100 days ago -> purge.
    ids["replaced_long_ago"] = add_record(
        app, subject="a" * 64, occurred_at=ago(400), notice=old_notice
    )
    # ... the later one is current and unexpired (expires in 83 days) -> keep.
    ids["current"] = add_record(app, subject="a" * 64, occurred_at=ago(100))
    # A current record that expired 117 days ago -> purge.
    ids["expired_long_ago"] = add_record(app, subject="b" * 64, occurred_at=ago(300))
    # A current record that expired 20 days ago (< retention) -> keep.
    ids["expired_recently"] = add_record(app, subject="c" * 64, occurred_at=ago(203))
    # Replaced 10 days ago (< retention) -> keep, and its replacement too.
    ids["replaced_recently"] = add_record(app, subject="d" * 64, occurred_at=ago(60))
    ids["replacement"] = add_record(app, subject="d" * 64, occurred_at=ago(10))
    # A current record older than the retention whose choice lasts 13 months: not expired.
    ids["long_choice"] = add_record(
        app, subject="e" * 64, occurred_at=ago(300), expires_at=ago(300) + timedelta(days=395)
    )
    # The old banner's texts were stored long ago; nothing else uses them.
    sql(
        app,
        "UPDATE consentkit_notices SET created_at = :t WHERE notice_hash = :h",
        t=ago(400),
        h=old_notice.notice_hash,
    )
    return ids, old_notice


PURGED = {"replaced_long_ago", "expired_long_ago"}


def _ids(app):
    return {r[0] for r in sql(app, "SELECT record_id FROM consentkit_records")}


def test_dry_run_counts_and_changes_nothing(app):
    ids, _ = _log(app)
    runner = app.test_cli_runner()
    result = runner.invoke(args=["consentkit", "purge", "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "would remove 2 record(s) and 1 notice text(s)" in result.output
    assert _ids(app) == set(ids.values())
    assert sql(app, "SELECT count(*) FROM consentkit_ledger")[0][0] == 0


def test_purge_removes_exactly_the_records_past_retention(app):
    ids, old_notice = _log(app)
    runner = app.test_cli_runner()
    result = runner.invoke(args=["consentkit", "purge"])
    assert result.exit_code == 0, result.output
    assert "removed 2 record(s) and 1 notice text(s)" in result.output
    assert _ids(app) == {v for k, v in ids.items() if k not in PURGED}
    hashes = {r[0] for r in sql(app, "SELECT notice_hash FROM consentkit_notices")}
    assert old_notice.notice_hash not in hashes
    assert notice_copy().notice_hash in hashes  # still referenced
    # The log still verifies: the removal is accounted for in the ledger.
    verified = runner.invoke(args=["consentkit", "verify"])
    assert verified.exit_code == 0, verified.output
    # A second purge finds nothing more.
    again = runner.invoke(args=["consentkit", "purge"])
    assert "removed 0 record(s)" in again.output
    assert report(app).ok


def test_purge_records_counts_only(app):
    _log(app)
    assert app.test_cli_runner().invoke(args=["consentkit", "purge"]).exit_code == 0
    entries = sql(app, "SELECT kind, details FROM consentkit_ledger ORDER BY seq")
    assert [k for k, _ in entries] == ["purge", "purge"]
    removal, summary = (json.loads(d) for _, d in entries)
    assert removal["records"] == 2
    assert removal["unsigned"] == 0
    assert sum(b - a + 1 for ranges in removal["removed"].values() for a, b in ranges) == 2
    assert summary["summary"] == {"records": 2, "notices": 1}
    text = " ".join(d for _, d in entries)
    for subject in ("a" * 64, "b" * 64):
        assert subject not in text


def test_purge_in_batches_each_accounted(app):
    for n in range(7):
        add_record(app, occurred_at=ago(400 + n))
    add_record(app, occurred_at=ago(1))
    result = purge(state(app).store, keys(app), retention=timedelta(days=RETENTION_DAYS), batch=3)
    assert result.records == 7
    assert result.batches == 3
    assert len(result.ledger_seqs) == 4  # three batches and the summary
    assert report(app).ok


def test_a_current_record_is_never_purged_before_it_expires(app):
    # Decided long ago with a choice that still runs: the subject has nothing newer.
    keep = add_record(app, occurred_at=ago(390), expires_at=ago(390) + timedelta(days=395))
    assert app.test_cli_runner().invoke(args=["consentkit", "purge"]).exit_code == 0
    assert _ids(app) == {keep}


def test_live_decisions_keep_verifying_after_a_purge(app):
    client = app.test_client()
    post(client, "accept_all")
    _log(app)
    assert app.test_cli_runner().invoke(args=["consentkit", "purge"]).exit_code == 0
    post(client, "reject_all")
    post(app.test_client(), "accept_all")
    assert report(app).ok


def test_a_purged_notice_is_stored_again_when_used(app):
    """The writer cached the texts as stored; a purge removed them; the next decision on
    the same texts stores them again instead of failing."""
    notice = notice_copy({"format": 1, "title": "quiet site"})
    add_record(app, occurred_at=ago(500), notice=notice)
    sql(app, "UPDATE consentkit_notices SET created_at = :t", t=ago(500))
    assert app.test_cli_runner().invoke(args=["consentkit", "purge"]).exit_code == 0
    assert sql(app, "SELECT count(*) FROM consentkit_notices")[0][0] == 0
    add_record(app, occurred_at=ago(0), notice=notice)
    assert sql(app, "SELECT count(*) FROM consentkit_notices")[0][0] == 1
    assert report(app).ok


def test_purge_refuses_to_remove_a_tampered_record(app):
    ids, _ = _log(app)
    sql(
        app,
        "UPDATE consentkit_records SET site = 'x' WHERE record_id = :id",
        id=ids["expired_long_ago"],
    )
    result = app.test_cli_runner().invoke(args=["consentkit", "purge"])
    assert result.exit_code == 1
    assert "fail their MAC" in result.output
    assert ids["expired_long_ago"] in _ids(app)  # the evidence stays
    assert report(app).counts == {"modified": 1}


def test_legal_hold_suspends_purge(make_app, database_uri):
    app = make_app(
        CONSENTKIT_DATABASE_URI=database_uri,
        CONSENTKIT_LOG_RETENTION=timedelta(days=RETENTION_DAYS),
        CONSENTKIT_LEGAL_HOLD="case 2026-17",
    )
    ids, _ = _log(app)
    runner = app.test_cli_runner()
    result = runner.invoke(args=["consentkit", "purge"])
    assert result.exit_code == 1
    assert "legal hold" in result.output
    assert "case 2026-17" in result.output
    assert _ids(app) == set(ids.values())
    assert runner.invoke(args=["consentkit", "purge", "--dry-run"]).exit_code == 0


def test_purge_rejects_unknown_options(app):
    _log(app)
    result = app.test_cli_runner().invoke(args=["consentkit", "purge", "--dryrun"])
    assert result.exit_code == 2
    assert len(_ids(app)) == 7


@pytest.mark.slow
def test_purge_in_a_real_flask_process(app, tmp_path):
    ids, _ = _log(app)
    write_app(tmp_path, app, CONSENTKIT_LOG_RETENTION=f"timedelta(days={RETENTION_DAYS})")
    dry = run_flask(tmp_path, "purge", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "would remove 2 record(s)" in dry.stdout
    done = run_flask(tmp_path, "purge")
    assert done.returncode == 0, done.stderr
    assert _ids(app) == {v for k, v in ids.items() if k not in PURGED}
    assert run_flask(tmp_path, "verify").returncode == 0
