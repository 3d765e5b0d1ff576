"""A strict Content-Security-Policy needs no exception for consentkit: no inline code or
style, no event handlers; the only inline tags that run carry the page's nonce."""

from __future__ import annotations

import re

import pytest
from flask import g, render_template_string
from flask_talisman import Talisman

from test_gating import Elements

PAGE = (
    "<!doctype html><html><head>{{ consentkit_head() }}</head><body>"
    '{{ consentkit_script("statistics", src="/stats.js") }}'
    '{% call consentkit_script("statistics") %}window.counted = true;{% endcall %}'
    '{{ consentkit_iframe("marketing", "/embed", "Video") }}'
    '{{ consentkit_img("marketing", "/pixel.gif", "") }}'
    "{{ consentkit_banner() }}</body></html>"
)
STRICT = {"default-src": "'self'", "script-src": "'self'", "style-src": "'self'"}
_URL_ATTRS = ("href", "src", "data-src", "action", "formaction")


def csp_problems(html: str, nonce: str | None) -> list[str]:
    """What a strict policy (script-src 'self' 'nonce-…'; style-src 'self') would block."""
    doc = Elements(html)
    problems = []
    for element in doc.found:
        tag, attrs = element["tag"], element["attrs"]
        for name, value in attrs.items():
            if name.startswith("on"):
                problems.append(f"<{tag} {name}>: event handler")
            if name == "style":
                problems.append(f"<{tag} style>: inline style")
            if name in _URL_ATTRS and value and re.match(r"\s*javascript:", value, re.I):
                problems.append(f"<{tag} {name}>: javascript: URL")
        if tag == "script":
            kind = attrs.get("type")
            if kind in ("application/json", "text/plain") or "src" in attrs:
                continue
            if nonce is None or attrs.get("nonce") != nonce:
                problems.append(f"inline <script> without the nonce: {element['text'][:40]!r}")
        if tag == "style" and (nonce is None or attrs.get("nonce") != nonce):
            problems.append("inline <style> without the nonce")
    return problems


def pages(client) -> dict[str, tuple[str, str | None]]:
    """Every page consentkit renders for a visitor in the current state, with the nonce
    that the response's policy allows (``None`` without one)."""
    responses = {
        "page": client.get("/csp"),
        "page-fr-gpc": client.get("/csp", headers={"Accept-Language": "fr", "Sec-GPC": "1"}),
        "preferences": client.get("/consent"),
        "receipt": client.get("/consent/receipt"),
        "error": client.post("/consent", data={"action": "bogus"}),
    }
    found = {}
    for name, response in responses.items():
        policy = response.headers.get("Content-Security-Policy", "")
        nonce = re.search(r"'nonce-([^']+)'", policy)
        found[name] = (response.get_data(as_text=True), nonce.group(1) if nonce else None)
        assert found[name][0].strip(), name
    return found


@pytest.fixture
def strict_app(make_app, database_uri):
    app = make_app(CONSENTKIT_DATABASE_URI=database_uri, CONSENTKIT_GOOGLE_CONSENT_MODE=True)
    Talisman(
        app,
        force_https=False,
        content_security_policy=STRICT,
        content_security_policy_nonce_in=["script-src"],
    )

    @app.get("/csp")
    def csp_page() -> str:
        return render_template_string(PAGE)

    return app


def header_nonce(response) -> str:
    policy = response.headers["Content-Security-Policy"]
    found = re.search(r"'nonce-([^']+)'", policy)
    assert found, policy
    return found.group(1)


def test_the_checker_catches_what_a_strict_policy_blocks():
    assert csp_problems('<div style="color:red"></div>', "n") == ["<div style>: inline style"]
    assert csp_problems('<button onclick="x()">', "n") == ["<button onclick>: event handler"]
    assert csp_problems("<script>x()</script>", "n") == ["inline <script> without the nonce: 'x()'"]
    assert csp_problems('<script nonce="other">x()</script>', "n")
    assert csp_problems('<a href=" javascript:x()">', None)
    assert csp_problems("<style>p{}</style>", None)
    assert csp_problems('<script nonce="n">x()</script><script src="/a.js"></script>', "n") == []


@pytest.mark.parametrize("decision", [None, "reject_all", "accept_all"])
def test_every_page_is_clean_under_talisman(strict_app, decision):
    client = strict_app.test_client()
    if decision:
        client.post("/consent", data={"action": decision})
    for name, (html, nonce) in pages(client).items():
        assert nonce is not None, name
        assert csp_problems(html, nonce) == [], name
    # The page with inline gated code: its nonce is the one of its own response.
    response = client.get("/csp")
    nonce = header_nonce(response)
    html = response.get_data(as_text=True)
    assert csp_problems(html, nonce) == []
    doc = Elements(html)
    inline = [s for s in doc.tags("script") if s["text"] == "window.counted = true;"]
    assert len(inline) == 1
    assert inline[0]["attrs"]["nonce"] == nonce
    if decision == "accept_all":
        assert "type" not in inline[0]["attrs"]  # it runs now, by virtue of the nonce


def test_pages_without_inline_code_pass_without_any_nonce(strict_app):
    client = strict_app.test_client()
    for name, (html, _nonce) in pages(client).items():
        if name.startswith("page"):
            continue  # carries inline gated code: needs the nonce, checked above
        assert csp_problems(html, None) == [], name


def test_active_inline_script_without_a_nonce_would_be_blocked(make_app):
    """Without a nonce provider an inline gated script gets no nonce: the checker sees it,
    so the other tests would notice a missing nonce."""
    app = make_app()

    @app.get("/csp")
    def csp_page() -> str:
        return render_template_string(PAGE)

    client = app.test_client()
    client.post("/consent", data={"action": "accept_all"})
    html = client.get("/csp").get_data(as_text=True)
    assert csp_problems(html, None) == [
        "inline <script> without the nonce: 'window.counted = true;'"
    ]


def test_custom_nonce_provider_beats_talisman(make_app):
    app = make_app(ck={"csp_nonce": lambda: g.my_nonce})
    Talisman(
        app,
        force_https=False,
        content_security_policy=STRICT,
        content_security_policy_nonce_in=["script-src"],
    )

    @app.before_request
    def make_nonce() -> None:
        g.my_nonce = "site-nonce-1"

    @app.get("/csp")
    def csp_page() -> str:
        return render_template_string(PAGE)

    html = app.test_client().get("/csp").get_data(as_text=True)
    assert csp_problems(html, "site-nonce-1") == []
    assert 'nonce="site-nonce-1"' in html


def test_head_scripts_carry_the_nonce(strict_app):
    response = strict_app.test_client().get("/csp")
    nonce = header_nonce(response)
    head = Elements(response.get_data(as_text=True))
    for script in head.tags("script"):
        if "src" in script["attrs"] and script["attrs"]["src"].startswith("/consent/static/"):
            assert script["attrs"].get("nonce") == nonce
