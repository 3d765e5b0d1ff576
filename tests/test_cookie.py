"""The consent cookie codec, without an app."""

from __future__ import annotations

import base64
import json
import time
from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from itsdangerous import URLSafeTimedSerializer

from consentkit.cookie import SALT, ConsentCookieCodec
from consentkit.state import ConsentState, decide, new_consent_id

KEY = b"current-key-0123456789abcdef0123"
MAX_AGE = 183 * 86400


def codec(*keys: bytes, max_age: int = MAX_AGE) -> ConsentCookieCodec:
    return ConsentCookieCodec(list(keys) or [KEY], max_age=max_age)


def decided(**flags: bool) -> ConsentState:
    return ConsentState(
        decided=True,
        consent_id=new_consent_id(),
        policy_version="1",
        issued_at=datetime.now(UTC).replace(microsecond=0),
        **flags,
    )


def test_round_trip():
    state = decided(statistics=True, gpc=True)
    assert codec().loads(codec().dumps(state), policy_version="1") == state


def test_consent_id_is_128_bits_from_the_csprng():
    ids = {new_consent_id() for _ in range(1000)}
    assert len(ids) == 1000
    raw = base64.urlsafe_b64decode(next(iter(ids)) + "==")
    assert len(raw) == 16


@pytest.mark.parametrize("policy", ["1", "2026-11-policy-v12.3", "x" * 32])
def test_cookie_is_at_most_200_bytes(policy):
    state = ConsentState(
        decided=True,
        consent_id=new_consent_id(),
        policy_version=policy,
        preferences=True,
        statistics=True,
        marketing=True,
        issued_at=datetime.now(UTC),
        gpc=True,
    )
    header = "eu-consent=" + codec().dumps(state)
    assert len(header) <= 200


def test_payload_holds_only_the_contract_fields():
    state = decided(marketing=True)
    token = codec().dumps(state)
    payload = URLSafeTimedSerializer(
        [KEY], salt=SALT, signer_kwargs=codec()._serializer.signer_kwargs
    ).loads(token)
    assert payload == [1, state.consent_id, "1", "1001", int(state.issued_at.timestamp()), 0]


def test_missing_or_empty_is_undecided():
    assert not codec().loads(None, policy_version="1").decided
    assert not codec().loads("", policy_version="1").decided


def test_tampered_is_undecided():
    token = codec().dumps(decided(marketing=True))
    body, ts, sig = token.split(".")
    flipped = body[:-2] + ("A" if body[-2] != "A" else "B") + body[-1]
    assert not codec().loads(f"{flipped}.{ts}.{sig}", policy_version="1").decided
    assert (
        not codec()
        .loads(token[:-1] + ("x" if token[-1] != "x" else "y"), policy_version="1")
        .decided
    )


def test_old_policy_is_undecided_but_payload_still_readable():
    token = codec().dumps(decided())
    assert not codec().loads(token, policy_version="2").decided
    assert codec().load_payload(token) is not None  # keeps the visitor's consent id


def test_expired_is_undecided(monkeypatch):
    token = codec(max_age=60).dumps(decided())
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() + 61)
    assert not codec(max_age=60).loads(token, policy_version="1").decided


def test_key_rotation():
    old, new = b"old-key-" + b"a" * 24, b"new-key-" + b"b" * 24
    token = codec(old).dumps(decided())
    assert codec(old, new).loads(token, policy_version="1").decided  # fallback accepted
    assert not codec(new).loads(token, policy_version="1").decided  # unknown key
    # The current key is the last one: new cookies verify without the fallback.
    fresh = codec(old, new).dumps(decided())
    assert codec(new).loads(fresh, policy_version="1").decided


def signed(payload: object) -> str:
    """A correctly signed cookie with an arbitrary payload (valid signature, bad shape)."""
    serializer = URLSafeTimedSerializer(
        [KEY], salt=SALT, signer_kwargs=codec()._serializer.signer_kwargs
    )
    return str(serializer.dumps(payload))


@pytest.mark.parametrize(
    "payload",
    [
        None,
        {},
        [],
        [1, "id", "1", "1111", 1, 0],
        [2, new_consent_id(), "1", "1111", int(time.time()), 0],
        [1, new_consent_id(), "1", "0111", int(time.time()), 0],
        [1, new_consent_id(), "1", "11111", int(time.time()), 0],
        [1, new_consent_id(), 1, "1111", int(time.time()), 0],
        [1, new_consent_id(), "1", "1111", "now", 0],
        [1, new_consent_id(), "1", "1111", int(time.time()), True],
        [True, new_consent_id(), "1", "1111", int(time.time()), 0],
        [1, new_consent_id(), "1", "1111", int(time.time())],
        [1, new_consent_id(), "1", "1111", 10**20, 0],
        [1, "a" * 22 + "<script>", "1", "1111", int(time.time()), 0],
    ],
)
def test_signed_but_malformed_payload_is_undecided(payload):
    assert codec().load_payload(signed(payload)) is None


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(data=st.data())
def test_mutated_cookies_are_undecided(data):
    token = codec().dumps(decided(statistics=True))
    kind = data.draw(st.sampled_from(["flip", "insert", "delete", "truncate", "append"]))
    chars = list(token)
    alphabet = st.characters(codec="utf-8", exclude_categories=("Cs",))
    if kind == "flip":
        i = data.draw(st.integers(0, len(chars) - 1))
        new = data.draw(alphabet.filter(lambda c: c != chars[i]))
        chars[i] = new
    elif kind == "insert":
        i = data.draw(st.integers(0, len(chars)))
        chars.insert(i, data.draw(alphabet))
    elif kind == "delete":
        del chars[data.draw(st.integers(0, len(chars) - 1))]
    elif kind == "truncate":
        chars = chars[: data.draw(st.integers(0, len(chars) - 1))]
    else:
        chars.extend(data.draw(st.text(min_size=1, max_size=20)))
    mutated = "".join(chars)
    if mutated == token:
        return
    result = codec().loads(mutated, policy_version="1")
    assert not result.decided


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=600) | st.binary(max_size=600).map(lambda b: b.decode("latin-1")))
def test_arbitrary_cookie_values_never_raise(value):
    assert not codec().loads(value, policy_version="1").decided


def test_unsigned_forged_payload_is_undecided():
    body = (
        base64.urlsafe_b64encode(
            json.dumps([1, new_consent_id(), "1", "1111", int(time.time()), 0]).encode()
        )
        .decode()
        .rstrip("=")
    )
    assert not codec().loads(f"{body}.aaaaaa.bbbbbbbb", policy_version="1").decided


def test_decide_then_encode_is_small_and_valid():
    decision = decide(
        action="accept_all",
        consent_id=None,
        policy_version="1",
        gpc_signal=False,
        gpc_mode="strict",
    )
    token = codec().dumps(decision.state)
    assert codec().loads(token, policy_version="1").marketing


def test_a_remembered_cookie_still_expires(monkeypatch):
    one = codec(max_age=60)
    token = one.dumps(decided())
    assert one.loads(token, policy_version="1").decided  # verified, now remembered
    assert one.loads(token, policy_version="1").decided  # served from memory
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() + 61)
    assert not one.loads(token, policy_version="1").decided
