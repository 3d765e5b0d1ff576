"""Configuration: every ``CONSENTKIT_*`` key, its default, and the checks run at start.

Config is read once, in ``init_app``, into an immutable :class:`Settings`. A wrong value
raises :class:`ConfigError` naming the key, so a misconfigured site fails at start rather
than on a visitor's request.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from .keys import derive_key

PREFIX = "CONSENTKIT_"

#: Every configuration key with its default. ``DATABASE_URI`` ``None`` means
#: "SQLite in the app's instance folder".
DEFAULTS: dict[str, Any] = {
    "CONSENTKIT_DATABASE_URI": None,
    "CONSENTKIT_POLICY_VERSION": "1",
    "CONSENTKIT_COOKIE_NAME": "eu-consent",
    "CONSENTKIT_COOKIE_MAX_AGE": timedelta(days=183),
    "CONSENTKIT_COOKIE_SECURE": True,
    "CONSENTKIT_COOKIE_SAMESITE": "Lax",
    "CONSENTKIT_COOKIE_DOMAIN": None,
    "CONSENTKIT_COOKIE_PATH": "/",
    "CONSENTKIT_LOCALES": ("en", "fr"),
    "CONSENTKIT_DEFAULT_LOCALE": "en",
    "CONSENTKIT_URL_PREFIX": "/consent",
    "CONSENTKIT_STATISTICS_ANONYMOUS": False,
    "CONSENTKIT_GPC": "strict",
    "CONSENTKIT_SITE": "default",
    "CONSENTKIT_CONTROLLER": None,
    "CONSENTKIT_POLICY_URL": None,
    "CONSENTKIT_LOG_RETENTION": timedelta(days=5 * 365),
    # Extensions of the contract.
    "CONSENTKIT_SUBJECT_KEY": None,
    "CONSENTKIT_SUBJECT_KEY_FALLBACKS": (),
    "CONSENTKIT_MAX_BODY": 4096,
    # Where decisions wait while the database is unreachable: None = "consentkit-spool" in
    # the instance folder; a relative path is taken from the instance folder; False = no
    # spool (an outage then answers 503 and acknowledges nothing).
    "CONSENTKIT_SPOOL_DIR": None,
    "CONSENTKIT_GOOGLE_CONSENT_MODE": False,
    # Tamper evidence: the key that MACs each record (default: derived from SECRET_KEY and
    # its fallbacks) and older keys still accepted by verify after a rotation.
    "CONSENTKIT_LOG_KEY": None,
    "CONSENTKIT_LOG_KEY_FALLBACKS": (),
    # A legal hold (True or a reference such as a case number) suspends erasure and purge.
    "CONSENTKIT_LEGAL_HOLD": None,
    # Statistics: groups with fewer decisions than this are shown as "< k", without rates.
    "CONSENTKIT_STATS_MIN_COUNT": 10,
}

#: CNIL: a choice may be kept at most 13 months.
MAX_COOKIE_AGE = timedelta(days=395)
GPC_MODES = ("strict", "ignore")
SAMESITE_VALUES = ("Lax", "Strict", "None")

_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")  # RFC 6265 cookie-name
_POLICY_VERSION = re.compile(r"^[A-Za-z0-9._-]{1,32}$")
_SITE = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
_LOCALE = re.compile(r"^[a-z]{2,3}(_[A-Z]{2})?$")


class ConfigError(ValueError):
    """A ``CONSENTKIT_*`` value (or ``SECRET_KEY``) is missing or invalid."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key


@dataclass(frozen=True, slots=True)
class Settings:
    """The validated configuration of one app."""

    database_uri: str
    policy_version: str
    cookie_name: str
    cookie_max_age: int  # seconds
    cookie_secure: bool
    cookie_samesite: str
    cookie_domain: str | None
    cookie_path: str
    locales: tuple[str, ...]
    default_locale: str
    url_prefix: str
    statistics_anonymous: bool
    gpc: str
    site: str
    controller: str | None
    policy_url: str | None
    log_retention: timedelta
    secret_keys: tuple[bytes, ...]  # fallbacks first, current key last (itsdangerous order)
    subject_keys: tuple[bytes, ...]  # current first, then fallbacks for look-ups
    max_body: int
    log_keys: tuple[bytes, ...]  # current first, then older keys verify still accepts
    legal_hold: str | None  # None: no hold
    stats_min_count: int
    spool_dir: str | None  # absolute; None: no spool
    google_consent_mode: bool


