"""Bad input never costs data: clear 400/403/413, nothing recorded, no cookie set."""

from __future__ import annotations

import pytest
from conftest import log_rows

from test_http import cookie_of


def assert_refused(app, response, status):
    assert response.status_code == status
    assert cookie_of(response) is None
    assert log_rows(app) == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"action": "accept_everything"}, "action"),
        ({}, "action"),
        ({"action": 3}, "action"),
        ({"action": None}, "action"),
        ({"action": "custom", "granted": ["cookies"]}, "granted"),
        ({"action": "custom", "granted": ["functional"]}, "granted"),
        ({"action": "custom", "granted": "statistics"}, "granted"),
        ({"action": "custom", "granted": [1]}, "granted"),
        ({"action": "reject_all", "granted": ["statistics"]}, "granted"),
        ({"action": "accept_all", "surface": "popup"}, "surface"),
        ({"action": "accept_all", "extra": 1}, "extra"),
        ({"action": "accept_all", "locale": "de"}, "locale"),
        ({"action": "accept_all", "next": "/"}, "next"),
        ({"action": "custom", "granted": ["statistics"] * 50}, "granted"),
    ],
)
def test_json_field_errors_name_the_field(app, client, body, field):
    response = client.post("/consent", json=body)
    assert_refused(app, response, 400)
    payload = response.get_json()
    assert field in payload["fields"]
    assert field in payload["error"]


@pytest.mark.parametrize(
    "raw",
    ["", "{", "[]", '"accept_all"', "null", "123", '{"action": "accept_all"', "\xff\xfe"],
)
def test_malformed_json_bodies(app, client, raw):
    response = client.post("/consent", data=raw, content_type="application/json")
    assert_refused(app, response, 400)
    assert response.get_json()["error"]


@pytest.mark.parametrize(
    ("form", "field"),
    [
        ({"action": "maybe"}, "action"),
        ({"granted": "statistics"}, "action"),
        ({"action": ["accept_all", "reject_all"]}, "action"),
        ({"action": "custom", "granted": "everything"}, "granted"),
        ({"action": "reject_all", "surface": "x"}, "surface"),
    ],
)
def test_form_field_errors(app, client, form, field):
    response = client.post("/consent", data=form)
    assert_refused(app, response, 400)
    html = response.get_data(as_text=True)
    assert f"<code>{field}</code>" in html


@pytest.mark.parametrize("content_type", ["text/plain", "application/xml", None])
def test_unsupported_content_type(app, client, content_type):
    response = client.post(
        "/consent", data=b"action=accept_all", headers={"Content-Type": content_type or ""}
    )
    assert_refused(app, response, 400)


def test_body_over_limit_is_413(app, client):
    response = client.post("/consent", data={"action": "accept_all", "pad": "x" * 10_000})
    assert_refused(app, response, 413)
    response = client.post(
        "/consent",
        data='{"action":"accept_all","x":"' + "y" * 10_000 + '"}',
        content_type="application/json",
    )
    assert_refused(app, response, 413)


def test_malformed_multipart(app, client):
    response = client.post(
        "/consent",
        data=b'--xx\r\nContent-Disposition: form-data; name="action"\r\n\r\naccept_all',
        content_type="multipart/form-data; boundary=xx",
    )
    assert response.status_code in (400, 413)
    assert cookie_of(response) is None
    assert log_rows(app) == []


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "https://evil.example"},
        {"Origin": "null"},
        {"Origin": "http://localhost.evil.example"},
        {"Referer": "https://evil.example/page"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Origin": "javascript:alert(1)"},
        {"Origin": "http://[::1"},
    ],
)
def test_cross_origin_post_is_403(app, client, headers):
    response = client.post("/consent", json={"action": "accept_all"}, headers=headers)
    assert_refused(app, response, 403)


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "http://localhost"},
        {"Referer": "http://localhost/article/1"},
        {"Sec-Fetch-Site": "same-origin", "Origin": "http://localhost"},
        {},
    ],
)
def test_same_origin_post_is_accepted(app, client, headers):
    response = client.post("/consent", json={"action": "reject_all"}, headers=headers)
    assert response.status_code == 200
    assert len(log_rows(app)) == 1


@pytest.mark.parametrize(
    "target",
    [
        "//evil.example",
        "/\\evil.example",
        "\\\\evil.example",
        "https://evil.example/",
        "http:evil.example",
        "javascript:alert(1)",
        "/%2F%2Fevil.example",
        "%2F%2Fevil.example",
        "/%5Cevil.example",
        "/%252F%252Fevil.example",
        "/\r\nSet-Cookie: x=1",
        "/%0d%0aSet-Cookie:%20x=1",
        "/\tevil",
        "evil.example",
        "",
    ],
)
def test_next_only_same_site_paths(app, client, target):
    response = client.post("/consent", data={"action": "reject_all", "next": target})
    assert response.status_code == 303
    assert response.headers["Location"] == "/"
    assert "Set-Cookie: x" not in str(response.headers)


@pytest.mark.parametrize("target", ["/article/2", "/fr/?page=2#top", "/search?q=a%20b"])
def test_next_keeps_same_site_paths(client, target):
    response = client.post("/consent", data={"action": "reject_all", "next": target})
    assert response.headers["Location"] == target


def test_form_tolerates_a_host_csrf_field(app, client):
    response = client.post("/consent", data={"action": "reject_all", "csrf_token": "abc"})
    assert response.status_code == 303
    assert len(log_rows(app)) == 1


@pytest.mark.parametrize("method", ["PUT", "DELETE", "PATCH"])
def test_other_methods_are_405(app, client, method):
    response = client.open("/consent", method=method, json={"action": "accept_all"})
    assert response.status_code == 405
    assert log_rows(app) == []


def test_database_outage_is_503_and_not_acknowledged(make_app, tmp_path):
    # A database path that cannot be created: the decision is not acknowledged (no cookie),
    # so nothing the visitor was told is lost.
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    # The outage spool cannot be written either (tests/test_spool.py covers the spool).
    app = make_app(
        CONSENTKIT_DATABASE_URI=f"sqlite:///{blocker}/sub/log.sqlite3",
        CONSENTKIT_SPOOL_DIR=str(blocker / "spool"),
    )
    response = app.test_client().post("/consent", json={"action": "accept_all"})
    assert response.status_code == 503
    assert cookie_of(response) is None
    assert "try again" in response.get_json()["error"]
