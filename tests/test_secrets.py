"""Secrets: no start without SECRET_KEY; cookie keys rotate through SECRET_KEY_FALLBACKS;
the key that names subjects in the log is separate, and rotating it keeps look-ups working
for as long as the old key stays in CONSENTKIT_SUBJECT_KEY_FALLBACKS.
"""

from __future__ import annotations

import hashlib
import hmac
import json

import pytest
from conftest import log_rows

from consentkit.config import ConfigError
from consentkit.cookie import ConsentCookieCodec
from consentkit.keys import derive_key
from test_http import COOKIE, cookie_of, cookie_value

OLD = "old-secret-" + "a" * 24
NEW = "new-secret-" + "b" * 24
SUBJECT_1 = "subject-key-one-" + "c" * 20
SUBJECT_2 = "subject-key-two-" + "d" * 20
JSON = {"Accept": "application/json"}


def hmac_hex(key: bytes, consent_id: str) -> str:
    return hmac.new(key, consent_id.encode(), hashlib.sha256).hexdigest()


def state(client):
    return client.get("/consent", headers=JSON).get_json()


def receipt_actions(client):
    return [r["action"] for r in client.get("/consent/receipt", headers=JSON).get_json()["records"]]


def visit(app, cookie: str):
    client = app.test_client()
    client.set_cookie(COOKIE, cookie)
    return client


# -- SECRET_KEY ------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [None, ""])
def test_start_fails_clearly_without_secret_key(make_app, value):
    with pytest.raises(ConfigError) as info:
        make_app(SECRET_KEY=value)
    assert info.value.key == "SECRET_KEY"
    assert "is not set" in str(info.value)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("SECRET_KEY_FALLBACKS", "old-key"),
        ("SECRET_KEY_FALLBACKS", [""]),
        ("SECRET_KEY_FALLBACKS", [3]),
        ("CONSENTKIT_SUBJECT_KEY", ""),
        ("CONSENTKIT_SUBJECT_KEY", 42),
        ("CONSENTKIT_SUBJECT_KEY_FALLBACKS", "old-subject-key"),
    ],
)
def test_malformed_keys_fail_at_start(make_app, key, value):
    with pytest.raises(ConfigError) as info:
        make_app(**{key: value})
    assert info.value.key == key


def test_subject_fallbacks_need_a_current_subject_key(make_app):
    with pytest.raises(ConfigError, match="needs CONSENTKIT_SUBJECT_KEY"):
        make_app(CONSENTKIT_SUBJECT_KEY_FALLBACKS=[SUBJECT_1])


def test_cookie_key_rotation_from_start_to_end(make_app, database_uri):
    """1. the site runs on OLD; 2. NEW becomes current, OLD a fallback: old cookies still
    count, new ones are signed with NEW only; 3. OLD is dropped: a cookie signed only with
    OLD means "undecided" (the banner again), never an error."""
    before = make_app(CONSENTKIT_DATABASE_URI=database_uri, SECRET_KEY=OLD)
    old_cookie = cookie_value(
        cookie_of(before.test_client().post("/consent", json={"action": "accept_all"}))
    )

    during = make_app(
        CONSENTKIT_DATABASE_URI=database_uri, SECRET_KEY=NEW, SECRET_KEY_FALLBACKS=[OLD]
    )
    client = visit(during, old_cookie)
    assert state(client)["decided"] is True
    renewed = cookie_value(cookie_of(client.post("/consent", json={"action": "reject_all"})))
    assert ConsentCookieCodec([NEW.encode()], max_age=3600).loads(renewed, policy_version="1")
    assert not ConsentCookieCodec([OLD.encode()], max_age=3600).load_payload(renewed)

    after = make_app(CONSENTKIT_DATABASE_URI=database_uri, SECRET_KEY=NEW)
    stale = visit(after, old_cookie)
    assert state(stale)["decided"] is False
    page = stale.get("/")
    assert page.status_code == 200
    assert 'id="ck-banner"' in page.get_data(as_text=True)  # asked again
    assert state(visit(after, renewed))["decided"] is True
    assert 'id="ck-banner"' not in visit(after, renewed).get("/").get_data(as_text=True)


# -- the subject key -------------------------------------------------------------------------


def test_default_subject_key_is_derived_from_secret_key_not_the_secret_itself(app, client):
    body = client.post("/consent", json={"action": "accept_all"}).get_json()
    subject = log_rows(app)[0]["subject"]
    secret = app.config["SECRET_KEY"].encode()
    assert subject == hmac_hex(derive_key(secret, "subject"), body["consent_id"])
    assert subject != hmac_hex(secret, body["consent_id"])
    assert body["consent_id"] not in json.dumps(log_rows(app), default=str)


