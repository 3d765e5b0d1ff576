"""A small bilingual news site using consentkit (the README's demo).

Run it with ``make demo`` (or ``flask --app examples/newsroom/app.py run``), then open
http://127.0.0.1:5000/fr/ or http://127.0.0.1:5000/en/.

Each consent category is used for real:

- Statistics: ``static/stats.js``, a first-party audience script, gated with
  ``consentkit_script``; it counts visits in the ``nr_visits`` cookie and reports page views
  to ``/stats/hit``, which also checks the consent server-side.
- Marketing: a video embed (``/embed/video``, standing in for a video host) shown through
  ``consentkit_iframe`` with its placeholder; the player sets ``video_session``.
- Preferences: the ``theme`` cookie, set by the server when the visitor picks a theme;
  consentkit's cookie guard drops it unless Preferences is granted.

Pages run under a strict Content-Security-Policy with a per-request nonce, which
consentkit puts on the tags it renders.
"""

from __future__ import annotations

import secrets
import threading
from pathlib import Path
from typing import Any

from flask import (
    Flask,
    Response,
    abort,
    g,
    redirect,
    render_template,
    request,
    url_for,
)

from consentkit import Category, ConsentKit, Cookie, current_consent

LOCALES = ("en", "fr")
THEMES = ("light", "dark")
#: Declared as "6 months" below: the lifetime in the policy is the one set here.
THEME_MAX_AGE = 183 * 24 * 3600
VIDEO_MAX_AGE = 365 * 24 * 3600

ARTICLES: dict[str, list[dict[str, Any]]] = {
    "en": [
        {
            "slug": "night-trains",
            "title": "Night trains are back",
            "summary": "Three new sleeper lines open across Europe this winter.",
            "body": [
                "Operators from four countries are reviving overnight routes that had "
                "disappeared a decade ago.",
                "Our reporter took the first departure; watch the trip below.",
            ],
            "video": True,
        },
        {
            "slug": "river",
            "title": "A river cleaned up",
            "summary": "Volunteers removed two tonnes of waste from the riverbanks.",
            "body": [
                "Two hundred people spent the weekend on the banks with gloves and bags.",
                "The town will now test the water every month.",
            ],
            "video": False,
        },
    ],
    "fr": [
        {
            "slug": "night-trains",
            "title": "Le retour des trains de nuit",
            "summary": "Trois nouvelles lignes ouvrent en Europe cet hiver.",
            "body": [
                "Des opérateurs de quatre pays relancent des liaisons de nuit disparues "
                "depuis une dizaine d’années.",
                "Notre reporter a pris le premier départ : regardez le voyage ci-dessous.",
            ],
            "video": True,
        },
        {
            "slug": "river",
            "title": "Une rivière nettoyée",
            "summary": "Des bénévoles ont retiré deux tonnes de déchets des berges.",
            "body": [
                "Deux cents personnes ont passé le week-end sur les berges, gants et sacs en main.",
                "La commune analysera désormais l’eau chaque mois.",
            ],
            "video": False,
        },
    ],
}