def option_key(option: str) -> str:
    """``policy_version`` -> ``CONSENTKIT_POLICY_VERSION``."""
    return PREFIX + option.upper()


def _seconds(key: str, value: Any) -> int:
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, int) and not isinstance(value, bool):
        seconds = value
    else:
        raise ConfigError(key, f"expected seconds (int) or a timedelta, got {value!r}")
    if seconds <= 0:
        raise ConfigError(key, f"must be positive, got {value!r}")
    return int(seconds)


def _bool(key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(key, f"expected True or False, got {value!r}")
    return value


def _optional_text(key: str, value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(key, f"expected a non-empty string or None, got {value!r}")
    return value


def _key_bytes(key: str, value: Any) -> bytes:
    if isinstance(value, str) and value:
        return value.encode()
    if isinstance(value, bytes) and value:
        return value
    raise ConfigError(key, "must be a non-empty str or bytes")


def _secret_keys(config: Mapping[str, Any]) -> tuple[bytes, ...]:
    current = config.get("SECRET_KEY")
    if not current:
        raise ConfigError(
            "SECRET_KEY",
            "is not set; consentkit signs the consent cookie with it "
            "(set app.secret_key or SECRET_KEY to a long random value)",
        )
    fallbacks = config.get("SECRET_KEY_FALLBACKS") or ()
    if isinstance(fallbacks, str | bytes) or not isinstance(fallbacks, Sequence):
        raise ConfigError("SECRET_KEY_FALLBACKS", "must be a list of keys")
    keys = [_key_bytes("SECRET_KEY_FALLBACKS", k) for k in fallbacks]
    return (*keys, _key_bytes("SECRET_KEY", current))


def _spool_dir(value: Any, instance_path: str) -> str | None:
    key = "CONSENTKIT_SPOOL_DIR"
    if value is False:
        return None
    if value is None:
        return os.path.join(os.path.abspath(instance_path), "consentkit-spool")
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if not isinstance(value, str) or not value.strip() or "\0" in value:
        raise ConfigError(key, f"expected a directory path, None or False, got {value!r}")
    return os.path.join(os.path.abspath(instance_path), value)


def _dpo_settings(
    config: Mapping[str, Any], secret_keys: tuple[bytes, ...]
) -> tuple[tuple[bytes, ...], str | None, int]:
    """Log keys (current first), legal hold and the statistics threshold."""
    log_key = config["CONSENTKIT_LOG_KEY"]
    fallbacks = config["CONSENTKIT_LOG_KEY_FALLBACKS"]
    if isinstance(fallbacks, str | bytes) or not isinstance(fallbacks, Sequence):
        raise ConfigError("CONSENTKIT_LOG_KEY_FALLBACKS", "must be a list of keys")
    if log_key is not None:
        keys = [_key_bytes("CONSENTKIT_LOG_KEY", log_key)]
    else:
        keys = [derive_key(k, "log") for k in reversed(secret_keys)]
    keys.extend(_key_bytes("CONSENTKIT_LOG_KEY_FALLBACKS", k) for k in fallbacks)

    hold = config["CONSENTKIT_LEGAL_HOLD"]
    if hold is None or hold is False:
        legal_hold = None
    elif hold is True:
        legal_hold = "legal hold"
    elif isinstance(hold, str) and hold.strip():
        legal_hold = hold.strip()
    else:
        raise ConfigError(
            "CONSENTKIT_LEGAL_HOLD", f"expected None, False, True or a reference, got {hold!r}"
        )

    k = config["CONSENTKIT_STATS_MIN_COUNT"]
    if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= 1000:
        raise ConfigError("CONSENTKIT_STATS_MIN_COUNT", f"expected 1..1000, got {k!r}")
    return tuple(keys), legal_hold, k


def _locales(config: Mapping[str, Any], available: Sequence[str]) -> tuple[tuple[str, ...], str]:
    key = "CONSENTKIT_LOCALES"
    value = config[key]
    if isinstance(value, str) or not isinstance(value, Sequence) or not value:
        raise ConfigError(key, f"expected a non-empty list of locale codes, got {value!r}")
    locales: list[str] = []
    for loc in value:
        if not isinstance(loc, str) or not _LOCALE.match(loc):
            raise ConfigError(key, f"{loc!r} is not a locale code such as 'fr' or 'en'")
        if loc not in available:
            raise ConfigError(
                key,
                f"no consentkit catalog for {loc!r}; available: {', '.join(sorted(available))}",
            )
        if loc not in locales:
            locales.append(loc)
    default = config["CONSENTKIT_DEFAULT_LOCALE"]
    if default not in locales:
        raise ConfigError(
            "CONSENTKIT_DEFAULT_LOCALE", f"{default!r} is not one of CONSENTKIT_LOCALES {locales}"
        )
    return tuple(locales), default


def _check_unknown(config: Mapping[str, Any]) -> None:
    for key in config:
        if key.startswith(PREFIX) and key not in DEFAULTS:
            close = difflib.get_close_matches(key, DEFAULTS, n=1)
            hint = f"; did you mean {close[0]}?" if close else ""
            raise ConfigError(key, f"unknown consentkit setting{hint}")


def load_settings(
    config: Mapping[str, Any], *, instance_path: str, available_locales: Sequence[str]
) -> Settings:
    """Validate an app's config (defaults already applied) into :class:`Settings`."""
    _check_unknown(config)

    uri = config["CONSENTKIT_DATABASE_URI"]
    if uri is None:
        uri = f"sqlite:///{instance_path}/consentkit.sqlite3"
    elif not isinstance(uri, str):
        raise ConfigError("CONSENTKIT_DATABASE_URI", f"expected a URL string, got {uri!r}")
    try:
        make_url(uri)
    except ArgumentError as exc:
        raise ConfigError("CONSENTKIT_DATABASE_URI", f"not a database URL: {exc}") from None

    policy = config["CONSENTKIT_POLICY_VERSION"]
    if isinstance(policy, int) and not isinstance(policy, bool):
        policy = str(policy)
    if not isinstance(policy, str) or not _POLICY_VERSION.match(policy):
        raise ConfigError(
            "CONSENTKIT_POLICY_VERSION",
            f"expected 1-32 characters of letters, digits, '.', '_' or '-', got {policy!r}",
        )

    name = config["CONSENTKIT_COOKIE_NAME"]
    if not isinstance(name, str) or not _TOKEN.match(name):
        raise ConfigError("CONSENTKIT_COOKIE_NAME", f"not a valid cookie name: {name!r}")

    max_age = _seconds("CONSENTKIT_COOKIE_MAX_AGE", config["CONSENTKIT_COOKIE_MAX_AGE"])
    if max_age > MAX_COOKIE_AGE.total_seconds():
        raise ConfigError(
            "CONSENTKIT_COOKIE_MAX_AGE",
            f"{max_age} s is more than 395 days (13 months), the longest a choice may be kept",
        )

    secure = _bool("CONSENTKIT_COOKIE_SECURE", config["CONSENTKIT_COOKIE_SECURE"])
    samesite = config["CONSENTKIT_COOKIE_SAMESITE"]
    if samesite not in SAMESITE_VALUES:
        raise ConfigError(
            "CONSENTKIT_COOKIE_SAMESITE", f"expected one of {SAMESITE_VALUES}, got {samesite!r}"
        )
    if samesite == "None" and not secure:
        raise ConfigError(
            "CONSENTKIT_COOKIE_SAMESITE", "'None' needs CONSENTKIT_COOKIE_SECURE = True"
        )
    domain = _optional_text("CONSENTKIT_COOKIE_DOMAIN", config["CONSENTKIT_COOKIE_DOMAIN"])
    path = config["CONSENTKIT_COOKIE_PATH"]
    if not isinstance(path, str) or not path.startswith("/") or ";" in path:
        raise ConfigError("CONSENTKIT_COOKIE_PATH", f"expected a path starting with '/': {path!r}")

    locales, default_locale = _locales(config, available_locales)

    prefix = config["CONSENTKIT_URL_PREFIX"]
    if (
        not isinstance(prefix, str)
        or not prefix.startswith("/")
        or prefix.endswith("/")
        or "//" in prefix
    ):
        raise ConfigError(
            "CONSENTKIT_URL_PREFIX",
            f"expected a path like '/consent' (leading '/', no trailing '/'), got {prefix!r}",
        )

    gpc = config["CONSENTKIT_GPC"]
    if gpc not in GPC_MODES:
        raise ConfigError("CONSENTKIT_GPC", f"expected one of {GPC_MODES}, got {gpc!r}")

    site = config["CONSENTKIT_SITE"]
    if not isinstance(site, str) or not _SITE.match(site):
        raise ConfigError(
            "CONSENTKIT_SITE", f"expected 1-64 letters, digits or '._:-', got {site!r}"
        )

    policy_url = _optional_text("CONSENTKIT_POLICY_URL", config["CONSENTKIT_POLICY_URL"])
    if policy_url is not None and not re.match(r"^(https?://|/)", policy_url):
        raise ConfigError(
            "CONSENTKIT_POLICY_URL", f"expected an http(s) URL or a path, got {policy_url!r}"
        )

    retention = config["CONSENTKIT_LOG_RETENTION"]
    retention_td = timedelta(seconds=_seconds("CONSENTKIT_LOG_RETENTION", retention))

    max_body = config["CONSENTKIT_MAX_BODY"]
    if not isinstance(max_body, int) or isinstance(max_body, bool) or not 256 <= max_body <= 65536:
        raise ConfigError("CONSENTKIT_MAX_BODY", f"expected 256..65536 bytes, got {max_body!r}")

    secret_keys = _secret_keys(config)
    subject_key = config["CONSENTKIT_SUBJECT_KEY"]
    subject_keys: list[bytes] = []
    if subject_key is not None:
        subject_keys.append(_key_bytes("CONSENTKIT_SUBJECT_KEY", subject_key))
    fallbacks = config["CONSENTKIT_SUBJECT_KEY_FALLBACKS"]
    if isinstance(fallbacks, str | bytes) or not isinstance(fallbacks, Sequence):
        raise ConfigError("CONSENTKIT_SUBJECT_KEY_FALLBACKS", "must be a list of keys")
    subject_keys.extend(_key_bytes("CONSENTKIT_SUBJECT_KEY_FALLBACKS", k) for k in fallbacks)
    if fallbacks and subject_key is None:
        # Without a current key the first fallback would silently become the one that
        # names new records.
        raise ConfigError(
            "CONSENTKIT_SUBJECT_KEY_FALLBACKS",
            "needs CONSENTKIT_SUBJECT_KEY (the current key; fallbacks are only for look-ups)",
        )

    log_keys, legal_hold, stats_min_count = _dpo_settings(config, secret_keys)
    return Settings(
        log_keys=log_keys,
        legal_hold=legal_hold,
        stats_min_count=stats_min_count,
        database_uri=uri,
        policy_version=policy,
        cookie_name=name,
        cookie_max_age=max_age,
        cookie_secure=secure,
        cookie_samesite=samesite,
        cookie_domain=domain,
        cookie_path=path,
        locales=locales,
        default_locale=default_locale,
        url_prefix=prefix,
        statistics_anonymous=_bool(
            "CONSENTKIT_STATISTICS_ANONYMOUS", config["CONSENTKIT_STATISTICS_ANONYMOUS"]
        ),
        gpc=gpc,
        site=site,
        controller=_optional_text("CONSENTKIT_CONTROLLER", config["CONSENTKIT_CONTROLLER"]),
        policy_url=policy_url,
        log_retention=retention_td,
        secret_keys=secret_keys,
        subject_keys=tuple(subject_keys),
        max_body=max_body,
        spool_dir=_spool_dir(config["CONSENTKIT_SPOOL_DIR"], instance_path),
        google_consent_mode=_bool(
            "CONSENTKIT_GOOGLE_CONSENT_MODE", config["CONSENTKIT_GOOGLE_CONSENT_MODE"]
        ),
    )
