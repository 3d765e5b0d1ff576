"""The DPO pages under /consent/admin/: refused without authorisation, a streamed export
download recorded in the ledger, and the statistics dashboard in English and French."""

from __future__ import annotations

import csv
import io
import json
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from babel.messages.pofile import read_po

from dpo_support import add_record, post, sql

PAGES = [
    "/consent/admin/",
    "/consent/admin/stats",
    "/consent/admin/export",
    "/consent/admin/export?format=json",
    "/consent/admin/export/notices.json",
]


@pytest.mark.parametrize("path", PAGES)
def test_not_configured_is_404(app, client, path):
    post(client, "accept_all")
    assert client.get(path).status_code == 404
    assert sql(app, "SELECT count(*) FROM consentkit_ledger")[0][0] == 0


@pytest.mark.parametrize("path", PAGES)
def test_refused_is_403(make_app, database_uri, path):
    asked = []

    def check():
        asked.append(True)
        return False

    app = make_app(CONSENTKIT_DATABASE_URI=database_uri, ck={"admin_authorization": check})
    client = app.test_client()
    post(client, "accept_all")
    response = client.get(path)
    assert response.status_code == 403
    assert "consent" not in response.headers.get("Content-Disposition", "")
    assert asked
    assert sql(app, "SELECT count(*) FROM consentkit_ledger")[0][0] == 0


@pytest.fixture
def admin(make_app, database_uri):
    """Authorised only with the header a test sets (the callable runs per request)."""
    from flask import request

    return make_app(
        CONSENTKIT_DATABASE_URI=database_uri,
        CONSENTKIT_STATS_MIN_COUNT=2,
        ck={"admin_authorization": lambda: request.headers.get("X-DPO") == "yes"},
    )


DPO = {"X-DPO": "yes"}


def _fill(app):
    client = app.test_client()
    for _ in range(3):
        post(client, "accept_all")
        client.post(
            "/consent", json={"action": "custom", "granted": ["statistics"], "locale": "fr"}
        )
    add_record(app, occurred_at=datetime(2026, 1, 5, tzinfo=UTC), site="=other")


def test_authorisation_is_checked_per_request(admin):
    client = admin.test_client()
    assert client.get("/consent/admin/", headers=DPO).status_code == 200
    assert client.get("/consent/admin/").status_code == 403


def test_export_download_streams_csv_and_is_recorded(admin):
    _fill(admin)
    client = admin.test_client()
    response = client.get("/consent/admin/export?format=csv&action=accept_all", headers=DPO)
    assert response.status_code == 200
    assert response.is_streamed
    assert response.mimetype == "text/csv"
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["Content-Disposition"].startswith('attachment; filename="consent-log-')
    body = response.get_data()
    assert body.startswith(b"\xef\xbb\xbf")
    rows = list(csv.DictReader(io.StringIO(body.decode("utf-8-sig"), newline="")))
    assert [r["action"] for r in rows] == ["accept_all"] * 4
    assert rows[-1]["site"] == "'=other"
    kind, details = sql(admin, "SELECT kind, details FROM consentkit_ledger")[-1]
    recorded = json.loads(details)
    assert kind == "export"
    assert recorded["via"] == "web"
    assert recorded["completed"] is True
    assert recorded["records"] == 4
    assert recorded["filters"]["actions"] == ["accept_all"]


def test_export_download_json_has_notices(admin):
    _fill(admin)
    client = admin.test_client()
    response = client.get(
        "/consent/admin/export?format=json&since=2026-06-01&site=default", headers=DPO
    )
    document = json.loads(response.get_data())
    assert len(document["records"]) == 6
    assert set(document["notices"]) == {r["notice_hash"] for r in document["records"]}
    ndjson = client.get("/consent/admin/export?format=ndjson", headers=DPO).get_data()
    assert len(ndjson.splitlines()) == 7
    notices = client.get("/consent/admin/export/notices.json", headers=DPO).get_json()
    assert set(document["notices"]) <= set(notices["notices"])


@pytest.mark.parametrize(
    "query",
    [
        "format=xlsx",
        "since=yesterday",
        "until=2026-13-01",
        "since=2026-02-01&until=2026-01-01",
        "action=maybe",
    ],
)
def test_export_download_bad_parameters_are_400(admin, query):
    _fill(admin)
    response = admin.test_client().get(f"/consent/admin/export?{query}", headers=DPO)
    assert response.status_code == 400
    assert sql(admin, "SELECT count(*) FROM consentkit_ledger")[0][0] == 0


def _chart(html):
    start = html.index("<svg")
    end = html.index("</svg>") + len("</svg>")
    return ET.fromstring(html[start:end])


def test_dashboard_in_english(admin):
    _fill(admin)
    response = admin.test_client().get(
        "/consent/admin/stats?by=day", headers={**DPO, "Accept-Language": "en"}
    )
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert "Consent statistics" in html
    chart = _chart(html)
    assert chart.find("{http://www.w3.org/2000/svg}title").text == (
        "Share of decisions granting each category"
    )
    assert "Statistics" in html
    assert "Preferences" in html
    assert "<script" not in html[html.index("<main>") :]  # the chart needs no script
    assert response.headers["Cache-Control"] == "no-store"
    assert "50.0%" in html or "50.0 %" in html


def _english_admin_messages():
    po = Path(__file__).resolve().parent.parent / "src/consentkit/translations/en/LC_MESSAGES"
    with (po / "consentkit.po").open("rb") as fp:
        catalog = read_po(fp, locale="en")
    return {
        str(m.id)
        for m in catalog
        if m.id
        and "%(" not in str(m.id)
        and any("admin" in loc[0] for loc in m.locations)
        and str(m.id) not in ("Statistics", "Marketing")
    }


def test_dashboard_and_index_in_french(admin):
    _fill(admin)
    client = admin.test_client()
    english = _english_admin_messages()
    assert "Consent statistics" in english
    for path in ("/consent/admin/stats?by=week", "/consent/admin/"):
        response = client.get(path, headers={**DPO, "Accept-Language": "fr"})
        html = response.get_data(as_text=True)
        main = html[html.index("<main>") :]
        leaked = [m for m in english if m in main]
        assert not leaked, (path, leaked)
    html = client.get(
        "/consent/admin/stats?by=week", headers={**DPO, "Accept-Language": "fr"}
    ).get_data(as_text=True)
    assert "Statistiques de consentement" in html
    assert "Part des décisions acceptant chaque catégorie" in html
    assert "Préférences" in html
    assert "50,0" in html  # French number format


def test_dashboard_suppresses_small_groups(make_app, database_uri):
    app = make_app(CONSENTKIT_DATABASE_URI=database_uri, ck={"admin_authorization": lambda: True})
    start = datetime(2026, 1, 5, tzinfo=UTC)
    for i in range(3):
        add_record(app, occurred_at=start + timedelta(hours=i))
    html = app.test_client().get("/consent/admin/stats?by=day").get_data(as_text=True)
    assert "&lt; 10" in html
    assert len(_chart(html).findall("{http://www.w3.org/2000/svg}circle")) == 0


@pytest.mark.parametrize("query", ["by=year", "since=soon", "action=nope"])
def test_dashboard_bad_parameters_are_400(admin, query):
    response = admin.test_client().get(f"/consent/admin/stats?{query}", headers=DPO)
    assert response.status_code == 400
