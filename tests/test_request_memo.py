"""The per-request and per-process memos of the page helpers (benchmark B1) never show one
visitor another's state, nor a stale one."""

from __future__ import annotations

import json
import re
import time
from html import unescape
from html.parser import HTMLParser
from typing import Any

import pytest
from flask import Flask

from consentkit import fragments

CONFIG = re.compile(r'<script type="application/json" id="consentkit-config">(.*?)</script>')


def page_state(response: Any) -> dict[str, Any]:
    found = CONFIG.search(response.get_data(as_text=True))
    assert found is not None
    return dict(json.loads(found.group(1))["state"])


def test_each_visitor_sees_their_own_state(make_app: Any) -> None:
    app: Flask = make_app(CONSENTKIT_DATABASE_URI="sqlite://")
    first, second = app.test_client(), app.test_client()
    first.post("/consent", json={"action": "accept_all"})
    second.post("/consent", json={"action": "reject_all"})
    for _ in range(3):  # the second view of a page comes from the memos
        a, b = page_state(first.get("/")), page_state(second.get("/"))
        assert a["granted"] == ["functional", "preferences", "statistics", "marketing"]
        assert b["granted"] == ["functional"]
        assert a["consent_id"] != b["consent_id"]
        assert "Cookie" in first.get("/").vary


def test_a_new_decision_shows_on_the_next_page(make_app: Any) -> None:
    app: Flask = make_app(CONSENTKIT_DATABASE_URI="sqlite://")
    client = app.test_client()
    client.post("/consent", json={"action": "accept_all"})
    assert "statistics" in page_state(client.get("/"))["granted"]
    client.post("/consent", json={"action": "reject_all"})
    state = page_state(client.get("/"))
    assert state["granted"] == ["functional"]
    assert b">False<" in client.get("/").data  # consent.granted('statistics')


def test_the_same_cookie_header_expires_in_time(make_app: Any, monkeypatch: Any) -> None:
    app: Flask = make_app(CONSENTKIT_DATABASE_URI="sqlite://", CONSENTKIT_COOKIE_MAX_AGE=3600)
    client = app.test_client()
    client.post("/consent", json={"action": "accept_all"})
    assert page_state(client.get("/"))["decided"] is True
    later = time.time() + 3601
    monkeypatch.setattr(time, "time", lambda: later)
    state = page_state(client.get("/"))
    assert state["decided"] is False
    assert state["consent_id"] is None
    assert b'id="ck-banner"' in client.get("/").data


def test_gpc_is_read_per_request(make_app: Any) -> None:
    app: Flask = make_app(CONSENTKIT_DATABASE_URI="sqlite://")
    client = app.test_client()
    client.post("/consent", json={"action": "reject_all"})
    assert page_state(client.get("/"))["gpc"] is False
    assert page_state(client.get("/", headers={"Sec-GPC": "1"}))["gpc"] is True
    assert page_state(client.get("/"))["gpc"] is False


def test_a_long_cookie_header_is_read_but_not_remembered(make_app: Any) -> None:
    app: Flask = make_app(CONSENTKIT_DATABASE_URI="sqlite://")
    client = app.test_client()
    client.post("/consent", json={"action": "accept_all"})
    assert page_state(client.get("/"))["decided"] is True
    memo = app.extensions["consentkit"].seen
    assert len(memo) == 1
    client.set_cookie("bulky", "x" * 3000)
    assert page_state(client.get("/"))["decided"] is True
    assert len(memo) == 1


# -- consentkit's markup keeps an ASCII page ASCII ---------------------------------------


