"""Hostile input, generated: whatever a client sends, consentkit never answers 5xx, never
records or sets a cookie for input it refuses, says clearly why (400 / 403 / 413), and
never lets ``next``, the locale or a header reach a response header unchecked.

Each property runs a bounded number of examples (hypothesis, no deadline) against one app
per module on SQLite; one property also runs on PostgreSQL.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode, urljoin, urlsplit

import pytest
from conftest import PAGE, SECRET
from flask import Flask, render_template_string
from flask_wtf import CSRFProtect
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st
from sqlalchemy import select
from werkzeug.urls import iri_to_uri

from consentkit import ConsentKit
from consentkit.store import records

COOKIE = "eu-consent"
HOST = "localhost"
REFUSALS = {400, 403, 413}
# A deeper run: CONSENTKIT_FUZZ_EXAMPLES=5000 pytest tests/test_fuzz.py
EXAMPLES = int(os.environ.get("CONSENTKIT_FUZZ_EXAMPLES", "150"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
FEW = settings(FUZZ, max_examples=max(1, EXAMPLES * 2 // 5))


def build_app(instance: str, uri: str, *, csrf: str | None = None) -> Flask:
    """``csrf``: None, "before" (CSRFProtect set up before consentkit) or "after"."""
    app = Flask("fuzzapp", instance_path=instance)
    app.config.update(
        SECRET_KEY=SECRET,
        CONSENTKIT_COOKIE_SECURE=False,
        CONSENTKIT_DATABASE_URI=uri,
        WTF_CSRF_TIME_LIMIT=None,
    )
    if csrf == "before":
        CSRFProtect(app)
    ConsentKit(app)
    if csrf == "after":
        CSRFProtect(app)

    @app.get("/")
    def index() -> str:
        return render_template_string(PAGE)

    @app.post("/host-form")
    def host_form() -> str:  # a view of the host's own, which CSRFProtect must still guard
        return "host ok"

    return app


@pytest.fixture(scope="module")
def fuzz_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Flask]:
    base = tmp_path_factory.mktemp("fuzz")
    app = build_app(str(base / "instance"), f"sqlite:///{base}/log.sqlite3")
    yield app
    app.extensions["consentkit"].store.dispose()


@pytest.fixture(scope="module")
def pg_fuzz_app(tmp_path_factory: pytest.TempPathFactory, pg_server: Any) -> Iterator[Flask]:
    base = tmp_path_factory.mktemp("pgfuzz")
    app = build_app(str(base / "instance"), pg_server.create_database("fuzz_pg"))
    yield app
    app.extensions["consentkit"].store.dispose()


def count(app: Flask) -> int:
    return app.extensions["consentkit"].store.count()


def last_record(app: Flask) -> dict[str, Any]:
    with app.extensions["consentkit"].store.engine.connect() as conn:
        row = conn.execute(select(records).order_by(records.c.record_id.desc()).limit(1)).one()
    return dict(row._mapping)


def consent_cookies(response: Any) -> list[str]:
    return [h for h in response.headers.getlist("Set-Cookie") if h.startswith(COOKIE + "=")]


def routable(app: Flask, headers: dict[str, str]) -> bool:
    """False when the framework itself refuses the request before any view runs (a Host
    header that is no host name at all): then Flask answers its own plain 400."""
    context = app.test_request_context("/consent", method="POST", headers=headers)
    return context.request.routing_exception is None


def check(app: Flask, response: Any, before: int, *, routed: bool = True) -> bool:
    """The invariants every answer keeps. Returns whether the decision was accepted."""
    status = response.status_code
    event(f"status {status}")
    assert status < 500, response.get_data(as_text=True)[:500]
    for name, value in response.headers.items():
        assert not set("\r\n") & set(name + value), (name, value)
    location = response.headers.get("Location")
    if location is not None:
        # Always back to this site: a path, never another host (also once resolved).
        assert location.startswith("/")
        assert not location.startswith("//")
        assert "\\" not in location
        assert urlsplit(urljoin(f"http://{HOST}/x/", location)).netloc == HOST
    after = count(app)
    if status in (200, 303):
        assert after == before + 1, "an accepted decision appends exactly one record"
        assert len(consent_cookies(response)) == 1
        return True
    assert status in REFUSALS, status
    assert after == before, "a refused request recorded something"
    assert consent_cookies(response) == []
    if not routed:
        assert status == 400
        return False
    body = response.get_data(as_text=True)
    if response.mimetype == "application/json":
        payload = json.loads(body)
        assert isinstance(payload["error"], str)
        assert payload["error"].strip()
    else:
        assert re.search(r'<p role="alert">[^<]*\w', body), body[:300]
    return False


# -- strategies --------------------------------------------------------------------------

ACTIONS = ["accept_all", "reject_all", "custom", "close"]
CATEGORIES = ["preferences", "statistics", "marketing", "functional"]
FIELDS = ["action", "granted", "surface", "next", "locale", "csrf_token"]

# What a WSGI server can hand over in a header: latin-1, no line breaks.
header_text = st.text(
    alphabet=st.characters(min_codepoint=0, max_codepoint=255, blacklist_characters="\r\n"),
    max_size=120,
)
json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False),
    st.text(max_size=40),
    st.sampled_from(ACTIONS + CATEGORIES + ["banner", "preferences", "en", "fr", "/", "//x"]),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=6), st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)
# Near-valid decisions: the right fields with valid and invalid values mixed.
near_valid = st.fixed_dictionaries(
    {"action": st.sampled_from(ACTIONS) | st.sampled_from(ACTIONS) | json_scalars},
    optional={
        "granted": st.lists(st.sampled_from(CATEGORIES), max_size=5) | json_values,
        "surface": st.sampled_from(["banner", "preferences"]) | json_scalars,
        "locale": st.sampled_from(["en", "fr", "de", "FR"]) | json_scalars,
    },
)
json_bodies = st.one_of(
    near_valid,
    st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=12), json_values, max_size=6),
    json_values,
)
form_text = st.one_of(
    st.sampled_from(ACTIONS + CATEGORIES + ["banner", "preferences", "en", "fr", ""]),
    st.text(max_size=60),
)
form_pairs = st.lists(
    st.tuples(st.sampled_from(FIELDS) | st.text(max_size=12), form_text), max_size=8
) | st.lists(st.tuples(st.sampled_from(FIELDS), form_text), max_size=4)
next_values = st.one_of(
    st.text(max_size=80),
    st.sampled_from(
        [
            "/",
            "//evil.example",
            "/\\evil.example",
            "https://evil.example/",
            "/%2F%2Fevil.example",
            "/%5Cevil.example",
            "/%0d%0aSet-Cookie:%20x=1",
            "/ok\r\nLocation: https://evil.example",
            "/\t/evil.example",
            "/article/1?x=1#top",
            "javascript:alert(1)",
            "/%252F%252Fevil",
        ]
    ),
    st.builds(lambda s: "/" + s, st.text(max_size=60)),
)


@st.composite
def hostile_headers(draw: st.DrawFn) -> dict[str, str]:
    names = draw(
        st.sets(
            st.sampled_from(
                [
                    "Accept-Language",
                    "Sec-GPC",
                    "Origin",
                    "Referer",
                    "Accept",
                    "Sec-Fetch-Site",
                    "X-Forwarded-Host",
                    "Host",
                ]
            ),
            max_size=5,
        )
    )
    special = {
        "Accept-Language": st.sampled_from(["fr", "fr-FR;q=0.9,en;q=0.8", "*", "de;q=abc", ";;;"]),
        "Sec-GPC": st.sampled_from(["1", "0", " 1", "1 ", "true", ""]),
        "Origin": st.sampled_from([f"http://{HOST}", "null", "http://evil.example", "http://"]),
        "Referer": st.sampled_from([f"http://{HOST}/article/1", "https://evil.example/", "/x"]),
        "Accept": st.sampled_from(["application/json", "text/html", "*/*", "application/*;q=x"]),
        "Sec-Fetch-Site": st.sampled_from(["same-origin", "cross-site", "none", "same-site"]),
        "X-Forwarded-Host": st.sampled_from(["evil.example"]),
        "Host": st.sampled_from([HOST, "evil.example", "localhost:80", "", "a b", "[::1", "."]),
    }
    return {name: draw(st.one_of(special[name], header_text)) for name in names}


def cross_origin(headers: dict[str, str]) -> bool:
    """Whether a browser would call this request cross-site (the expected 403s): the first
    of Origin and Referer present must name this request's own host."""
    if headers.get("Sec-Fetch-Site") == "cross-site":
        return True
    host = headers.get("Host", HOST)  # an empty Host matches no origin
    if host.endswith(":80"):
        host = host[:-3]  # the default port is not part of the host
    for name in ("Origin", "Referer"):
        if name in headers:
            try:
                parts = urlsplit(headers[name])
            except ValueError:
                return True
            same = parts.netloc.lower() == host.lower() and bool(parts.netloc)
            return parts.scheme not in ("http", "https") or not same
    return False


