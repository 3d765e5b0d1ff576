"""`flask consentkit subject`: one visitor's history (Art. 15), the receipt download, and
erasure (Art. 17) that keeps the log verifiable and records itself without the subject."""

from __future__ import annotations

import hashlib
import json

import pytest

from consentkit.integrity import canonical
from dpo_support import post, report, run_flask, sql, state, write_app


def _visitor(app):
    """A visitor with three decisions (one in French), and another visitor."""
    client = app.test_client()
    consent_id = post(client, "accept_all").get_json()["consent_id"]
    post(client, "custom", granted=["statistics"])
    client.post("/consent", json={"action": "reject_all", "locale": "fr"})
    post(app.test_client(), "accept_all")
    return client, consent_id


def _subject(runner, *args, **kwargs):
    return runner.invoke(args=["consentkit", "subject", *args], **kwargs)


def test_subject_prints_the_history_with_the_texts_shown(app, runner):
    _, consent_id = _visitor(app)
    result = _subject(runner, consent_id)
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["format"] == "consentkit-subject-history/1"
    assert document["consent_id"] == consent_id
    assert document["subjects"] == state(app).subjects(consent_id)
    assert [r["action"] for r in document["records"]] == ["accept_all", "custom", "reject_all"]
    assert document["records"][1]["withdrawn"] == ["preferences", "marketing"]
    assert {r["subject"] for r in document["records"]} == {document["subjects"][0]}
    assert set(document["notices"]) == {r["notice_hash"] for r in document["records"]}
    for notice_hash, notice in document["notices"].items():
        assert hashlib.sha256(canonical(notice["texts"]).encode()).hexdigest() == notice_hash
    locales = {n["locale"] for n in document["notices"].values()}
    assert locales == {"en", "fr"}


def test_subject_by_hash_and_unknown_subject(app, runner):
    _, consent_id = _visitor(app)
    subject = state(app).subjects(consent_id)[0]
    by_hash = json.loads(_subject(runner, subject).stdout)
    assert by_hash["consent_id"] is None
    assert len(by_hash["records"]) == 3
    unknown = _subject(runner, "A" * 22)
    assert unknown.exit_code == 0
    assert json.loads(unknown.stdout)["records"] == []
    assert "no record" in unknown.stderr


@pytest.mark.parametrize("bad", ["short", "x" * 65, "has space in it!!", "../../etc/passwd"])
def test_subject_rejects_malformed_ids(app, runner, bad):
    _visitor(app)
    result = _subject(runner, bad, "--erase", "--yes")
    assert result.exit_code == 2
    assert len(sql(app, "SELECT record_id FROM consentkit_records")) == 4


def test_receipt_download_is_the_same_document(app, runner):
    client, consent_id = _visitor(app)
    response = client.get("/consent/receipt/download")
    assert response.status_code == 200
    assert response.headers["Content-Disposition"].startswith("attachment;")
    assert response.headers["Cache-Control"] == "no-store"
    downloaded = response.get_json()
    printed = json.loads(_subject(runner, consent_id).stdout)
    assert downloaded["records"] == printed["records"]
    assert downloaded["notices"] == printed["notices"]
    assert downloaded["consent_id"] == consent_id
    # Another browser gets nothing of this visitor.
    assert app.test_client().get("/consent/receipt/download").status_code == 404


@pytest.mark.parametrize(
    ("language", "label"),
    [("en", "Download my history (JSON)"), ("fr", "Télécharger mon historique (JSON)")],
)
def test_receipt_page_offers_the_download(app, language, label):
    client, _ = _visitor(app)
    html = client.get("/consent/receipt", headers={"Accept-Language": language}).get_data(
        as_text=True
    )
    assert label in html
    assert 'href="/consent/receipt/download"' in html


def _rows(app):
    return sql(app, "SELECT subject FROM consentkit_records")


def test_erase_asks_then_deletes_and_keeps_verify_green(app, runner):
    client, consent_id = _visitor(app)
    subject = state(app).subjects(consent_id)[0]
    refused = _subject(runner, consent_id, "--erase", input="n\n")
    assert refused.exit_code == 1
    assert len(_rows(app)) == 4
    result = _subject(runner, consent_id, "--erase", input="y\n")
    assert result.exit_code == 0, result.output
    assert "erased 3 record(s)" in result.output
    remaining = _rows(app)
    assert len(remaining) == 1
    assert remaining[0][0] != subject
    assert runner.invoke(args=["consentkit", "verify"]).exit_code == 0
    # The erasure is recorded, with counts and positions only.
    kind, details = sql(app, "SELECT kind, details FROM consentkit_ledger")[-1]
    assert kind == "erase"
    assert json.loads(details)["records"] == 3
    assert subject not in details
    assert consent_id not in details
    # The visitor comes back with the same cookie: a new history starts, still verifiable.
    post(client, "reject_all")
    assert json.loads(_subject(runner, consent_id).stdout)["records"][0]["withdrawn"] == []
    assert report(app).ok


def test_erase_nothing_to_erase(app, runner):
    _visitor(app)
    result = _subject(runner, "B" * 22, "--erase", "--yes")
    assert result.exit_code == 0
    assert "nothing erased" in result.output
    assert sql(app, "SELECT count(*) FROM consentkit_ledger")[0][0] == 0


def test_legal_hold_refuses_erasure(make_app, database_uri):
    app = make_app(CONSENTKIT_DATABASE_URI=database_uri, CONSENTKIT_LEGAL_HOLD=True)
    _, consent_id = _visitor(app)
    result = _subject(app.test_cli_runner(), consent_id, "--erase", "--yes")
    assert result.exit_code == 1
    assert "legal hold" in result.output
    assert len(_rows(app)) == 4


def test_erase_refuses_to_destroy_tampering_evidence(app, runner):
    _, consent_id = _visitor(app)
    subject = state(app).subjects(consent_id)[0]
    sql(app, "UPDATE consentkit_records SET site = 'x' WHERE subject = :s", s=subject)
    result = _subject(runner, consent_id, "--erase", "--yes")
    assert result.exit_code == 1
    assert "fail their MAC" in result.output
    assert len(_rows(app)) == 4


@pytest.mark.slow
def test_subject_and_erase_in_a_real_flask_process(app, tmp_path):
    _, consent_id = _visitor(app)
    write_app(tmp_path, app)
    shown = run_flask(tmp_path, "subject", consent_id)
    assert shown.returncode == 0, shown.stderr
    assert len(json.loads(shown.stdout)["records"]) == 3
    erased = run_flask(tmp_path, "subject", consent_id, "--erase", stdin="y\n")
    assert erased.returncode == 0, erased.stderr
    assert len(_rows(app)) == 1
    assert run_flask(tmp_path, "verify").returncode == 0


def test_a_consent_id_starting_with_a_dash_is_an_argument(app, runner):
    # URL-safe base64: one visitor in 64 has an id like this one.
    result = _subject(runner, "-" + "A" * 21, "--erase", "--yes")
    assert result.exit_code == 0, result.output
    assert "nothing erased" in result.output
    result = _subject(runner, "-" + "A" * 21)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["records"] == []