class _Text(HTMLParser):
    """What a browser reads from markup: text and attribute values, references decoded."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.parts.append(f"<{tag} {attrs}>")

    def handle_data(self, data: str) -> None:
        self.parts.append(data)


def _read(markup: str) -> list[str]:
    parser = _Text()
    parser.feed(markup)
    parser.close()
    return parser.parts


def test_ascii_html_reads_the_same_and_leaves_raw_text_alone() -> None:
    markup = (
        "<p title=\"Paramètres “x”\" data-a='à'>Gérer — 5 € <b>é</b></p>"
        '<a href="/x?a=1&amp;b=2" title="a>b é">lien à</a><textarea>é</textarea>'
    )
    verbatim = [
        "<script>var s = 'é';</script foo>",
        "<STYLE>p::after { content: 'é' }</STYLE>",
        "<noscript>é</noscript>",
        "<!-- é -->",
        "<svg><![CDATA[é]]></svg>",
        "<xmp>é</xmp>",
    ]
    out = fragments.ascii_html(markup + "".join(verbatim) + "<i>à\x85</i>")
    for kept in verbatim:  # references are not decoded there: left as they are
        assert kept in out
    assert out.startswith(
        "<p title=\"Param&#232;tres &#8220;x&#8221;\" data-a='&#224;'>G&#233;rer &#8212; 5 "
        "&#8364; <b>&#233;</b></p>"
    )
    assert 'title="a>b &#233;">lien &#224;</a><textarea>&#233;</textarea>' in out
    assert "<i>&#224;\x85</i>" in out  # &#133; would read as "…" (windows-1252)
    assert _read(out) == _read(markup + "".join(verbatim) + "<i>à\x85</i>")
    assert fragments.ascii_html("plain") == "plain"
    # Attribute names are not values: left alone.
    assert fragments.ascii_html("<p data-donnée='é'>x</p>") == "<p data-donnée='&#233;'>x</p>"


@pytest.mark.parametrize("lang", ["en", "fr"])
def test_a_pages_head_and_banner_are_ascii(make_app: Any, lang: str) -> None:
    app: Flask = make_app(CONSENTKIT_DATABASE_URI="sqlite://")
    client = app.test_client()
    headers = {"Accept-Language": lang}
    first = client.get("/", headers=headers)  # the banner
    assert b'id="ck-banner"' in first.data
    client.post("/consent", json={"action": "reject_all"}, headers=headers)
    for response in (first, client.get("/", headers=headers), client.get("/", headers=headers)):
        assert response.data.isascii()  # the test page itself is ASCII
    french = "Gérer le consentement aux cookies"
    assert (french in unescape(first.get_data(as_text=True))) is (lang == "fr")


def test_a_non_ascii_page_path_is_written_as_references(make_app: Any) -> None:
    app: Flask = make_app(CONSENTKIT_DATABASE_URI="sqlite://")

    @app.get("/café")
    def cafe() -> str:
        from flask import render_template_string

        return render_template_string("<body>{{ consentkit_banner() }}</body>")

    response = app.test_client().get("/café")
    assert response.status_code == 200
    assert response.data.isascii()
    assert 'value="/café"' in unescape(response.get_data(as_text=True))


def test_the_consent_template_global_is_the_requests_state(make_app: Any) -> None:
    app: Flask = make_app(CONSENTKIT_DATABASE_URI="sqlite://")

    @app.get("/state")
    def show() -> str:
        from flask import render_template_string

        return render_template_string(
            "{{ consent.decided }}|{{ consent.granted('statistics') }}|"
            "{{ consent.granted('marketing') }}|{{ consent.statistics }}|"
            "{{ consent.consent_id is none }}|{{ consent }}"
        )

    client = app.test_client()
    assert client.get("/state").get_data(as_text=True).split("|")[:5] == [
        "False",
        "False",
        "False",
        "False",
        "True",
    ]
    client.post("/consent", json={"action": "custom", "granted": ["statistics"]})
    shown = client.get("/state").get_data(as_text=True).split("|")
    assert shown[:5] == ["True", "True", "False", "True", "False"]
    assert shown[5].startswith("ConsentState(")
    with app.test_request_context("/"), pytest.raises(KeyError, match="unknown consent"):
        app.jinja_env.globals["consent"].granted("advertising")


# -- what a request's headers gave before ------------------------------------------------


def page_locale(response: Any) -> str:
    found = CONFIG.search(response.get_data(as_text=True))
    assert found is not None
    return str(json.loads(found.group(1))["locale"])


def test_a_locale_selector_is_asked_on_every_page(make_app: Any) -> None:
    """With a selector, the same headers may be another locale (here by URL): the head and
    banner are not taken from the visitor's previous page."""
    from flask import request

    app: Flask = make_app(
        CONSENTKIT_DATABASE_URI="sqlite://",
        ck={"locale_selector": lambda: request.args.get("lang")},
    )
    client = app.test_client()
    client.post("/consent", json={"action": "reject_all"})
    for lang in ("fr", "en", "fr"):
        response = client.get(f"/?lang={lang}")
        assert page_locale(response) == lang
        assert f'class="ck-root" lang="{lang}"' in response.get_data(as_text=True)


