"""Render the banner and the preferences panel into docs/*.png (README screenshots).

    .venv/bin/python scripts/screenshots.py [--out docs]

Serves a small sample page with consentkit on 127.0.0.1 (a free port), drives Debian's
Chromium through Playwright, and writes, for French and English, at 1280 px (desktop) and
375 px (phone) wide: ``banner-<lang>-<size>.png`` and ``panel-<lang>-<size>.png``.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import threading
from pathlib import Path

from flask import Flask, render_template_string, request
from werkzeug.serving import make_server

from consentkit import Category, ConsentKit, Cookie

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
    "--hide-scrollbars",
]
SIZES = {"desktop": (1280, 800), "mobile": (375, 812)}
LOCALES = {"en": "en-GB", "fr": "fr-FR"}
#: Keep each picture light enough for a README.
MAX_BYTES = 150_000

ARTICLE = {
    "en": (
        "Night trains are back",
        "Three new sleeper lines open across Europe this winter, linking capitals "
        "overnight. Operators expect the routes to fill quickly as travellers look for "
        "alternatives to short-haul flights.",
    ),
    "fr": (
        "Le retour des trains de nuit",
        "Trois nouvelles lignes de nuit ouvrent en Europe cet hiver et relient les "
        "capitales en une nuit. Les opérateurs s’attendent à ce qu’elles se remplissent "
        "vite, les voyageurs cherchant une autre solution que l’avion.",
    ),
}

PAGE = """<!doctype html>
<html lang="{{ lang }}">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Newsroom</title>
{{ consentkit_head() }}
<link rel="stylesheet" href="/site.css">
</head>
<body>
<header><strong>Newsroom</strong></header>
<main>
<h1>{{ title }}</h1>
{% for _ in range(4) %}<p>{{ text }}</p>{% endfor %}
</main>
<footer>{{ consentkit_banner() }}</footer>
</body>
</html>
"""
SITE_CSS = (
    "body{margin:0;font:1.0625rem/1.6 Georgia,serif;color:#222;background:#fafaf7}"
    "header{padding:1rem;border-bottom:1px solid #ddd;font:700 1.25rem system-ui,sans-serif}"
    "main,footer{max-width:44rem;margin:0 auto;padding:0 1rem}"
)


def build_app(instance: Path) -> Flask:
    app = Flask("screenshots", instance_path=str(instance))
    app.config.update(
        SECRET_KEY="screenshots-only-" + "x" * 24,
        CONSENTKIT_COOKIE_SECURE=False,
        CONSENTKIT_DATABASE_URI=f"sqlite:///{instance}/log.sqlite3",
        CONSENTKIT_CONTROLLER="Newsroom SAS",
        CONSENTKIT_POLICY_URL="/cookies",
    )
    ConsentKit(
        app,
        categories=[
            Category(
                "preferences",
                cookies=(
                    Cookie(
                        "theme",
                        provider="Newsroom",
                        purpose={"en": "Remembers the colour theme.", "fr": "Retient le thème."},
                        lifetime={"en": "6 months", "fr": "6 mois"},
                    ),
                ),
            ),
            Category(
                "statistics",
                cookies=(
                    Cookie(
                        "_pk_id.*",
                        provider="Newsroom (Matomo)",
                        purpose={"en": "Counts visits.", "fr": "Compte les visites."},
                        lifetime={"en": "13 months", "fr": "13 mois"},
                    ),
                ),
            ),
            Category(
                "marketing",
                cookies=(
                    Cookie(
                        "video_*",
                        provider="Video host",
                        purpose={
                            "en": "Lets the video player follow you.",
                            "fr": "Permet au lecteur vidéo de vous suivre.",
                        },
                        lifetime={"en": "1 year", "fr": "1 an"},
                        party="third",
                    ),
                ),
            ),
        ],
    )

    @app.get("/")
    def index() -> str:
        lang = request.accept_languages.best_match(list(LOCALES)) or "en"
        title, text = ARTICLE[lang]
        return render_template_string(PAGE, lang=lang, title=title, text=text)

    @app.get("/site.css")
    def site_css() -> tuple[str, int, dict[str, str]]:
        return SITE_CSS, 200, {"Content-Type": "text/css"}

    return app


def take(out: Path) -> list[tuple[Path, int]]:
    from playwright.sync_api import sync_playwright

    written: list[tuple[Path, int]] = []
    with tempfile.TemporaryDirectory() as tmp:
        app = build_app(Path(tmp))
        server = make_server("127.0.0.1", 0, app, threaded=True)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        url = f"http://127.0.0.1:{server.server_port}/"
        try:
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                for lang, locale in LOCALES.items():
                    for size, (width, height) in SIZES.items():
                        context = browser.new_context(
                            locale=locale,
                            viewport={"width": width, "height": height},
                            reduced_motion="reduce",  # no half-drawn slide-in
                        )
                        page = context.new_page()
                        page.goto(url)
                        page.wait_for_selector("#ck-banner")
                        for name in ("banner", "panel"):
                            if name == "panel":
                                page.click("#ck-banner [data-consentkit-open]")
                                page.wait_for_selector("#ck-panel[open]")
                                page.evaluate("document.activeElement.blur()")
                            path = out / f"{name}-{lang}-{size}.png"
                            page.screenshot(path=str(path))
                            written.append((path, path.stat().st_size))
                        context.close()
                browser.close()
        finally:
            server.shutdown()
            server.server_close()
            app.extensions["consentkit"].store.dispose()
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).parent.parent / "docs")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    too_big = False
    for path, size in take(args.out):
        flag = "" if size <= MAX_BYTES else f"  (over {MAX_BYTES} bytes)"
        too_big = too_big or bool(flag)
        print(f"{path}  {size} bytes{flag}")
    return 1 if too_big else 0


if __name__ == "__main__":
    sys.exit(main())
