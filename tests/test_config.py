"""Configuration is validated at start, with errors that name the key."""

from __future__ import annotations

from datetime import timedelta

import pytest
from flask import Flask

from consentkit import Category, ConfigError, ConsentKit, Cookie


def build(tmp_path, ck=None, **config):
    app = Flask("cfg", instance_path=str(tmp_path))
    app.config.update(SECRET_KEY="k" * 32)
    app.config.update(config)
    ConsentKit(app, **(ck or {}))
    return app


@pytest.mark.parametrize(
    ("config", "key"),
    [
        ({"CONSENTKIT_COOKIE_MAX_AGE": timedelta(days=396)}, "CONSENTKIT_COOKIE_MAX_AGE"),
        ({"CONSENTKIT_COOKIE_MAX_AGE": 396 * 86400}, "CONSENTKIT_COOKIE_MAX_AGE"),
        ({"CONSENTKIT_COOKIE_MAX_AGE": 0}, "CONSENTKIT_COOKIE_MAX_AGE"),
        ({"CONSENTKIT_COOKIE_MAX_AGE": "183d"}, "CONSENTKIT_COOKIE_MAX_AGE"),
        ({"CONSENTKIT_COOKIE_MAX_AGE": True}, "CONSENTKIT_COOKIE_MAX_AGE"),
        ({"CONSENTKIT_GPC": "lenient"}, "CONSENTKIT_GPC"),
        ({"CONSENTKIT_LOCALES": ("en", "de")}, "CONSENTKIT_LOCALES"),
        ({"CONSENTKIT_LOCALES": "en"}, "CONSENTKIT_LOCALES"),
        ({"CONSENTKIT_LOCALES": ()}, "CONSENTKIT_LOCALES"),
        ({"CONSENTKIT_DEFAULT_LOCALE": "de"}, "CONSENTKIT_DEFAULT_LOCALE"),
        ({"CONSENTKIT_COOKIE_NAME": "eu consent"}, "CONSENTKIT_COOKIE_NAME"),
        ({"CONSENTKIT_COOKIE_NAME": ""}, "CONSENTKIT_COOKIE_NAME"),
        ({"CONSENTKIT_COOKIE_SAMESITE": "lax"}, "CONSENTKIT_COOKIE_SAMESITE"),
        (
            {"CONSENTKIT_COOKIE_SAMESITE": "None", "CONSENTKIT_COOKIE_SECURE": False},
            "CONSENTKIT_COOKIE_SAMESITE",
        ),
        ({"CONSENTKIT_COOKIE_SECURE": "yes"}, "CONSENTKIT_COOKIE_SECURE"),
        ({"CONSENTKIT_COOKIE_PATH": "consent"}, "CONSENTKIT_COOKIE_PATH"),
        ({"CONSENTKIT_COOKIE_DOMAIN": ""}, "CONSENTKIT_COOKIE_DOMAIN"),
        ({"CONSENTKIT_POLICY_VERSION": ""}, "CONSENTKIT_POLICY_VERSION"),
        ({"CONSENTKIT_POLICY_VERSION": "v 2"}, "CONSENTKIT_POLICY_VERSION"),
        ({"CONSENTKIT_POLICY_VERSION": "x" * 33}, "CONSENTKIT_POLICY_VERSION"),
        ({"CONSENTKIT_URL_PREFIX": "consent"}, "CONSENTKIT_URL_PREFIX"),
        ({"CONSENTKIT_URL_PREFIX": "/consent/"}, "CONSENTKIT_URL_PREFIX"),
        ({"CONSENTKIT_SITE": "my site"}, "CONSENTKIT_SITE"),
        ({"CONSENTKIT_SITE": "=cmd()"}, "CONSENTKIT_SITE"),
        ({"CONSENTKIT_STATISTICS_ANONYMOUS": 1}, "CONSENTKIT_STATISTICS_ANONYMOUS"),
        ({"CONSENTKIT_POLICY_URL": "javascript:alert(1)"}, "CONSENTKIT_POLICY_URL"),
        ({"CONSENTKIT_CONTROLLER": ""}, "CONSENTKIT_CONTROLLER"),
        ({"CONSENTKIT_LOG_RETENTION": -1}, "CONSENTKIT_LOG_RETENTION"),
        ({"CONSENTKIT_DATABASE_URI": "not a url"}, "CONSENTKIT_DATABASE_URI"),
        ({"CONSENTKIT_DATABASE_URI": 5}, "CONSENTKIT_DATABASE_URI"),
        ({"CONSENTKIT_SUBJECT_KEY": ""}, "CONSENTKIT_SUBJECT_KEY"),
        ({"CONSENTKIT_SUBJECT_KEY_FALLBACKS": "old"}, "CONSENTKIT_SUBJECT_KEY_FALLBACKS"),
        ({"CONSENTKIT_MAX_BODY": 10**9}, "CONSENTKIT_MAX_BODY"),
        ({"CONSENTKIT_COOKIE_MAXAGE": 10}, "CONSENTKIT_COOKIE_MAXAGE"),
        ({"SECRET_KEY_FALLBACKS": "old"}, "SECRET_KEY_FALLBACKS"),
    ],
)
def test_invalid_values_name_the_key(tmp_path, config, key):
    with pytest.raises(ConfigError) as info:
        build(tmp_path, **config)
    assert info.value.key == key
    assert str(info.value).startswith(key + ":")


