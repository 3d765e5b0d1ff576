"""The contract's HTTP table, through the test client, on SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

import pytest
from conftest import SECRET, log_rows, notice_rows

from consentkit.cookie import ConsentCookieCodec

COOKIE = "eu-consent"


def cookie_of(response: Any) -> str | None:
    for header in response.headers.getlist("Set-Cookie"):
        if header.startswith(COOKIE + "="):
            return header
    return None


def cookie_value(header: str) -> str:
    return header.split(";", 1)[0].split("=", 1)[1]


def decode(app: Any, header: str) -> Any:
    st = app.extensions["consentkit"]
    return st.codec.loads(cookie_value(header), policy_version=st.settings.policy_version)


# -- POST /consent: the three decisions ------------------------------------------------------


def test_reject_all_form(app, client):
    response = client.post("/consent", data={"action": "reject_all", "next": "/article/2"})
    assert response.status_code == 303
    assert response.headers["Location"] == "/article/2"
    header = cookie_of(response)
    assert header is not None
    assert "Max-Age=15811200" in header  # 183 days
    assert "SameSite=Lax" in header
    assert "Path=/" in header
    state = decode(app, header)
    assert state.decided
    assert state.granted_categories == ("functional",)
    rows = log_rows(app)
    assert len(rows) == 1
    row = rows[0]
    assert row["action"] == "reject_all"
    assert row["granted"] == "functional"
    assert row["denied"] == "preferences,statistics,marketing"
    assert row["withdrawn"] == ""
    assert row["surface"] == "banner"
    assert row["gpc"] is False
    # The subject is a keyed hash of the consent id, never the raw id.
    assert row["subject"] != state.consent_id
    assert state.consent_id not in json.dumps({k: str(v) for k, v in row.items()})
    assert len(row["subject"]) == 64


def test_accept_all_json(app, client):
    response = client.post("/consent", json={"action": "accept_all"})
    assert response.status_code == 200
    body = response.get_json()
    assert body["decided"] is True
    assert body["granted"] == ["functional", "preferences", "statistics", "marketing"]
    assert body["denied"] == []
    assert body["policy_version"] == "1"
    assert body["gpc"] is False
    assert len(body["consent_id"]) >= 22
    assert body["expires_at"].endswith("+00:00")
    assert decode(app, cookie_of(response)).marketing
    rows = log_rows(app)
    assert [r["action"] for r in rows] == ["accept_all"]
    assert rows[0]["granted"] == "functional,preferences,statistics,marketing"


@pytest.mark.parametrize(
    ("granted", "expected"),
    [
        ([], ["functional"]),
        (["statistics"], ["functional", "statistics"]),
        (["marketing", "preferences"], ["functional", "preferences", "marketing"]),
    ],
)
def test_custom_grants_exactly_the_chosen(app, client, granted, expected):
    response = client.post("/consent", json={"action": "custom", "granted": granted})
    assert response.status_code == 200
    assert response.get_json()["granted"] == expected
    assert list(decode(app, cookie_of(response)).granted_categories) == expected
    rows = log_rows(app)
    assert len(rows) == 1
    assert rows[0]["action"] == "custom"
    assert rows[0]["granted"] == ",".join(expected)


def test_custom_form_with_repeated_field(app, client):
    response = client.post(
        "/consent",
        data={
            "action": "custom",
            "granted": ["statistics", "preferences"],
            "surface": "preferences",
        },
    )
    assert response.status_code == 303
    row = log_rows(app)[0]
    assert row["granted"] == "functional,preferences,statistics"
    assert row["surface"] == "preferences"


def test_close_means_refusal(app, client):
    response = client.post("/consent", json={"action": "close"})
    assert response.get_json()["granted"] == ["functional"]
    assert log_rows(app)[0]["action"] == "close"


def test_withdrawn_is_computed_from_previous_decision(app, client):
    client.post("/consent", json={"action": "accept_all"})
    client.post("/consent", json={"action": "custom", "granted": ["preferences"]})
    client.post("/consent", json={"action": "accept_all"})
    rows = log_rows(app)
    assert [r["withdrawn"] for r in rows] == ["", "statistics,marketing", ""]
    assert len({r["subject"] for r in rows}) == 1  # one visitor, one subject


def test_state_is_effective_on_the_next_page(app, client):
    assert b"<p id=stats>False</p>" in client.get("/").data
    client.post("/consent", json={"action": "custom", "granted": ["statistics"]})
    page = client.get("/").data
    assert b"<p id=stats>True</p>" in page
    assert b'id="ck-banner"' not in page  # decided: no banner
    client.post("/consent", json={"action": "reject_all"})
    assert b"<p id=stats>False</p>" in client.get("/").data


def test_a_returning_visitors_page_leaves_the_panel_out(app, client):
    page = client.get("/article/3").get_data(as_text=True)
    # Undecided: the banner's "Customise" opens the in-page panel at once.
    assert 'id="ck-banner"' in page
    assert 'id="ck-panel"' in page
    assert 'id="ck-done"' in page
    client.post("/consent", json={"action": "reject_all"})
    page = client.get("/article/3").get_data(as_text=True)
    assert 'id="ck-manage"' in page
    assert 'href="/consent?next=/article/3"' in page
    for fragment in ('id="ck-banner"', 'id="ck-panel"', 'id="ck-done"', "<form"):
        assert fragment not in page


def test_the_panel_fragment_shows_the_visitors_choice(app, client):
    client.post("/consent", json={"action": "custom", "granted": ["statistics"]})
    response = client.get("/consent/panel?locale=fr&next=/article/3%3Fa%3D1")
    assert response.status_code == 200
    assert response.mimetype == "text/html"
    assert response.headers["Cache-Control"] == "no-store"
    html = response.get_data(as_text=True)
    # A fragment with its own root, so that it works wherever the page puts it.
    assert html.lstrip().startswith(
        '<div class="ck-root" lang="fr">\n<div class="ck-banner ck-done"'
    )
    assert html.rstrip().endswith("</dialog>\n</div>")
    assert "<html" not in html  # a fragment for the page, not a page
    assert 'id="ck-panel"' in html
    assert "Gérer le consentement aux cookies" in html
    assert re.search(r'value="statistics" id="ck-toggle-statistics"\s+checked', html)
    assert not re.search(r'value="marketing" id="ck-toggle-marketing"\s+checked', html)
    assert html.count('name="next" value="/article/3?a=1"') == 2  # both forms come back
    assert html.count('name="locale" value="fr"') == 2


@pytest.mark.parametrize(
    ("query", "expected_next"),
    [
        ("", "/"),
        ("?next=//evil.example/x", "/"),
        ("?next=https://evil.example/", "/"),
        ("?next=/" + "a" * 2048, "/"),
        ("?next=/ok%22%3E%3Cscript%3E", "/ok&#34;&gt;&lt;script&gt;"),
    ],
)
def test_the_panel_comes_back_only_to_a_same_site_path(client, query, expected_next):
    html = client.get("/consent/panel" + query).get_data(as_text=True)
    assert html.count(f'name="next" value="{expected_next}"') == 2
    assert "<script>" not in html


def test_the_panel_refuses_an_unknown_locale(app, client):
    response = client.get("/consent/panel?locale=xx", headers={"Accept": "application/json"})
    assert response.status_code == 400
    assert response.get_json()["fields"] == {"locale": ["must be one of en, fr"]}
    html = client.get("/consent/panel?locale=%00").get_data(as_text=True)
    assert "must be one of en, fr" in html
    assert log_rows(app) == []


def test_notice_texts_stored_once_per_hash(app, client):
    for _ in range(3):
        client.post("/consent", json={"action": "reject_all"}, headers={"Accept-Language": "fr"})
    client.post("/consent", json={"action": "reject_all"}, headers={"Accept-Language": "en"})
    rows = log_rows(app)
    stored = {n["notice_hash"]: n for n in notice_rows(app)}
    assert len(stored) == 2
    assert [r["locale"] for r in rows] == ["fr", "fr", "fr", "en"]
    for row in rows:
        notice = stored[row["notice_hash"]]
        # The hash resolves to the exact texts, and is their SHA-256.
        assert hashlib.sha256(notice["texts"].encode()).hexdigest() == row["notice_hash"]
        assert notice["locale"] == row["locale"]
    fr = json.loads(stored[rows[0]["notice_hash"]]["texts"])
    assert fr["title"] == "Gérer le consentement aux cookies"
    assert fr["buttons"]["reject_all"] == "Tout refuser"
    assert [c["title"] for c in fr["categories"]] == [
        "Fonctionnel",
        "Préférences",
        "Statistiques",
        "Marketing",
    ]


def test_locale_field_records_the_locale_shown(app, client):
    client.post("/consent", data={"action": "reject_all", "locale": "fr"})
    assert log_rows(app)[0]["locale"] == "fr"


def test_no_ip_or_user_agent_is_stored(app, client):
    client.post(
        "/consent",
        json={"action": "accept_all"},
        headers={"User-Agent": "Mozilla/5.0 UniqueAgent/42"},
        environ_base={"REMOTE_ADDR": "203.0.113.77"},
    )
    row = log_rows(app)[0]
    dumped = json.dumps({k: str(v) for k, v in row.items()})
    assert "203.0.113.77" not in dumped
    assert "UniqueAgent" not in dumped


# -- GPC ---------------------------------------------------------------------------------


def test_gpc_accept_all_leaves_marketing_off(app, client):
    response = client.post("/consent", json={"action": "accept_all"}, headers={"Sec-GPC": "1"})
    body = response.get_json()
    assert "marketing" not in body["granted"]
    assert body["gpc"] is True
    row = log_rows(app)[0]
    assert row["gpc"] is True
    assert "marketing" in row["denied"]
    # Without the header afterwards, Marketing is still off.
    assert client.get("/consent", headers={"Accept": "application/json"}).get_json()["granted"] == [
        "functional",
        "preferences",
        "statistics",
    ]


def test_gpc_explicit_marketing_grants_it(app, client):
    response = client.post(
        "/consent", json={"action": "custom", "granted": ["marketing"]}, headers={"Sec-GPC": "1"}
    )
    assert "marketing" in response.get_json()["granted"]


@pytest.mark.parametrize("value", ["0", "true", "1 ", "yes", ""])
def test_gpc_header_must_be_exactly_one(app, client, value):
    response = client.post("/consent", json={"action": "accept_all"}, headers={"Sec-GPC": value})
    assert "marketing" in response.get_json()["granted"]


def test_gpc_ignore_mode(make_app, database_uri):
    app = make_app(CONSENTKIT_DATABASE_URI=database_uri, CONSENTKIT_GPC="ignore")
    response = app.test_client().post(
        "/consent", json={"action": "accept_all"}, headers={"Sec-GPC": "1"}
    )
    assert "marketing" in response.get_json()["granted"]
    assert app.test_client().get("/.well-known/gpc.json").get_json()["gpc"] is False


def test_well_known_gpc(client):
    response = client.get("/.well-known/gpc.json")
    assert response.status_code == 200
    body = response.get_json()
    assert body["gpc"] is True
    assert len(body["lastUpdate"]) == 10
    assert body["lastUpdate"][4] == "-"


# -- GET /consent ----------------------------------------------------------------------------


def test_get_preferences_html(app, client):
    response = client.get("/consent?next=/article/1", headers={"Accept-Language": "fr"})
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert "Gérer le consentement aux cookies" in html
    assert 'value="/article/1"' in html
    assert "Toujours activé" in html
    # Optional toggles start off; functional is on and disabled.
    for name in ("preferences", "statistics", "marketing"):
        assert f'value="{name}" id="ck-toggle-{name}" aria' in html
    assert "checked disabled" in html
    assert response.headers["Cache-Control"] == "no-store"


def test_get_preferences_json(client):
    response = client.get("/consent", headers={"Accept": "application/json"})
    assert response.get_json() == {
        "decided": False,
        "granted": ["functional"],
        "denied": ["preferences", "statistics", "marketing"],
        "policy_version": "1",
        "expires_at": None,
        "consent_id": None,
        "gpc": False,
    }


def test_get_never_grants_or_records(app, client):
    for path in ("/consent", "/consent?action=accept_all", "/consent/receipt", "/"):
        response = client.get(path)
        assert cookie_of(response) is None
    assert (
        client.get(
            "/consent?action=accept_all&granted=marketing", headers={"Accept": "application/json"}
        ).get_json()["decided"]
        is False
    )
    assert log_rows(app) == []


def test_preferences_page_shows_previous_grants(client):
    client.post("/consent", json={"action": "custom", "granted": ["statistics"]})
    html = client.get("/consent").get_data(as_text=True)
    assert 'value="statistics" id="ck-toggle-statistics" checked' in html
    assert 'value="marketing" id="ck-toggle-marketing" aria' in html


# -- GET /consent/receipt ------------------------------------------------------------------


def test_receipt_json_lists_own_history(client):
    first = client.post("/consent", json={"action": "accept_all"}).get_json()
    client.post("/consent", json={"action": "reject_all"})
    body = client.get("/consent/receipt", headers={"Accept": "application/json"}).get_json()
    assert body["consent_id"] == first["consent_id"]
    assert [r["action"] for r in body["records"]] == ["accept_all", "reject_all"]
    assert body["records"][1]["withdrawn"] == ["preferences", "statistics", "marketing"]
    assert body["state"]["granted"] == ["functional"]


def test_receipt_html(client):
    client.post("/consent", json={"action": "reject_all"}, headers={"Accept-Language": "fr"})
    html = client.get("/consent/receipt", headers={"Accept-Language": "fr"}).get_data(as_text=True)
    assert "Historique de mes choix de cookies" in html
    assert "Tout refuser" in html


def test_receipt_without_cookie(client):
    body = client.get("/consent/receipt", headers={"Accept": "application/json"}).get_json()
    assert body["consent_id"] is None
    assert body["records"] == []
    assert "aucun choix" in client.get(
        "/consent/receipt", headers={"Accept-Language": "fr"}
    ).get_data(as_text=True)


def test_other_visitors_history_is_not_shown(app):
    one, two = app.test_client(), app.test_client()
    one.post("/consent", json={"action": "accept_all"})
    two.post("/consent", json={"action": "reject_all"})
    body = two.get("/consent/receipt", headers={"Accept": "application/json"}).get_json()
    assert [r["action"] for r in body["records"]] == ["reject_all"]


# -- policy version and cookie lifetime ------------------------------------------------------


def test_policy_bump_brings_back_undecided(make_app, database_uri):
    app1 = make_app(CONSENTKIT_DATABASE_URI=database_uri)
    header = cookie_of(app1.test_client().post("/consent", json={"action": "accept_all"}))
    app2 = make_app(CONSENTKIT_DATABASE_URI=database_uri, CONSENTKIT_POLICY_VERSION="2")
    client = app2.test_client()
    client.set_cookie(COOKIE, cookie_value(header))
    page = client.get("/").get_data(as_text=True)
    assert 'id="ck-banner"' in page
    assert "<p id=stats>False</p>" in page
    # Deciding again keeps the visitor's subject and records what was withdrawn.
    client.post("/consent", json={"action": "reject_all"})
    rows = log_rows(app2)
    assert rows[0]["subject"] == rows[1]["subject"]
    assert rows[1]["policy_version"] == "2"
    assert rows[1]["withdrawn"] == "preferences,statistics,marketing"


def test_secret_key_rotation(make_app, database_uri):
    old = make_app(CONSENTKIT_DATABASE_URI=database_uri, SECRET_KEY="old-key-" + "x" * 24)
    header = cookie_of(old.test_client().post("/consent", json={"action": "accept_all"}))
    rotated = make_app(
        CONSENTKIT_DATABASE_URI=database_uri,
        SECRET_KEY="new-key-" + "y" * 24,
        SECRET_KEY_FALLBACKS=["old-key-" + "x" * 24],
    )
    client = rotated.test_client()
    client.set_cookie(COOKIE, cookie_value(header))
    assert client.get("/consent", headers={"Accept": "application/json"}).get_json()["decided"]
    # The visitor's history is still found through the old key's subject hash.
    receipt = client.get("/consent/receipt", headers={"Accept": "application/json"}).get_json()
    assert [r["action"] for r in receipt["records"]] == ["accept_all"]
    # New cookies are signed with the new (current, last) key only.
    fresh = cookie_of(client.post("/consent", json={"action": "reject_all"}))
    only_new = ConsentCookieCodec([b"new-key-" + b"y" * 24], max_age=3600)
    assert only_new.loads(cookie_value(fresh), policy_version="1").decided
    unknown = make_app(CONSENTKIT_DATABASE_URI=database_uri, SECRET_KEY="other-" + "z" * 26)
    other = unknown.test_client()
    other.set_cookie(COOKIE, cookie_value(header))
    assert not other.get("/consent", headers={"Accept": "application/json"}).get_json()["decided"]


def test_state_json_consent_id_matches_cookie(app, client):
    body = client.post("/consent", json={"action": "reject_all"}).get_json()
    state = client.get("/consent", headers={"Accept": "application/json"}).get_json()
    assert state["consent_id"] == body["consent_id"]
    assert SECRET not in json.dumps(state)


def test_form_asking_for_json_gets_the_state(app, client):
    response = client.post(
        "/consent",
        data={"action": "custom", "granted": ["statistics"], "next": "/x"},
        headers={"Accept": "application/json"},
    )
    assert response.status_code == 200
    assert response.get_json()["granted"] == ["functional", "statistics"]
    assert cookie_of(response) is not None


def test_ordinary_page_views_never_touch_the_database(app, client):
    from sqlalchemy import event

    engine = app.extensions["consentkit"].store.engine
    statements: list[str] = []

    def count(conn, cursor, statement, *args):
        statements.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    try:
        client.get("/")  # undecided: banner rendered
        client.post("/consent", json={"action": "accept_all"})
        during_post = len(statements)
        assert during_post > 0  # the listener does see the store's queries
        for path in ("/", "/article/3", "/consent"):
            client.get(path)
        client.get("/consent", headers={"Accept": "application/json"})
        assert len(statements) == during_post
    finally:
        event.remove(engine, "before_cursor_execute", count)