#: The site's own texts (consentkit's come from its own catalogs).
TEXTS: dict[str, dict[str, str]] = {
    "en": {
        "tagline": "Good news, told slowly",
        "read": "Read the article",
        "back": "Back to the news",
        "theme": "Theme",
        "light": "Light",
        "dark": "Dark",
        "theme_note": "Your theme is remembered only if you allow Preferences cookies.",
        "visits": "Visits counted by our statistics script:",
        "visits_off": "Our statistics script runs only if you allow Statistics cookies.",
        "video_title": "Video: on board the first night train",
        "policy": "Cookie policy",
        "policy_intro": "These are all the cookies this site uses, by category. "
        "Functional cookies are always on; the others only with your consent.",
        "category": "Category",
        "set_by": "Set by",
        "first": "this site",
        "third": "a third party",
        "no_cookie": "No cookie in this category.",
        "manage": "Change my cookie choices",
        "counted": "Page views counted by our audience measurement since the server started:",
        "player": "Demo video player",
        "player_note": "A real video host would set its tracking cookies here.",
    },
    "fr": {
        "tagline": "De bonnes nouvelles, racontées sans hâte",
        "read": "Lire l’article",
        "back": "Retour aux actualités",
        "theme": "Thème",
        "light": "Clair",
        "dark": "Sombre",
        "theme_note": "Votre thème n’est retenu que si vous autorisez les cookies de préférences.",
        "visits": "Visites comptées par notre script de statistiques :",
        "visits_off": "Notre script de statistiques ne fonctionne que si vous autorisez "
        "les cookies de statistiques.",
        "video_title": "Vidéo : à bord du premier train de nuit",
        "policy": "Politique de cookies",
        "policy_intro": "Voici tous les cookies qu’utilise ce site, par catégorie. "
        "Les cookies fonctionnels sont toujours actifs ; les autres seulement avec votre "
        "consentement.",
        "category": "Catégorie",
        "set_by": "Déposé par",
        "first": "ce site",
        "third": "un tiers",
        "no_cookie": "Aucun cookie dans cette catégorie.",
        "manage": "Modifier mes choix de cookies",
        "counted": "Pages vues comptées par notre mesure d’audience depuis le démarrage "
        "du serveur :",
        "player": "Lecteur vidéo de démonstration",
        "player_note": "Un vrai hébergeur de vidéos déposerait ici ses cookies de suivi.",
    },
}

CATEGORIES = [
    Category(
        "preferences",
        cookies=(
            Cookie(
                "theme",
                provider="Newsroom",
                purpose={
                    "en": "Remembers the colour theme you picked.",
                    "fr": "Retient le thème de couleurs que vous avez choisi.",
                },
                lifetime={"en": "6 months", "fr": "6 mois"},
                http_only=True,
            ),
        ),
    ),
    Category(
        "statistics",
        cookies=(
            Cookie(
                "nr_visits",
                provider="Newsroom",
                purpose={
                    "en": "Counts your visits for our audience measurement.",
                    "fr": "Compte vos visites pour notre mesure d’audience.",
                },
                lifetime={"en": "13 months", "fr": "13 mois"},
            ),
        ),
    ),
    Category(
        "marketing",
        cookies=(
            Cookie(
                "video_*",
                provider="VideoHost (demo)",
                purpose={
                    "en": "Lets the embedded video player recognise you across sites.",
                    "fr": "Permet au lecteur vidéo intégré de vous reconnaître d’un site à "
                    "l’autre.",
                },
                lifetime={"en": "1 year", "fr": "1 an"},
                party="third",
            ),
        ),
    ),
]


def _locale_from_request() -> str | None:
    """The page's language comes from its URL (/fr/…, /en/…, ?lang=); the consent pages,
    which live outside those URLs, follow the page the visitor came from."""
    lang = (request.view_args or {}).get("lang") or request.args.get("lang")
    if lang in LOCALES:
        return str(lang)
    for candidate in (request.args.get("next", ""), request.form.get("next", "")):
        for loc in LOCALES:
            if candidate.startswith(f"/{loc}/"):
                return loc
    referrer = request.referrer or ""
    for loc in LOCALES:
        if f"/{loc}/" in referrer:
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


def _same_site_path(value: str | None, default: str) -> str:
    if value and value.startswith("/") and not value.startswith("//") and "\\" not in value:
        return value
    return default


def _lang_or_404(lang: str) -> str:
    if lang not in LOCALES:
        abort(404)
    return lang


