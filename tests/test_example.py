"""The newsroom example: every category used for real, in French and English, under a
strict Content-Security-Policy."""

from __future__ import annotations

import importlib.util
import re
import sys
from html import unescape
from pathlib import Path

import pytest
from flask import Flask

from consentkit.guard import parse_set_cookie
from test_csp import csp_problems
from test_gating import Elements

APP_FILE = Path(__file__).resolve().parent.parent / "examples" / "newsroom" / "app.py"


def load_example():
    spec = importlib.util.spec_from_file_location("newsroom_example", APP_FILE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # Flask finds the templates through the module
    spec.loader.exec_module(module)
    return module


newsroom = load_example()


@pytest.fixture
def site(tmp_path):
    app = newsroom.create_app({"TESTING": True}, instance_path=str(tmp_path / "instance"))
    yield app
    app.extensions["consentkit"].store.dispose()


@pytest.fixture
def client(site):
    return site.test_client()


def nonce_of(response) -> str:
    found = re.search(r"'nonce-([^']+)'", response.headers["Content-Security-Policy"])
    assert found
    return found.group(1)


def cookies_set(response) -> dict[str, str]:
    return {h.split("=", 1)[0]: h for h in response.headers.getlist("Set-Cookie")}


def deletes(header: str) -> bool:
    parsed = parse_set_cookie(header)
    return parsed is not None and parsed.deletes


def counted(client) -> int:
    """The page views the statistics endpoint counted, as the cookie policy shows them."""
    found = re.search(r'id="nr-counted">(\d+)<', client.get("/en/cookies").get_data(as_text=True))
    assert found is not None
    return int(found.group(1))


def test_root_picks_the_visitors_language(client):
    assert client.get("/", headers={"Accept-Language": "fr-FR,fr"}).headers["Location"] == "/fr/"
    assert client.get("/", headers={"Accept-Language": "de"}).headers["Location"] == "/en/"


@pytest.mark.parametrize(
    ("lang", "banner_title", "headline"),
    [
        ("fr", "Gérer le consentement aux cookies", "Le retour des trains de nuit"),
        ("en", "Manage cookie consent", "Night trains are back"),
    ],
)
def test_home_in_both_languages(client, lang, banner_title, headline):
    response = client.get(f"/{lang}/")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert f'<html lang="{lang}">' in html
    assert banner_title in unescape(html)  # consentkit's markup is ASCII (char refs)
    assert headline in html
    assert csp_problems(html, nonce_of(response)) == []
    stats = Elements(html).tags("script", **{"data-consentkit": "statistics"})
    assert len(stats) == 1
    assert stats[0]["attrs"]["type"] == "text/plain"
    assert stats[0]["attrs"]["data-src"] == "/static/stats.js"
    assert not Elements(html).tags("script", src="/static/stats.js")


def test_unknown_language_or_article_is_404(client):
    assert client.get("/de/").status_code == 404
    assert client.get("/en/article/nope").status_code == 404
    assert client.get("/de/cookies").status_code == 404


def test_statistics_script_runs_and_counts_only_with_consent(client):
    assert client.post("/stats/hit").status_code == 204  # refused visitor: not counted
    assert counted(client) == 0

    client.post("/consent", data={"action": "custom", "granted": "statistics"})
    response = client.get("/en/")
    script = Elements(response.get_data(as_text=True)).tags("script", src="/static/stats.js")
    assert len(script) == 1
    assert "type" not in script[0]["attrs"]
    assert script[0]["attrs"]["data-endpoint"] == "/stats/hit"
    assert script[0]["attrs"]["nonce"] == nonce_of(response)
    client.post("/stats/hit")
    client.post("/stats/hit")
    assert counted(client) == 2
    js = client.get("/static/stats.js")
    assert b"nr_visits=" in js.data
    js.close()


def test_video_is_a_placeholder_until_marketing_is_allowed(client):
    page = client.get("/fr/article/night-trains")
    doc = Elements(page.get_data(as_text=True))
    iframe = doc.tags("iframe")[0]
    assert "src" not in iframe["attrs"]
    assert iframe["attrs"]["data-src"] == "/embed/video?v=night-trains&lang=fr"
    assert "Autoriser les cookies « Marketing »" in page.get_data(as_text=True)
    # The player itself may not set its cookie for this visitor.
    embed = client.get("/embed/video?v=night-trains&lang=fr")
    assert embed.status_code == 200
    assert "video_session" not in cookies_set(embed)

    # The placeholder's own form: contextual consent, no JavaScript needed.
    form = doc.tags("form", **{"data-consentkit-allow": "marketing"})[0]
    start = doc.found.index(form)
    data: dict[str, list[str]] = {}
    for element in doc.found[start + 1 :]:
        if element["tag"] == "button":
            break
        if element["tag"] == "input":
            data.setdefault(element["attrs"]["name"], []).append(element["attrs"]["value"])
    response = client.post(form["attrs"]["action"], data=data)
    assert response.status_code == 303
    assert response.headers["Location"] == "/fr/article/night-trains"

    iframe = Elements(client.get("/fr/article/night-trains").get_data(as_text=True)).tags("iframe")[
        0
    ]
    assert iframe["attrs"]["src"] == "/embed/video?v=night-trains&lang=fr"
    embed = client.get(iframe["attrs"]["src"])
    assert "video_session" in cookies_set(embed)
    assert "Lecteur vidéo de démonstration" in embed.get_data(as_text=True)


def test_theme_is_remembered_only_with_preferences(client):
    response = client.post("/theme", data={"theme": "dark", "next": "/en/"})
    assert response.status_code == 303
    assert response.headers["Location"] == "/en/"
    assert "theme" not in cookies_set(response)  # dropped by consentkit's guard
    html = client.get("/en/").get_data(as_text=True)
    assert '<body class="nr-theme-light">' in html
    assert "remembered only if you allow Preferences cookies" in html

    client.post("/consent", data={"action": "custom", "granted": "preferences"})
    response = client.post("/theme", data={"theme": "dark", "next": "/en/"})
    assert "HttpOnly" in cookies_set(response)["theme"]
    html = client.get("/en/").get_data(as_text=True)
    assert '<body class="nr-theme-dark">' in html
    assert "remembered only if" not in html


@pytest.mark.parametrize(
    ("form", "status", "location"),
    [
        ({"theme": "neon"}, 400, None),
        ({}, 400, None),
        ({"theme": "light", "next": "//evil.example/"}, 303, "/"),
        ({"theme": "light", "next": "https://evil.example/"}, 303, "/"),
    ],
)
def test_theme_form_rejects_bad_input(client, form, status, location):
    response = client.post("/theme", data=form)
    assert response.status_code == status
    if location:
        assert response.headers["Location"] == location


def test_withdrawal_deletes_every_optional_cookie(client):
    client.post("/consent", data={"action": "accept_all"})
    client.post("/theme", data={"theme": "dark"})
    client.get("/embed/video?v=x")
    client.set_cookie("nr_visits", "3")  # set by stats.js in a browser
    assert client.get_cookie("theme") is not None
    assert client.get_cookie("video_session") is not None
    response = client.post("/consent", data={"action": "reject_all", "next": "/fr/"})
    headers = cookies_set(response)
    for name in ("theme", "video_session", "nr_visits"):
        assert deletes(headers[name]), name
        assert client.get_cookie(name) is None
    assert "HttpOnly" in headers["theme"]
    html = client.get("/fr/").get_data(as_text=True)
    assert '<body class="nr-theme-light">' in html


@pytest.mark.parametrize(
    ("lang", "purpose", "lifetime"),
    [
        ("fr", "Retient le thème de couleurs que vous avez choisi.", "13 mois"),
        ("en", "Remembers the colour theme you picked.", "13 months"),
    ],
)
def test_cookie_policy_lists_the_declared_cookies(client, lang, purpose, lifetime):
    response = client.get(f"/{lang}/cookies")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    for name in ("theme", "nr_visits", "video_*"):
        assert f"<code>{name}</code>" in html
    assert purpose in html
    assert lifetime in html
    assert "VideoHost (demo)" in html
    assert csp_problems(html, nonce_of(response)) == []


def test_policy_url_of_the_banner_leads_to_the_right_language(client):
    html = client.get("/fr/").get_data(as_text=True)
    assert '<a href="/cookies">' in html
    fr = client.get("/cookies", headers={"Referer": "http://localhost/fr/"})
    assert fr.headers["Location"] == "/fr/cookies"
    en = client.get("/cookies", headers={"Accept-Language": "en"})
    assert en.headers["Location"] == "/en/cookies"


def test_consent_pages_follow_the_page_language(client):
    html = client.get("/consent?next=/fr/article/river").get_data(as_text=True)
    assert "Retient le thème de couleurs que vous avez choisi." in html
    assert "Remembers the colour theme" not in html


def test_every_page_passes_a_strict_csp(client):
    client.post("/consent", data={"action": "accept_all"})
    for path in (
        "/en/",
        "/fr/article/night-trains",
        "/en/cookies",
        "/embed/video?v=x",
        "/consent?next=/en/",
    ):
        response = client.get(path)
        assert response.status_code == 200, path
        assert "script-src 'self' 'nonce-" in response.headers["Content-Security-Policy"]
        assert csp_problems(response.get_data(as_text=True), nonce_of(response)) == [], path


def test_config_and_instance_path_are_honoured(tmp_path):
    app = newsroom.create_app(
        {"SECRET_KEY": "given", "CONSENTKIT_SITE": "newsroom-test"},
        instance_path=str(tmp_path / "inst"),
    )
    try:
        assert app.secret_key == "given"
        assert app.instance_path == str(tmp_path / "inst")
        settings = app.extensions["consentkit"].settings
        assert settings.site == "newsroom-test"
        assert settings.database_uri == f"sqlite:///{tmp_path / 'inst'}/consentkit.sqlite3"
    finally:
        app.extensions["consentkit"].store.dispose()
    other = newsroom.create_app(instance_path=str(tmp_path / "inst2"))
    try:
        # Without a key, one is made once and kept in the instance folder.
        key_file = tmp_path / "inst2" / "secret_key"
        assert other.secret_key == key_file.read_text()
    finally:
        other.extensions["consentkit"].store.dispose()


def test_module_level_app_is_built_on_first_use(monkeypatch):
    built = Flask("sentinel")
    monkeypatch.setattr(newsroom, "create_app", lambda: built)
    monkeypatch.delitem(vars(newsroom), "app", raising=False)
    try:
        assert newsroom.app is built
        assert vars(newsroom)["app"] is built  # cached, not rebuilt
    finally:
        vars(newsroom).pop("app", None)
    with pytest.raises(AttributeError):
        _ = newsroom.no_such_name
