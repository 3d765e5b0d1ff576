"""Languages: complete catalogs, the right locale, never a mixed-language banner."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po
from flask import Flask, render_template_string

from consentkit import ConsentKit, i18n

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src" / "consentkit"
LOCALES = ("en", "fr")


def catalog(locale):
    with (SRC / "translations" / locale / "LC_MESSAGES" / "consentkit.po").open("rb") as fp:
        return read_po(fp, locale=locale)


def extracted_ids():
    method_map = [("**.py", "python"), ("templates/**.html", "jinja2")]
    keywords = {"_": None, "gettext": None, "N_": None}
    return {
        message
        for _file, _line, message, _comments, _ctx in extract_from_dir(
            str(SRC), method_map=method_map, keywords=keywords
        )
    }


@pytest.mark.parametrize("locale", LOCALES)
def test_catalog_complete_and_not_fuzzy(locale):
    cat = catalog(locale)
    problems = []
    for message in cat:
        if not message.id:
            continue
        if not message.string:
            problems.append(f"untranslated: {message.id!r}")
        if message.fuzzy:
            problems.append(f"fuzzy: {message.id!r}")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("locale", LOCALES)
def test_every_message_in_code_is_in_the_catalog(locale):
    ids = {m.id for m in catalog(locale) if m.id}
    missing = sorted(str(i) for i in extracted_ids() - ids)
    assert not missing, f"add to the {locale} catalog (make catalogs): {missing}"


@pytest.mark.parametrize("locale", LOCALES)
def test_placeholders_survive_translation(locale):
    for message in catalog(locale):
        if message.id and message.string:
            assert set(re.findall(r"%\(\w+\)s", str(message.id))) == set(
                re.findall(r"%\(\w+\)s", str(message.string))
            ), message.id


def french_english_pairs():
    fr = {m.id: m.string for m in catalog("fr") if m.id}
    return fr


# Words that are the same in both languages.
_SAME_IN_BOTH = {"Marketing", "Cookie", "Date (UTC)"}


def test_french_notice_has_no_english_sentence(make_app):
    app = make_app(CONSENTKIT_CONTROLLER="Exemple SAS", CONSENTKIT_POLICY_URL="/cookies")
    st = app.extensions["consentkit"]
    with app.app_context():
        fr, en = st.notice("fr").texts, st.notice("en").texts

    def strings(value):
        if isinstance(value, dict):
            for k, v in value.items():
                if k not in ("name", "url", "locale", "policy_version", "format", "required"):
                    yield from strings(v)
        elif isinstance(value, list):
            for v in value:
                yield from strings(v)
        elif isinstance(value, str):
            yield value

    english = set(strings(en)) - _SAME_IN_BOTH
    leaked = [s for s in strings(fr) if s in english]
    assert not leaked, leaked
    assert fr["title"] == "Gérer le consentement aux cookies"
    assert fr["always_active"] == "Toujours activé"
    assert fr["manage"] == "Gérer mes cookies"
    assert fr["gpc_honoured"] == "Signal d’opposition (GPC) respecté"


def test_french_pages_have_no_english_text(make_app):
    app = make_app()
    client = app.test_client()
    en_strings = {
        str(m.id) for m in catalog("en") if m.id and "%(" not in str(m.id)
    } - _SAME_IN_BOTH
    for path in ("/", "/consent", "/consent/receipt", "/consent/panel?locale=fr"):
        html = client.get(path, headers={"Accept-Language": "fr"}).get_data(as_text=True)
        leaked = [s for s in en_strings if s in html]
        assert not leaked, (path, leaked)


@pytest.mark.parametrize("anonymous", [False, True])
def test_statistics_has_exactly_one_wording(make_app, anonymous):
    app = make_app(CONSENTKIT_STATISTICS_ANONYMOUS=anonymous)
    identifying = "may identify your browser"
    exempt = "anonymous visit counts"
    html = app.test_client().get("/consent").get_data(as_text=True)
    assert (identifying in html) is not anonymous
    assert (exempt in html) is anonymous
    fr = app.test_client().get("/consent", headers={"Accept-Language": "fr"}).get_data(as_text=True)
    assert ("peuvent identifier" in fr) is not anonymous
    assert ("anonymes" in fr) is anonymous


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("fr-FR,fr;q=0.9,en;q=0.8", "fr"),
        ("fr-CA", "fr"),
        ("de-DE,de;q=0.9,fr;q=0.5", "fr"),
        ("de, en;q=0.1", "en"),
        ("de", "en"),
        ("", "en"),
        ("*", "en"),
        ("zz-ZZ-x-garbage;;;q=abc", "en"),
        ("en-GB;q=0.2, fr;q=0.9", "fr"),
    ],
)
def test_accept_language_negotiation(make_app, header, expected):
    client = make_app().test_client()
    client.post("/consent", json={"action": "reject_all"}, headers={"Accept-Language": header})
    html = client.get("/consent", headers={"Accept-Language": header}).get_data(as_text=True)
    assert f'<html lang="{expected}">' in html


def test_default_locale_is_the_fallback(make_app):
    client = make_app(CONSENTKIT_DEFAULT_LOCALE="fr").test_client()
    assert '<html lang="fr">' in client.get("/consent").get_data(as_text=True)


def test_host_locale_selector_wins(make_app):
    app = make_app(ck={"locale_selector": lambda: "fr_FR"})
    html = (
        app.test_client().get("/consent", headers={"Accept-Language": "en"}).get_data(as_text=True)
    )
    assert "Gérer le consentement aux cookies" in html


def test_flask_babel_selector_is_used(tmp_path):
    from flask_babel import Babel

    app = Flask("babelapp", instance_path=str(tmp_path))
    app.config.update(SECRET_KEY="k" * 32, CONSENTKIT_COOKIE_SECURE=False)
    Babel(app, locale_selector=lambda: "fr")
    ConsentKit(app)

    @app.get("/")
    def index():
        return render_template_string(
            '<p id="host">{{ _("Reject all") }}</p>{{ consentkit_banner() }}'
        )

    html = app.test_client().get("/", headers={"Accept-Language": "en"}).get_data(as_text=True)
    assert "Tout refuser" in html
    # The host's `_` still uses the host's own (here empty) catalog, not consentkit's.
    assert '<p id="host">Reject all</p>' in html


def test_recorded_locale_is_the_rendered_one(make_app):
    from conftest import log_rows

    app = make_app(ck={"locale_selector": lambda: "fr"})
    client = app.test_client()
    html = client.get("/").get_data(as_text=True)
    assert 'name="locale" value="fr"' in html
    client.post("/consent", data={"action": "reject_all", "locale": "fr"})
    row = log_rows(app)[0]
    assert row["locale"] == "fr"
    texts = json.loads(app.extensions["consentkit"].store.notice(row["notice_hash"]).texts)
    assert texts["buttons"]["reject_all"] in html


def test_negotiate_pure():
    assert i18n.negotiate(["fr-BE"], ("en", "fr")) == "fr"
    assert i18n.negotiate(["x" * 100, "en"], ("en", "fr")) == "en"
    assert i18n.match_locale(None, ("en",)) is None
    assert i18n.match_locale("!!", ("en",)) is None


def test_available_locales():
    assert set(i18n.available_locales()) >= {"en", "fr"}