def create_app(config: dict[str, Any] | None = None, *, instance_path: str | None = None) -> Flask:
    """The demo site; ``config`` overrides settings (tests pass a database and
    ``TESTING``), ``instance_path`` moves the secret key and the SQLite log."""
    app = Flask(__name__, instance_path=instance_path)
    app.config.update(
        # The demo is served over plain HTTP on localhost; production keeps Secure cookies.
        CONSENTKIT_COOKIE_SECURE=False,
        CONSENTKIT_CONTROLLER="Newsroom demo",
        CONSENTKIT_POLICY_URL="/cookies",
        CONSENTKIT_SITE="newsroom-demo",
    )
    app.config.update(config or {})
    if not app.config.get("SECRET_KEY"):
        app.config["SECRET_KEY"] = _secret_key(Path(app.instance_path))
    ConsentKit(
        app,
        locale_selector=_locale_from_request,
        csp_nonce=lambda: g.get("csp_nonce"),
        categories=CATEGORIES,
    )
    hits = {"count": 0}
    hits_lock = threading.Lock()

    @app.before_request
    def make_nonce() -> None:
        g.csp_nonce = secrets.token_urlsafe(16)

    @app.after_request
    def strict_csp(response: Response) -> Response:
        nonce = g.get("csp_nonce", "")
        response.headers.setdefault(
            "Content-Security-Policy",
            f"default-src 'self'; script-src 'self' 'nonce-{nonce}'; style-src 'self'; "
            "img-src 'self' data:; frame-src 'self'; connect-src 'self'; "
            "base-uri 'self'; form-action 'self'; frame-ancestors 'self'",
        )
        return response

    @app.context_processor
    def site_context() -> dict[str, Any]:
        lang = _locale_from_request() or "en"
        theme = request.cookies.get("theme")
        return {
            "lang": lang,
            "t": TEXTS[lang],
            "theme": theme if theme in THEMES else "light",
        }

    @app.get("/")
    def root() -> Response:
        best = request.accept_languages.best_match(LOCALES) or "en"
        return redirect(url_for("home", lang=best))

    @app.get("/<lang>/")
    def home(lang: str) -> str:
        return render_template("home.html", articles=ARTICLES[_lang_or_404(lang)])

    @app.get("/<lang>/article/<slug>")
    def article(lang: str, slug: str) -> str:
        for item in ARTICLES[_lang_or_404(lang)]:
            if item["slug"] == slug:
                return render_template("article.html", article=item)
        abort(404)

    @app.get("/cookies")
    def cookie_policy_any() -> Response:
        """CONSENTKIT_POLICY_URL: one URL for both languages, sent on to the right page."""
        lang = _locale_from_request() or request.accept_languages.best_match(LOCALES) or "en"
        return redirect(url_for("cookie_policy", lang=lang))

    @app.get("/<lang>/cookies")
    def cookie_policy(lang: str) -> str:
        notice = ConsentKit.state().notice(_lang_or_404(lang))
        with hits_lock:
            counted = hits["count"]
        return render_template(
            "cookies.html",
            categories=notice.texts["categories"],
            notice_texts=notice.texts,
            counted=counted,
        )

    @app.post("/theme")
    def pick_theme() -> Response:
        theme = request.form.get("theme")
        if theme not in THEMES:
            abort(400, description=f"theme must be one of {', '.join(THEMES)}")
        response = redirect(_same_site_path(request.form.get("next"), "/"), code=303)
        # Set unconditionally: consentkit's guard drops it when Preferences is not granted.
        response.set_cookie("theme", theme, max_age=THEME_MAX_AGE, httponly=True, samesite="Lax")
        return response

    @app.post("/stats/hit")
    def stats_hit() -> tuple[str, int]:
        # The script only runs with consent; the server checks again, as a site should.
        if current_consent.granted("statistics"):
            with hits_lock:
                hits["count"] += 1
        return "", 204

    @app.get("/embed/video")
    def embed_video() -> Response:
        """Stands in for a third-party video player loaded in an iframe."""
        response = Response(render_template("embed_video.html"))
        session_id = request.cookies.get("video_session") or secrets.token_hex(8)
        response.set_cookie("video_session", session_id, max_age=VIDEO_MAX_AGE, samesite="Lax")
        return response

    return app


def __getattr__(name: str) -> Flask:
    # ``app`` for ``flask --app examples/newsroom/app.py run``, built on first use so that
    # importing create_app (the tests do) writes nothing next to this file.
    if name == "app":
        built = create_app()
        globals()["app"] = built
        return built
    raise AttributeError(name)