def test_the_same_headers_with_and_without_a_nonce(make_app: Any) -> None:
    """A page with a CSP nonce gets it on its tags even when the same headers came before
    without one (and the other way round)."""
    from flask import g

    app: Flask = make_app(CONSENTKIT_DATABASE_URI="sqlite://")

    @app.before_request
    def maybe_nonce() -> None:
        from flask import request

        if "nonce" in request.args:
            request.csp_nonce = "n0nce-" + request.args["nonce"]  # as Flask-Talisman does
        g.unused = True

    client = app.test_client()
    client.post("/consent", json={"action": "accept_all"})
    for query, nonce in (("", None), ("?nonce=1", "n0nce-1"), ("", None), ("?nonce=2", "n0nce-2")):
        html = client.get("/" + query).get_data(as_text=True)
        scripts = re.findall(r"<script[^>]*consentkit\.js[^>]*>", html)
        assert len(scripts) == 1
        assert (f'nonce="{nonce}"' in scripts[0]) if nonce else ("nonce=" not in scripts[0])


def test_the_same_headers_on_another_page_come_back_to_that_page(make_app: Any) -> None:
    app: Flask = make_app(CONSENTKIT_DATABASE_URI="sqlite://")
    client = app.test_client()
    client.post("/consent", json={"action": "reject_all"})
    for n in (1, 2, 1, 3):
        html = client.get(f"/article/{n}").get_data(as_text=True)
        assert f'href="/consent?next=/article/{n}"' in html


def test_a_cookie_signed_a_little_in_the_future_counts_once_its_time_comes(
    make_app: Any, monkeypatch: Any
) -> None:
    """A server whose clock runs ahead signs a cookie the others cannot verify yet (its
    signature is from the future): it must not stay "undecided" once it verifies."""
    app: Flask = make_app(CONSENTKIT_DATABASE_URI="sqlite://")
    client = app.test_client()
    now = time.time()
    monkeypatch.setattr(time, "time", lambda: now + 3)  # the signing server is 3 s ahead
    client.post("/consent", json={"action": "accept_all"})
    monkeypatch.setattr(time, "time", lambda: now)
    assert page_state(client.get("/"))["decided"] is False
    assert page_state(client.get("/"))["decided"] is False
    monkeypatch.setattr(time, "time", lambda: now + 5)
    assert page_state(client.get("/"))["decided"] is True


def test_long_or_odd_headers_are_not_remembered(make_app: Any) -> None:
    app: Flask = make_app(CONSENTKIT_DATABASE_URI="sqlite://")
    client = app.test_client()
    client.post("/consent", json={"action": "accept_all"})
    memo = app.extensions["consentkit"].seen
    languages = app.extensions["consentkit"].header_locales
    client.get("/")
    assert len(memo) == 1
    long_languages = ", ".join(f"x{i}-y;q=0.{i % 9 + 1}" for i in range(60)) + ", fr"
    assert len(long_languages) > 256
    page = client.get("/", headers={"Accept-Language": long_languages})
    assert page_locale(page) == "fr"  # read, not remembered
    assert len(memo) == 1
    assert long_languages not in languages
    for value in ("yes", "0", "1" * 5000):  # anything but exactly "1" is no signal
        assert page_state(client.get("/", headers={"Sec-GPC": value}))["gpc"] is False
    assert len(memo) == 1
    assert page_state(client.get("/", headers={"Sec-GPC": "1"}))["gpc"] is True
    assert len(memo) == 2


def test_under_a_script_root_the_forms_come_back_under_it(make_app: Any) -> None:
    """A site mounted at /shop: the banner's ``next`` and the answer to a decision keep the
    prefix (they used to drop it and send the visitor outside the site)."""
    app: Flask = make_app(CONSENTKIT_DATABASE_URI="sqlite://")
    client = app.test_client()
    shop = "http://localhost/shop/"
    html = client.get("/article/3?a=1", base_url=shop).get_data(as_text=True)
    assert 'action="/shop/consent"' in html
    assert 'name="next" value="/shop/article/3?a=1"' in html
    assert 'href="/shop/consent?next=/shop/article/3%3Fa%3D1"' in html
    response = client.post(
        "/consent",
        data={"action": "reject_all", "next": "/shop/article/3?a=1"},
        base_url=shop,
    )
    assert response.status_code == 303
    assert response.headers["Location"] == "/shop/article/3?a=1"