def test_explicit_subject_key_survives_secret_key_rotation(make_app, database_uri):
    before = make_app(
        CONSENTKIT_DATABASE_URI=database_uri, SECRET_KEY=OLD, CONSENTKIT_SUBJECT_KEY=SUBJECT_1
    )
    response = before.test_client().post("/consent", json={"action": "accept_all"})
    consent_id = response.get_json()["consent_id"]
    rotated = make_app(
        CONSENTKIT_DATABASE_URI=database_uri,
        SECRET_KEY=NEW,
        SECRET_KEY_FALLBACKS=[OLD],
        CONSENTKIT_SUBJECT_KEY=SUBJECT_1,
    )
    client = visit(rotated, cookie_value(cookie_of(response)))
    client.post("/consent", json={"action": "reject_all"})
    rows = log_rows(rotated)
    # One subject for the whole history, whatever happened to SECRET_KEY.
    assert [r["subject"] for r in rows] == [hmac_hex(SUBJECT_1.encode(), consent_id)] * 2
    assert rows[1]["withdrawn"] == "preferences,statistics,marketing"
    # Dropping the old cookie key later changes nothing for the log's subjects.
    final = make_app(
        CONSENTKIT_DATABASE_URI=database_uri, SECRET_KEY=NEW, CONSENTKIT_SUBJECT_KEY=SUBJECT_1
    )
    assert final.extensions["consentkit"].subjects(consent_id)[0] == rows[0]["subject"]


def test_derived_subject_key_rotates_with_secret_key(make_app, database_uri):
    """Without CONSENTKIT_SUBJECT_KEY the subject key follows SECRET_KEY: while OLD is a
    fallback the visitor's history is found under both subjects; once OLD is dropped, the
    records written under it are no longer found from the visitor's cookie."""
    before = make_app(CONSENTKIT_DATABASE_URI=database_uri, SECRET_KEY=OLD)
    response = before.test_client().post("/consent", json={"action": "accept_all"})
    consent_id = response.get_json()["consent_id"]
    rotated = make_app(
        CONSENTKIT_DATABASE_URI=database_uri, SECRET_KEY=NEW, SECRET_KEY_FALLBACKS=[OLD]
    )
    client = visit(rotated, cookie_value(cookie_of(response)))
    renewed = cookie_value(
        cookie_of(client.post("/consent", json={"action": "custom", "granted": ["statistics"]}))
    )
    rows = log_rows(rotated)
    assert rows[0]["subject"] == hmac_hex(derive_key(OLD.encode(), "subject"), consent_id)
    assert rows[1]["subject"] == hmac_hex(derive_key(NEW.encode(), "subject"), consent_id)
    assert rows[1]["withdrawn"] == "preferences,marketing"  # found through the old subject
    assert receipt_actions(visit(rotated, renewed)) == ["accept_all", "custom"]

    after = make_app(CONSENTKIT_DATABASE_URI=database_uri, SECRET_KEY=NEW)
    assert receipt_actions(visit(after, renewed)) == ["custom"]
    assert len(log_rows(after)) == 2  # nothing deleted: only no longer linked to the cookie


def test_subject_key_rotation_keeps_look_ups_while_the_old_key_is_a_fallback(
    make_app, database_uri
):
    first = make_app(CONSENTKIT_DATABASE_URI=database_uri, CONSENTKIT_SUBJECT_KEY=SUBJECT_1)
    response = first.test_client().post("/consent", json={"action": "accept_all"})
    consent_id = response.get_json()["consent_id"]
    cookie = cookie_value(cookie_of(response))

    rotated = make_app(
        CONSENTKIT_DATABASE_URI=database_uri,
        CONSENTKIT_SUBJECT_KEY=SUBJECT_2,
        CONSENTKIT_SUBJECT_KEY_FALLBACKS=[SUBJECT_1],
    )
    st = rotated.extensions["consentkit"]
    assert st.subjects(consent_id) == [
        hmac_hex(SUBJECT_2.encode(), consent_id),
        hmac_hex(SUBJECT_1.encode(), consent_id),
    ]
    client = visit(rotated, cookie)
    client.post("/consent", json={"action": "reject_all"})
    rows = log_rows(rotated)
    assert [r["subject"] for r in rows] == st.subjects(consent_id)[::-1]  # old, then new
    assert rows[1]["withdrawn"] == "preferences,statistics,marketing"
    assert receipt_actions(client) == ["accept_all", "reject_all"]
    exported = rotated.test_cli_runner().invoke(
        args=["consentkit", "export", "--format", "ndjson", "--subject", consent_id]
    )
    assert exported.exit_code == 0, exported.output
    assert [json.loads(line)["action"] for line in exported.stdout.splitlines()] == [
        "accept_all",
        "reject_all",
    ]

    # The old key dropped: its records stay in the log but are no longer found by consent id.
    final = make_app(CONSENTKIT_DATABASE_URI=database_uri, CONSENTKIT_SUBJECT_KEY=SUBJECT_2)
    assert receipt_actions(visit(final, cookie)) == ["reject_all"]
    assert len(log_rows(final)) == 2
