"""Real-browser fixtures: one Chromium per session (Debian's, through Playwright), a fresh
context per test, and the test site served by a real HTTP server on 127.0.0.1.

Every page of the test site is served under the strict policy a careful site would use
(``default-src 'self'; script-src 'self' 'nonce-…'; style-src 'self'``), so each test also
checks that the banner works under it.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from flask import Flask, Response, g, render_template_string, request
from werkzeug.serving import make_server

from consentkit import Category, Cookie

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
AXE = Path(__file__).parent / "node_modules" / "axe-core" / "axe.min.js"
CSP = "default-src 'self'; script-src 'self' 'nonce-{nonce}'; style-src 'self'"

#: The statistics script of the test page: counts its runs and sets three declared cookies
#: from JavaScript (an exact name, and two matching patterns, one under another path).
STAT_JS = (
    "window.__ran = (window.__ran || 0) + 1;"
    "document.cookie = '_stat_js=1; path=/';"
    "document.cookie = '_pk_id.1.abc=1; path=/';"
    "document.cookie = '_pk_ses.1.abc=1; path=/t/';"
)
MARKETING_JS = "window.__marketing = true; document.cookie = 'video_id=42; path=/';"

PAGE = """<!doctype html>
<html lang="{{ ck_lang }}">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ page_title }}</title>
{{ consentkit_head() }}
<link rel="stylesheet" href="/t/site.css">
</head>
<body>
<header><a href="#content">{{ skip }}</a>
<nav><a href="/t/page">Home</a> <a href="/t/other">Other</a></nav></header>
<main id="content">
<h1>{{ page_title }}</h1>
<p id="stats">{{ consent.granted('statistics') }}</p>
<p><a href="/t/other" id="first-link">{{ more }}</a></p>
{{ consentkit_script('statistics', src='/t/stat.js') }}
{% call consentkit_script('statistics') %}window.__inline = (window.__inline || 0) + 1;{% endcall %}
{{ consentkit_script('marketing', body=marketing_js) }}
{{ consentkit_iframe('marketing', src='/t/embed', title=embed_title) }}
{{ consentkit_img('marketing', src='/t/pixel.gif', alt='') }}
</main>
<footer>{{ consentkit_banner() }}</footer>
</body>
</html>
"""

SITE_CSS = "body{margin:0;font:1rem/1.5 Georgia,serif}main,header{max-width:50rem;margin:auto}"
EMBED = "<!doctype html><html lang=en><title>Video</title><p>An embedded video.</p></html>"
# A 1x1 transparent GIF.
PIXEL = bytes.fromhex(
    "47494638396101000100800000000000ffffff21f90401000000002c00000000010001000002024401003b"
)


def site_categories() -> list[Category]:
    """Declared cookies of the test site: JavaScript-set and server-set (HttpOnly)."""
    return [
        Category(
            "preferences",
            cookies=(
                Cookie(
                    "theme",
                    provider="Test site",
                    purpose={"en": "Remembers the theme.", "fr": "Retient le thème."},
                    lifetime={"en": "6 months", "fr": "6 mois"},
                ),
            ),
        ),
        Category(
            "statistics",
            cookies=(
                Cookie(
                    "_stat_js",
                    provider="Test site",
                    purpose={"en": "Counts visits.", "fr": "Compte les visites."},
                    lifetime={"en": "13 months", "fr": "13 mois"},
                ),
                Cookie(
                    "_pk_id.*",
                    provider="Test site",
                    purpose={"en": "Tells visits apart.", "fr": "Distingue les visites."},
                    lifetime={"en": "13 months", "fr": "13 mois"},
                ),
                # Under a path that POST /consent does not see: only consentkit.js,
                # in the page, can find this one to delete it.
                Cookie(
                    "_pk_ses.*",
                    provider="Test site",
                    purpose={"en": "Groups a visit.", "fr": "Regroupe une visite."},
                    lifetime={"en": "30 minutes", "fr": "30 minutes"},
                    path="/t/",
                ),
                Cookie(
                    "_stat_srv",
                    provider="Test site",
                    purpose={"en": "Server-side count.", "fr": "Comptage côté serveur."},
                    lifetime={"en": "13 months", "fr": "13 mois"},
                    http_only=True,
                ),
            ),
        ),
        Category(
            "marketing",
            cookies=(
                Cookie(
                    "video_*",
                    provider="Video host",
                    purpose={"en": "Follows you.", "fr": "Vous suit."},
                    lifetime={"en": "1 year", "fr": "1 an"},
                    party="third",
                ),
            ),
        ),
    ]


def add_test_routes(app: Flask) -> None:
    """The test page (``/``, ``/t/other``) and its resources, all under the strict CSP."""

    @app.before_request
    def make_nonce() -> None:
        g.nonce = secrets.token_urlsafe(16)

    @app.after_request
    def strict_csp(response: Response) -> Response:
        response.headers["Content-Security-Policy"] = CSP.format(nonce=g.nonce)
        return response

    def page(title: str) -> str:
        fr = request.accept_languages.best_match(["en", "fr"]) == "fr"
        return render_template_string(
            PAGE,
            ck_lang="fr" if fr else "en",
            page_title=title,
            skip="Aller au contenu" if fr else "Skip to content",
            more="Lire la suite" if fr else "Read more",
            embed_title="Vidéo" if fr else "Video",
            marketing_js=MARKETING_JS,
        )

    app.add_url_rule("/t/page", "test_page", lambda: page("Test page"))
    app.add_url_rule("/t/other", "other_page", lambda: page("Other page"))

    @app.get("/t/stat.js")
    def stat_js() -> Response:
        return Response(STAT_JS, mimetype="text/javascript")

    @app.get("/t/site.css")
    def site_css() -> Response:
        return Response(SITE_CSS, mimetype="text/css")

    @app.get("/t/embed")
    def embed() -> str:
        return EMBED

    @app.get("/t/pixel.gif")
    def pixel() -> Response:
        return Response(PIXEL, mimetype="image/gif")

    @app.get("/favicon.ico")
    def favicon() -> Response:
        return Response(status=204)

    @app.get("/t/set-stat")
    def set_stat() -> Response:
        """A server-set HttpOnly statistics cookie (the guard drops it unless granted)."""
        response = Response("ok", mimetype="text/plain")
        response.set_cookie("_stat_srv", "1", httponly=True, path="/")
        return response


@dataclass
class Site:
    app: Flask
    url: str

    @property
    def page_url(self) -> str:
        return self.url + "/t/page"


class LiveServer:
    """A WSGI app on a real HTTP server (127.0.0.1, a free port) in a thread."""

    def __init__(self, app: Flask) -> None:
        self.server = make_server("127.0.0.1", 0, app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} not found: run scripts/bootstrap.sh (make test)")
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


SiteFactory = Callable[..., Site]


@pytest.fixture
def make_site(make_app: Any, tmp_path: Path) -> Iterator[SiteFactory]:
    """Build and serve a test site: keyword arguments are config keys, ``ck`` options go
    to ``ConsentKit``. The database is SQLite in ``tmp_path`` unless one is given."""
    servers: list[LiveServer] = []

    def factory(ck: dict[str, Any] | None = None, **config: Any) -> Site:
        config.setdefault("CONSENTKIT_DATABASE_URI", f"sqlite:///{tmp_path}/browser.sqlite3")
        options = {"categories": site_categories(), "csp_nonce": lambda: g.nonce, **(ck or {})}
        app = make_app(ck=options, **config)
        add_test_routes(app)
        server = LiveServer(app).__enter__()
        servers.append(server)
        return Site(app, server.url)

    yield factory
    for server in servers:
        server.__exit__(None, None, None)


@pytest.fixture
def site(make_site: SiteFactory) -> Site:
    return make_site(
        CONSENTKIT_CONTROLLER="Test Org",
        CONSENTKIT_POLICY_URL="/t/other",
    )


@dataclass
class Watched:
    """A page with what went wrong in it: CSP violations, console errors, page errors."""

    page: Any
    violations: list[dict[str, str]]
    errors: list[str]

    def csp_violations(self) -> list[dict[str, str]]:
        return [*self.violations, *self.page.evaluate("window.__cspViolations || []")]


# Collected in every page (an init script runs before the page's own scripts, and is not
# subject to the page's CSP).
_WATCH_CSP = """
window.__cspViolations = [];
document.addEventListener('securitypolicyviolation', function (e) {
  window.__cspViolations.push({directive: e.violatedDirective, blocked: e.blockedURI,
                               sample: e.sample});
});
"""


@pytest.fixture
def new_page(browser: Any) -> Iterator[Callable[..., Any]]:
    """A fresh browser context and page per call (``locale="fr-FR"``,
    ``java_script_enabled=False``, a ``viewport``…); closed after the test. The page has
    ``.watch`` with the CSP violations and console errors seen so far."""
    contexts: list[Any] = []

    def factory(**options: Any) -> Any:
        options.setdefault("locale", "en-GB")
        context = browser.new_context(**options)
        context.set_default_timeout(5000)
        contexts.append(context)
        page = context.new_page()
        errors: list[str] = []
        page.on(
            "console",
            lambda m: errors.append(m.text) if m.type == "error" else None,
        )
        page.on("pageerror", lambda exc: errors.append(f"pageerror: {exc}"))
        if options.get("java_script_enabled", True):
            page.add_init_script(_WATCH_CSP)
        page.watch = Watched(page, [], errors)
        return page

    yield factory
    for context in contexts:
        context.close()


def cookie_names(page: Any) -> set[str]:
    """Every cookie the browser holds (HttpOnly included), by name."""
    return {c["name"] for c in page.context.cookies()}


def run_axe(page: Any) -> list[dict[str, Any]]:
    """axe-core's violations for the page as it is now (WCAG 2.0/2.1 A and AA rules and
    axe's best practices). The script is evaluated through the DevTools protocol, so the
    page's CSP does not block it."""
    if not AXE.exists():
        pytest.fail(f"{AXE} missing: run scripts/bootstrap.sh (npm ci --prefix tests/browser)")
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.evaluate(AXE.read_text(encoding="utf-8"))
    result = page.evaluate(
        """() => axe.run(document, {
              runOnly: {type: 'tag',
                        values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'best-practice']},
              resultTypes: ['violations']})
           .then(r => r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,
                 nodes: v.nodes.map(n => n.target.join(' ') + ': ' + n.failureSummary)})))"""
    )
    return list(result)