# -- POST /consent: bodies ---------------------------------------------------------------


@FUZZ
@given(body=json_bodies)
def test_json_bodies(fuzz_app, body):
    client = fuzz_app.test_client()
    before = count(fuzz_app)
    response = client.post("/consent", data=json.dumps(body), content_type="application/json")
    accepted = check(fuzz_app, response, before)
    if accepted:
        assert isinstance(body, dict)
        assert body.get("action") in ACTIONS
        assert response.get_json()["decided"] is True
    elif response.status_code == 400:
        payload = response.get_json()
        assert isinstance(payload["fields"], dict)
        assert payload["fields"], "a 400 names what is wrong"


@FEW
@given(body=json_bodies)
def test_json_bodies_on_postgresql(pg_fuzz_app, body):
    before = count(pg_fuzz_app)
    response = pg_fuzz_app.test_client().post(
        "/consent", data=json.dumps(body), content_type="application/json"
    )
    check(pg_fuzz_app, response, before)


@FUZZ
@given(pairs=form_pairs, as_json=st.booleans())
def test_form_bodies(fuzz_app, pairs, as_json):
    client = fuzz_app.test_client()
    before = count(fuzz_app)
    response = client.post(
        "/consent",
        data=urlencode(pairs),
        content_type="application/x-www-form-urlencoded",
        headers={"Accept": "application/json"} if as_json else {},
    )
    accepted = check(fuzz_app, response, before)
    if accepted:
        actions = [v for k, v in pairs if k == "action"]
        assert len(actions) == 1
        assert actions[0] in ACTIONS


