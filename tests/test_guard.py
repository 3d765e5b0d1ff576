"""The cookie guard: refused cookies are never set, withdrawn ones are expired by the same
response, the host is told, and debug mode points at undeclared cookies."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import pytest
from flask import Response, request, session

from consentkit import Category, Cookie, consent_withdrawn, current_consent
from consentkit.categories import build_catalogue
from consentkit.guard import Expiry, cookies_to_expire, parse_set_cookie

CATEGORIES = [
    Category("preferences", cookies=[Cookie("theme")]),
    Category(
        "statistics",
        cookies=[
            Cookie("_pk_id.*"),
            Cookie("stats_http", path="/app", http_only=True),
        ],
    ),
    Category("marketing", cookies=[Cookie("ad_id", domain="localhost")]),
]
NOW = datetime(2026, 6, 1, tzinfo=UTC)


def set_cookie_headers(response) -> dict[str, str]:
    """Set-Cookie headers by cookie name."""
    found = {}
    for header in response.headers.getlist("Set-Cookie"):
        found[header.split("=", 1)[0]] = header
    return found


def expired(header: str) -> bool:
    parsed = parse_set_cookie(header)
    return parsed is not None and parsed.deletes


@pytest.fixture
def guarded(make_app, database_uri):
    app = make_app(ck={"categories": CATEGORIES}, CONSENTKIT_DATABASE_URI=database_uri)
    app.secret_key = "another-test-secret-for-the-session"

    @app.get("/set/<name>")
    def set_one(name: str) -> Response:
        response = Response("ok")
        response.set_cookie(name, "v1", max_age=3600)
        return response

    @app.get("/delete/<name>")
    def delete_one(name: str) -> Response:
        response = Response("ok")
        response.delete_cookie(name)
        return response

    @app.get("/session")
    def with_session() -> str:
        session["n"] = 1
        return "ok"

    return app


# -- pure parts ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "name", "deletes"),
    [
        ("theme=dark; Path=/; Max-Age=3600", "theme", False),
        ("theme=; Expires=Thu, 01 Jan 1970 00:00:00 GMT; Max-Age=0; Path=/", "theme", True),
        ("theme=; Expires=Thu, 01 Jan 1970 00:00:00 GMT", "theme", True),
        ("theme=x; Expires=Wed, 01 Jan 2031 00:00:00 GMT", "theme", False),
        # Max-Age wins over Expires (RFC 6265 5.3).
        ("theme=x; Expires=Thu, 01 Jan 1970 00:00:00 GMT; Max-Age=60", "theme", False),
        ("theme=x; max-age=-1", "theme", True),
        ("theme=x; Max-Age=soon", "theme", False),
        ("theme=x; Expires=not a date", "theme", False),
        (" _pk_id.1 = x ; Path=/", "_pk_id.1", False),
        ("theme=x; Max-Age=0", "theme", True),
    ],
)
def test_parse_set_cookie(header, name, deletes):
    parsed = parse_set_cookie(header, now=NOW)
    assert parsed is not None
    assert (parsed.name, parsed.deletes) == (name, deletes)


@pytest.mark.parametrize("header", ["novalue", "=x; Path=/", "  ; Path=/", ""])
def test_parse_set_cookie_without_a_name(header):
    assert parse_set_cookie(header, now=NOW) is None


def test_cookies_to_expire():
    catalogue = build_catalogue(CATEGORIES)
    result = cookies_to_expire(
        catalogue,
        withdrawn=["statistics"],
        denied=["statistics", "marketing", "functional"],
        present=["_pk_id.abc", "_pk_id.def", "ad_id", "other", "theme"],
    )
    assert len(result) == 4
    assert set(result) == {
        Expiry("stats_http", None, "/app", True),  # exact: even when not sent
        Expiry("_pk_id.abc", None, "/", False),
        Expiry("_pk_id.def", None, "/", False),
        Expiry("ad_id", "localhost", "/", False),  # a denied category's leftover
    }


def test_cookies_to_expire_leftovers_need_presence():
    catalogue = build_catalogue(CATEGORIES)
    assert cookies_to_expire(catalogue, withdrawn=[], denied=["marketing"], present=[]) == []
    functional = build_catalogue([Category("functional", cookies=[Cookie("sid")])])
    assert (
        cookies_to_expire(
            functional, withdrawn=["functional"], denied=["functional"], present=["sid"]
        )
        == []
    )


def test_cookies_to_expire_ignores_names_no_header_should_carry():
    catalogue = build_catalogue(CATEGORIES)
    result = cookies_to_expire(
        catalogue,
        withdrawn=[],
        denied=["statistics"],
        present=["_pk_id.a b", "_pk_id.\n", "_pk_id.é", '_pk_id."q"', "_pk_id.ok"],
    )
    assert result == [Expiry("_pk_id.ok", None, "/", False)]


# -- dropping refused cookies ------------------------------------------------------------


def test_undecided_visitor_gets_no_optional_cookie(guarded):
    client = guarded.test_client()
    for name in ("theme", "_pk_id.42", "stats_http", "ad_id"):
        response = client.get(f"/set/{name}")
        assert response.status_code == 200
        assert "Set-Cookie" not in response.headers, name
        assert client.get_cookie(name) is None
    # An undeclared cookie is not the guard's to refuse.
    assert "unknown" in set_cookie_headers(client.get("/set/unknown"))


def test_granted_category_cookies_go_through(guarded):
    client = guarded.test_client()
    client.post("/consent", data={"action": "custom", "granted": "statistics"})
    assert "_pk_id.42" in set_cookie_headers(client.get("/set/_pk_id.42"))
    assert "stats_http" in set_cookie_headers(client.get("/set/stats_http"))
    assert "Set-Cookie" not in client.get("/set/theme").headers
    assert "Set-Cookie" not in client.get("/set/ad_id").headers
    client.post("/consent", data={"action": "accept_all"})
    assert "theme" in set_cookie_headers(client.get("/set/theme"))
    assert "ad_id" in set_cookie_headers(client.get("/set/ad_id"))


def test_only_the_refused_header_is_dropped(guarded):
    @guarded.get("/many")
    def many() -> Response:
        response = Response("ok")
        response.set_cookie("first", "1")
        response.set_cookie("theme", "dark")
        response.set_cookie("last", "2")
        response.headers["X-Other"] = "kept"
        return response

    response = guarded.test_client().get("/many")
    assert list(set_cookie_headers(response)) == ["first", "last"]
    assert response.headers["X-Other"] == "kept"
    assert "Cookie" in response.vary


def test_deleting_a_refused_cookie_always_goes_through(guarded):
    response = guarded.test_client().get("/delete/theme")
    assert expired(set_cookie_headers(response)["theme"])


def test_consentkit_and_session_cookies_are_never_dropped(guarded):
    client = guarded.test_client()
    response = client.post("/consent", data={"action": "reject_all"})
    assert "eu-consent" in set_cookie_headers(response)
    assert "session" in set_cookie_headers(client.get("/session"))


def test_the_decision_response_follows_the_new_state(guarded):
    # A host hook that sets a preferences cookie on every response, the decision's too.
    @guarded.after_request
    def remember_theme(response: Response) -> Response:
        if request.path == "/consent":
            response.set_cookie("theme", "dark")
        return response

    client = guarded.test_client()
    accepted = client.post("/consent", data={"action": "accept_all"})
    assert "theme" in set_cookie_headers(accepted)
    # The request still carries the old "accept all" cookie; the new state refuses.
    rejected = client.post("/consent", data={"action": "reject_all"})
    header = set_cookie_headers(rejected)["theme"]
    assert expired(header)  # the guard's expiry, not the host's "dark"
    assert "dark" not in header


def test_responses_without_cookies_are_left_alone(guarded):
    response = guarded.test_client().get("/consent/static/consentkit/consentkit.css")
    assert response.status_code == 200
    assert "Cookie" not in response.vary
    response.close()


# -- withdrawal ----------------------------------------------------------------------------


def test_withdrawal_expires_the_declared_cookies(guarded):
    client = guarded.test_client()
    client.post("/consent", data={"action": "accept_all"})
    client.set_cookie("theme", "dark")
    client.set_cookie("_pk_id.abc", "1")
    client.set_cookie("_pk_id.def", "2")
    client.set_cookie("ad_id", "3")
    client.set_cookie("unrelated", "4")
    response = client.post("/consent", data={"action": "custom", "granted": "preferences"})
    assert response.status_code == 303
    headers = set_cookie_headers(response)
    assert set(headers) == {"eu-consent", "_pk_id.abc", "_pk_id.def", "stats_http", "ad_id"}
    for name in ("_pk_id.abc", "_pk_id.def", "stats_http", "ad_id"):
        assert expired(headers[name]), name
    # With the declared path, domain and HttpOnly flag.
    assert "Path=/app" in headers["stats_http"]
    assert "HttpOnly" in headers["stats_http"]
    assert "Domain=localhost" in headers["ad_id"]
    assert "HttpOnly" not in headers["_pk_id.abc"]
    # The browser really drops them, and keeps the rest.
    assert client.get_cookie("_pk_id.abc") is None
    assert client.get_cookie("theme").value == "dark"
    assert client.get_cookie("unrelated").value == "4"


def test_withdrawal_by_json_expires_too(guarded):
    client = guarded.test_client()
    client.post("/consent", json={"action": "accept_all"})
    client.set_cookie("theme", "dark")
    response = client.post("/consent", json={"action": "reject_all"})
    assert response.status_code == 200
    assert expired(set_cookie_headers(response)["theme"])


def test_secure_request_expires_with_secure(guarded):
    client = guarded.test_client()
    client.post("/consent", data={"action": "accept_all"}, base_url="https://localhost")
    response = client.post("/consent", data={"action": "reject_all"}, base_url="https://localhost")
    assert "Secure" in set_cookie_headers(response)["theme"]


def test_refusal_also_clears_leftovers_of_denied_categories(guarded):
    client = guarded.test_client()
    client.set_cookie("_pk_id.old", "1")  # set before the site asked, or by a stale script
    response = client.post("/consent", data={"action": "reject_all"})
    headers = set_cookie_headers(response)
    assert expired(headers["_pk_id.old"])
    # Nothing was withdrawn: exact names that the browser did not send are left alone.
    assert "theme" not in headers
    assert "stats_http" not in headers


def test_hostile_cookie_names_are_not_echoed(guarded):
    # Without the cookie jar, so that the raw header reaches the app.
    response = guarded.test_client(use_cookies=False).post(
        "/consent",
        data={"action": "reject_all"},
        headers={"Cookie": "_pk_id.a b=1; _pk_id.\x7f=2; _pk_id.ok=3"},
    )
    assert response.status_code == 303
    headers = set_cookie_headers(response)
    assert set(headers) == {"eu-consent", "_pk_id.ok"}


def test_a_failed_decision_expires_nothing(guarded):
    client = guarded.test_client()
    client.post("/consent", data={"action": "accept_all"})
    client.set_cookie("theme", "dark")
    response = client.post("/consent", data={"action": "nonsense"})
    assert response.status_code == 400
    assert "Set-Cookie" not in response.headers
    assert client.get_cookie("theme").value == "dark"


def test_withdrawal_signal_reaches_the_host(guarded):
    received = []

    def on_withdrawn(sender, **kwargs):
        received.append((sender, kwargs))

    client = guarded.test_client()
    with consent_withdrawn.connected_to(on_withdrawn, guarded):
        client.post("/consent", data={"action": "accept_all"})
        assert received == []
        client.post("/consent", data={"action": "custom", "granted": "preferences"})
        consent_id = client.get("/consent", headers={"Accept": "application/json"}).get_json()[
            "consent_id"
        ]
        client.post("/consent", data={"action": "reject_all"})
    assert [r[0] for r in received] == [guarded, guarded]
    assert received[0][1]["categories"] == ("statistics", "marketing")
    assert received[1][1]["categories"] == ("preferences",)
    assert received[0][1]["consent_id"] == consent_id
    assert received[0][1]["subject"] != consent_id
    assert received[0][1]["subject"] == received[1][1]["subject"]


# -- undeclared cookies in debug mode ------------------------------------------------------


def test_debug_mode_warns_once_about_undeclared_cookies(guarded, caplog):
    guarded.debug = True
    client = guarded.test_client()
    with caplog.at_level(logging.WARNING, logger=guarded.logger.name):
        client.get("/set/mystery")
        client.get("/set/mystery")
        client.get("/set/theme")  # declared
        client.get("/session")  # Flask's own
        client.post("/consent", data={"action": "reject_all"})  # consentkit's own
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "'mystery'" in warnings[0].getMessage()
    assert "/set/mystery" in warnings[0].getMessage()
    assert warnings[0].name == guarded.logger.name


def test_no_warning_outside_debug_mode(guarded, caplog):
    with caplog.at_level(logging.DEBUG):
        guarded.test_client().get("/set/mystery")
    assert not [r for r in caplog.records if "mystery" in r.getMessage()]


@pytest.mark.parametrize(
    ("own", "expected"),
    [
        ([], ["Cookie"]),
        (["Accept-Encoding"], ["Accept-Encoding, Cookie"]),
        (["Cookie"], ["Cookie"]),
        (["Accept-Language, cookie"], ["Accept-Language, cookie"]),
        (["Accept-Language", "Accept-Encoding"], ["Accept-Language, Accept-Encoding, Cookie"]),
        (["Accept-Language", " COOKIE "], ["Accept-Language", " COOKIE "]),
        (["*"], ["*"]),
    ],
)
def test_a_page_that_read_the_consent_varies_on_cookie_once(guarded, own, expected):
    # Every Vary value the page set is kept (several headers too), Cookie added once.
    @guarded.get("/varied")
    def varied() -> Response:
        response = Response(str(current_consent.granted("statistics")))
        for value in own:
            response.headers.add("Vary", value)
        return response

    response = guarded.test_client().get("/varied")
    assert response.headers.getlist("Vary") == expected


def test_vary_cookie_survives_a_later_hook_that_edits_vary(make_app):
    app = make_app()

    @app.get("/cors")
    def cors() -> Response:
        response = Response(str(current_consent.granted("statistics")))
        response.headers.add("Vary", "Accept-Language")
        return response

    # Registered after consentkit's hook, so Flask runs it first; then one registered
    # before consentkit (as an extension set up earlier would be) runs after it.
    app.after_request_funcs[None].insert(0, _add_origin)
    response = app.test_client().get("/cors")
    assert {v.strip() for v in response.headers["Vary"].split(",")} == {
        "Accept-Language",
        "Cookie",
        "Origin",
    }


def _add_origin(response: Response) -> Response:
    response.vary.add("Origin")  # Werkzeug reads and rewrites the first Vary header only
    return response
