"""A small bilingual news site using consentkit (the README's demo).

Run it with ``make demo`` (or ``flask --app examples/newsroom/app.py run``), then open
http://127.0.0.1:5000/fr/ or http://127.0.0.1:5000/en/.
"""

from __future__ import annotations

import secrets
from pathlib import Path

from flask import Flask, abort, redirect, render_template, request, url_for

from consentkit import Category, ConsentKit, Cookie

ARTICLES = {
    "en": [
        ("Night trains are back", "Three new sleeper lines open across Europe this winter."),
        ("A river cleaned up", "Volunteers removed two tonnes of waste from the riverbanks."),
    ],
    "fr": [
        ("Le retour des trains de nuit", "Trois nouvelles lignes ouvrent en Europe cet hiver."),
        ("Une rivière nettoyée", "Des bénévoles ont retiré deux tonnes de déchets des berges."),
    ],
}
LOCALES = ("en", "fr")


def _locale_from_request() -> str | None:
    """The page's language comes from its URL (/fr/…, /en/…); the consent pages, which
    live outside those URLs, follow the page the visitor came from."""
    lang = (request.view_args or {}).get("lang")
    if lang in LOCALES:
        return str(lang)
    for candidate in (request.args.get("next", ""), request.referrer or ""):
        for loc in LOCALES:
            if f"/{loc}/" in candidate:
                return loc
    return None


def _secret_key(instance: Path) -> str:
    """A per-checkout secret kept in the instance folder, so the demo needs no set-up."""
    instance.mkdir(parents=True, exist_ok=True)
    key_file = instance / "secret_key"
    if not key_file.exists():
        key_file.write_text(secrets.token_urlsafe(48))
        key_file.chmod(0o600)
    return key_file.read_text().strip()


def create_app(config: dict[str, object] | None = None) -> Flask:
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY=_secret_key(Path(app.instance_path)),
        # The demo is served over plain HTTP on localhost; production keeps Secure cookies.
        CONSENTKIT_COOKIE_SECURE=False,
        CONSENTKIT_CONTROLLER="Newsroom demo",
        CONSENTKIT_POLICY_URL="/en/cookies",
        CONSENTKIT_SITE="newsroom-demo",
    )
    app.config.update(config or {})
    ConsentKit(
        app,
        locale_selector=_locale_from_request,
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
                        "nr_visits",
                        provider="Newsroom",
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
                            "en": "Lets the embedded video player follow you.",
                            "fr": "Permet au lecteur vidéo intégré de vous suivre.",
                        },
                        lifetime={"en": "1 year", "fr": "1 an"},
                        party="third",
                    ),
                ),
            ),
        ],
    )

    @app.get("/")
    def root() -> object:
        best = request.accept_languages.best_match(LOCALES) or "en"
        return redirect(url_for("home", lang=best))

    @app.get("/<lang>/")
    def home(lang: str) -> str:
        if lang not in LOCALES:
            abort(404)
        return render_template("home.html", lang=lang, articles=ARTICLES[lang])

    @app.get("/<lang>/cookies")
    def cookie_policy(lang: str) -> str:
        if lang not in LOCALES:
            abort(404)
        return render_template("cookies.html", lang=lang)

    return app


app = create_app()