@FUZZ
@given(
    raw=st.binary(max_size=600),
    content_type=st.one_of(
        st.sampled_from(
            [
                "application/json",
                "application/json; charset=latin-1",
                "application/x-www-form-urlencoded",
                "multipart/form-data",
                "multipart/form-data; boundary=xx",
                "multipart/form-data; boundary=",
                "text/plain",
                "",
            ]
        ),
        header_text,
    ),
)
def test_raw_bodies_and_content_types(fuzz_app, raw, content_type):
    before = count(fuzz_app)
    response = fuzz_app.test_client().post(
        "/consent", data=raw, headers={"Content-Type": content_type}
    )
    check(fuzz_app, response, before)


@FUZZ
@given(
    size=st.integers(min_value=0, max_value=20_000),
    declared=st.one_of(
        st.none(),
        st.integers(min_value=-5, max_value=10**12).map(str),
        st.sampled_from(["", "abc", "1e3", " 12", "0x10", "+5"]),
    ),
    form=st.booleans(),
)
def test_body_sizes_and_content_length(fuzz_app, size, declared, form):
    # Valid decisions padded to ``size`` bytes (empty ``granted`` fields, JSON whitespace).
    if form:
        body = ("action=accept_all" + "&granted=" * (size // 9)).encode()
        content_type = "application/x-www-form-urlencoded"
    else:
        body = ('{"action":"accept_all"' + " " * size + "}").encode()
        content_type = "application/json"
    overrides = {} if declared is None else {"CONTENT_LENGTH": declared}
    before = count(fuzz_app)
    response = fuzz_app.test_client().post(
        "/consent", data=body, content_type=content_type, environ_overrides=overrides
    )
    accepted = check(fuzz_app, response, before)
    limit = fuzz_app.extensions["consentkit"].settings.max_body
    if declared is None:
        assert accepted is (len(body) <= limit)
        if not accepted:
            assert response.status_code == 413
    elif declared.isdigit() and int(declared) > limit:
        assert response.status_code == 413  # refused on the declared length, unread


@FUZZ
@given(size=st.integers(min_value=3500, max_value=5000), form=st.booleans())
def test_streamed_bodies_over_the_limit_are_413_not_truncated(fuzz_app, size, form):
    """A chunked body has no Content-Length (gunicorn passes it on as a terminated stream):
    it must be measured, not cut at the limit and parsed as if it were whole. Valid
    decisions padded with empty ``granted`` fields would otherwise be accepted."""
    if form:
        body = ("action=accept_all" + "&granted=" * (size // 9)).encode()
        content_type = "application/x-www-form-urlencoded"
    else:
        body = ('{"action":"accept_all"' + " " * size + "}").encode()
        content_type = "application/json"
    before = count(fuzz_app)
    response = fuzz_app.test_client().post(
        "/consent",
        data=body,
        content_type=content_type,
        headers={"Transfer-Encoding": "chunked"},
        environ_overrides={"wsgi.input_terminated": True},
    )
    accepted = check(fuzz_app, response, before)
    limit = fuzz_app.extensions["consentkit"].settings.max_body
    assert accepted is (len(body) <= limit)
    if not accepted:
        assert response.status_code == 413


def test_a_streamed_form_is_not_judged_on_its_first_4096_bytes(fuzz_app):
    """Found by the property above: cut at the limit, this body reads as a valid
    ``accept_all``; whole, it is too large (and names ``action`` twice)."""
    body = ("action=accept_all&&" + "&granted=" * 700 + "&action=reject_all").encode()
    before = count(fuzz_app)
    response = fuzz_app.test_client().post(
        "/consent",
        data=body,
        content_type="application/x-www-form-urlencoded",
        headers={"Transfer-Encoding": "chunked"},
        environ_overrides={"wsgi.input_terminated": True},
    )
    assert response.status_code == 413
    assert count(fuzz_app) == before
    assert consent_cookies(response) == []


# -- headers, cookies, query strings -----------------------------------------------------


@FUZZ
@given(headers=hostile_headers(), action=st.sampled_from(ACTIONS), as_json=st.booleans())
def test_hostile_headers(fuzz_app, headers, action, as_json):
    client = fuzz_app.test_client()
    before = count(fuzz_app)
    if as_json:
        response = client.post("/consent", json={"action": action}, headers=headers)
    else:
        response = client.post("/consent", data={"action": action}, headers=headers)
    routed = routable(fuzz_app, headers)
    accepted = check(fuzz_app, response, before, routed=routed)
    if not routed:
        assert not accepted
    elif cross_origin(headers):
        assert response.status_code == 403
        assert "cross-origin" in response.get_data(as_text=True)
    else:
        assert accepted, response.get_data(as_text=True)[:300]
        row = last_record(fuzz_app)
        assert row["gpc"] is (headers.get("Sec-GPC") == "1")  # exactly "1", nothing else
        assert row["locale"] in ("en", "fr")
    language = response.headers.get("Content-Language")
    assert language in (None, "en", "fr")


@FUZZ
@given(value=next_values, cookie_accept=st.booleans())
def test_next_never_leaves_the_site(fuzz_app, value, cookie_accept):
    before = count(fuzz_app)
    response = fuzz_app.test_client().post(
        "/consent", data={"action": "accept_all" if cookie_accept else "reject_all", "next": value}
    )
    accepted = check(fuzz_app, response, before)
    if accepted:
        assert response.status_code == 303
        location = response.headers["Location"]
        if location != "/":
            assert location in (value, iri_to_uri(value))  # the same path, URI-quoted
            assert not value.startswith("//")


@FUZZ
@given(locale=st.one_of(st.text(max_size=20), st.sampled_from(["fr\r\nX-Evil: 1", "fr", "en"])))
def test_locale_field_is_one_of_the_sites(fuzz_app, locale):
    before = count(fuzz_app)
    response = fuzz_app.test_client().post(
        "/consent", json={"action": "reject_all", "locale": locale}
    )
    accepted = check(fuzz_app, response, before)
    assert accepted is (locale in ("en", "fr"))
    if not accepted:
        assert response.status_code == 400
        assert "locale" in response.get_json()["fields"]


def _mutations(draw: st.DrawFn, good: str) -> str:
    kind = draw(st.sampled_from(["flip", "truncate", "append", "replace", "random"]))
    if kind == "random":
        return draw(header_text)
    if kind == "truncate":
        return good[: draw(st.integers(0, max(0, len(good) - 1)))]
    if kind == "append":
        return good + draw(st.text(min_size=1, max_size=8))
    position = draw(st.integers(0, len(good) - 1))
    char = draw(st.characters(min_codepoint=33, max_codepoint=126))
    assume(char != good[position])
    if kind == "flip":
        return good[:position] + char + good[position + 1 :]
    return good[:position] + char + good[position:]


@FUZZ
@given(data=st.data())
def test_tampered_cookies_mean_undecided(fuzz_app, data):
    client = fuzz_app.test_client()
    first = client.post("/consent", json={"action": "accept_all"})
    good = first.get_json()
    header = consent_cookies(first)[0]
    value = header.split(";", 1)[0].split("=", 1)[1]
    bad = _mutations(data.draw, value)
    assume(bad != value)
    other = fuzz_app.test_client()
    other.set_cookie(COOKIE, bad)
    for path in ("/consent", "/consent/receipt", "/"):
        response = other.get(path, headers={"Accept": "application/json"})
        assert response.status_code == 200
    state = other.get("/consent", headers={"Accept": "application/json"}).get_json()
    receipt = other.get("/consent/receipt", headers={"Accept": "application/json"}).get_json()
    if state["decided"]:
        # Only an equivalent encoding of the same signed cookie could verify.
        assert state["consent_id"] == good["consent_id"]
    else:
        assert receipt["records"] == []
    before = count(fuzz_app)
    response = other.post("/consent", json={"action": "reject_all"})
    assert check(fuzz_app, response, before)
    if not state["decided"]:
        assert response.get_json()["consent_id"] != good["consent_id"]


@FUZZ
@given(raw=header_text)
def test_raw_cookie_headers(fuzz_app, raw):
    client = fuzz_app.test_client()
    for path in ("/", "/consent", "/consent/receipt"):
        response = client.get(path, headers={"Cookie": raw})
        assert response.status_code == 200
    before = count(fuzz_app)
    response = client.post("/consent", json={"action": "close"}, headers={"Cookie": raw})
    assert check(fuzz_app, response, before)


@FUZZ
@given(
    query=st.one_of(
        header_text,
        st.lists(st.tuples(form_text, next_values), max_size=4).map(urlencode),
        st.sampled_from(
            [
                "next=<script>alert(1)</script>",
                'x="><script>alert(1)</script>',
                "next=%22%3E%3Cscript%3Ealert(1)%3C/script%3E",
            ]
        ),
    )
)
def test_query_strings(fuzz_app, query):
    client = fuzz_app.test_client()
    for path in ("/", "/consent", "/consent/receipt", "/consent/health"):
        response = client.get(path, query_string=query)
        assert response.status_code == 200
        body = response.get_data(as_text=True)
        # Whatever came in the query string is escaped where it is echoed back.
        assert "<script>alert" not in body
    before = count(fuzz_app)
    response = client.post("/consent", data={"action": "reject_all"}, query_string=query)
    assert check(fuzz_app, response, before)
    assert response.headers["Location"] == "/"  # next comes from the form, not the URL


# -- cross-origin protection, with and without the host's CSRFProtect ------------------------


@pytest.fixture(scope="module", params=[None, "before", "after"])
def csrf_app(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Any:
    base = tmp_path_factory.mktemp("csrf")
    app = build_app(str(base / "instance"), f"sqlite:///{base}/log.sqlite3", csrf=request.param)
    yield app
    app.extensions["consentkit"].store.dispose()


@FEW
@given(headers=hostile_headers(), form=st.booleans())
def test_cross_origin_protection_with_and_without_csrfprotect(csrf_app, headers, form):
    client = csrf_app.test_client()
    before = count(csrf_app)
    if form:
        response = client.post("/consent", data={"action": "accept_all"}, headers=headers)
    else:
        response = client.post("/consent", json={"action": "accept_all"}, headers=headers)
    routed = routable(csrf_app, headers)
    accepted = check(csrf_app, response, before, routed=routed)
    assert accepted is (routed and not cross_origin(headers))


def test_banner_form_works_without_a_token_when_csrfprotect_is_installed(csrf_app):
    client = csrf_app.test_client()
    before = count(csrf_app)
    response = client.post(
        "/consent",
        data={"action": "reject_all", "next": "/"},
        headers={"Origin": f"http://{HOST}"},
    )
    assert response.status_code == 303
    assert count(csrf_app) == before + 1
    # A host template that adds its token to every form is tolerated too.
    response = client.post("/consent", data={"action": "close", "csrf_token": "anything"})
    assert response.status_code == 303


def test_the_hosts_own_views_stay_protected(csrf_app):
    response = csrf_app.test_client().post("/host-form", data={"x": "1"})
    if "csrf" in csrf_app.extensions:
        assert response.status_code == 400  # CSRFProtect still guards the host's views
        assert "CSRF" in response.get_data(as_text=True)
    else:
        assert response.status_code == 200


def test_cross_site_post_is_refused_even_with_a_valid_token(tmp_path):
    app = build_app(str(tmp_path / "instance"), f"sqlite:///{tmp_path}/log.sqlite3", csrf="before")
    client = app.test_client()
    with app.test_request_context():
        from flask_wtf.csrf import generate_csrf

        token = generate_csrf()
    response = client.post(
        "/consent",
        data={"action": "accept_all", "csrf_token": token},
        headers={"Origin": "https://evil.example"},
    )
    assert response.status_code == 403
    assert count(app) == 0
    app.extensions["consentkit"].store.dispose()
