"""The configuration keys of the DPO tools: defaults, checks at start, the log key."""

from __future__ import annotations

import pytest

from consentkit import ConfigError
from consentkit.integrity import LogKeys, key_id
from consentkit.keys import derive_key


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("CONSENTKIT_LEGAL_HOLD", 5, "expected None, False, True or a reference"),
        ("CONSENTKIT_LEGAL_HOLD", "  ", "expected None, False, True or a reference"),
        ("CONSENTKIT_STATS_MIN_COUNT", 0, "expected 1..1000"),
        ("CONSENTKIT_STATS_MIN_COUNT", True, "expected 1..1000"),
        ("CONSENTKIT_LOG_KEY", "", "non-empty"),
        ("CONSENTKIT_LOG_KEY_FALLBACKS", "old-key", "must be a list"),
        ("CONSENTKIT_LOG_KEY_FALLBACKS", [b""], "non-empty"),
    ],
)
def test_bad_values_fail_at_start(make_app, key, value, message):
    with pytest.raises(ConfigError) as info:
        make_app(**{key: value})
    assert info.value.key == key
    assert message in str(info.value)


def test_defaults(make_app):
    settings = make_app().extensions["consentkit"].settings
    assert settings.legal_hold is None
    assert settings.stats_min_count == 10
    # Without CONSENTKIT_LOG_KEY the log key derives from SECRET_KEY (current first).
    secret = make_app().config["SECRET_KEY"].encode()
    assert settings.log_keys == (derive_key(secret, "log"),)


def test_log_key_order_and_secret_fallbacks(make_app):
    settings = (
        make_app(
            SECRET_KEY_FALLBACKS=["older-secret"],
            CONSENTKIT_LOG_KEY_FALLBACKS=["retired-log-key"],
        )
        .extensions["consentkit"]
        .settings
    )
    current, from_old_secret, retired = settings.log_keys
    assert from_old_secret == derive_key(b"older-secret", "log")
    assert retired == b"retired-log-key"
    keys = LogKeys(settings.log_keys)
    assert keys.current_id == key_id(current)
    assert keys.knows(key_id(retired))
    explicit = make_app(CONSENTKIT_LOG_KEY="k" * 32).extensions["consentkit"].settings
    assert explicit.log_keys == (b"k" * 32,)


@pytest.mark.parametrize(("value", "expected"), [(True, "legal hold"), ("case 17 ", "case 17")])
def test_legal_hold_values(make_app, value, expected):
    app = make_app(CONSENTKIT_LEGAL_HOLD=value)
    assert app.extensions["consentkit"].settings.legal_hold == expected