def test_unknown_key_suggests_the_right_one(tmp_path):
    with pytest.raises(ConfigError, match="did you mean CONSENTKIT_COOKIE_MAX_AGE"):
        build(tmp_path, CONSENTKIT_COOKIE_MAXAGE=10)


@pytest.mark.parametrize("secret", [None, ""])
def test_missing_secret_key(tmp_path, secret):
    app = Flask("cfg", instance_path=str(tmp_path))
    app.config["SECRET_KEY"] = secret
    with pytest.raises(ConfigError, match="SECRET_KEY: is not set"):
        ConsentKit(app)


def test_defaults_are_set_with_setdefault(tmp_path):
    app = build(tmp_path, CONSENTKIT_SITE="shop")
    assert app.config["CONSENTKIT_SITE"] == "shop"
    assert app.config["CONSENTKIT_COOKIE_NAME"] == "eu-consent"
    assert app.config["CONSENTKIT_COOKIE_MAX_AGE"] == timedelta(days=183)
    settings = app.extensions["consentkit"].settings
    assert settings.cookie_max_age == 183 * 86400
    assert settings.database_uri == f"sqlite:///{tmp_path}/consentkit.sqlite3"


def test_max_age_accepts_seconds_and_timedelta(tmp_path):
    assert (
        build(tmp_path, CONSENTKIT_COOKIE_MAX_AGE=3600)
        .extensions["consentkit"]
        .settings.cookie_max_age
        == 3600
    )
    assert (
        build(tmp_path, CONSENTKIT_COOKIE_MAX_AGE=timedelta(days=395))
        .extensions["consentkit"]
        .settings.cookie_max_age
        == 395 * 86400
    )


def test_constructor_options_beat_config(tmp_path):
    app = build(tmp_path, ck={"policy_version": "7"}, CONSENTKIT_POLICY_VERSION="3")
    assert app.extensions["consentkit"].settings.policy_version == "7"


def test_unknown_constructor_option(tmp_path):
    with pytest.raises(ConfigError, match="CONSENTKIT_COLOUR"):
        ConsentKit(colour="blue")


def test_second_init_app_raises(tmp_path):
    app = build(tmp_path)
    with pytest.raises(RuntimeError, match="already initialised"):
        ConsentKit(app)


def test_factory_pattern(tmp_path):
    ext = ConsentKit()
    one = Flask("one", instance_path=str(tmp_path / "a"))
    two = Flask("two", instance_path=str(tmp_path / "b"))
    for app in (one, two):
        app.config["SECRET_KEY"] = "s" * 32
        ext.init_app(app)
    assert one.extensions["consentkit"] is not two.extensions["consentkit"]
    assert not hasattr(ext, "app")


def test_integer_policy_version_is_accepted(tmp_path):
    assert (
        build(tmp_path, CONSENTKIT_POLICY_VERSION=2)
        .extensions["consentkit"]
        .settings.policy_version
        == "2"
    )


def test_cookie_texts_must_cover_every_locale(tmp_path):
    cookie = Cookie("_ga", purpose={"en": "Analytics"}, lifetime="13 months")
    with pytest.raises(ConfigError, match="no purpose in 'fr'"):
        build(tmp_path, ck={"categories": [Category("statistics", cookies=(cookie,))]})


@pytest.mark.parametrize(
    ("factory", "message"),
    [
        (lambda: Category("tracking"), "consentkit knows"),
        (lambda: Category("statistics", texts={"fr": {"titre": "x"}}), "unknown text"),
        (lambda: Cookie("bad name"), "cookie-name characters"),
        (lambda: Cookie("_ga", party="fourth"), "party"),  # type: ignore[arg-type]
        (lambda: Cookie("_ga", path="x"), "path"),
    ],
)
def test_declaration_errors(factory, message):
    with pytest.raises(ValueError, match=message):
        factory()


def test_duplicate_category_declaration(tmp_path):
    with pytest.raises(ValueError, match="declared twice"):
        build(tmp_path, ck={"categories": [Category("statistics"), Category("statistics")]})
