"""The signed consent cookie: encode a :class:`ConsentState`, verify and decode it.

The payload is a compact JSON list, signed and timestamped by itsdangerous:
``[payload_version, consent_id, policy_version, flags, issued_at, gpc]`` where ``flags``
is a four-character string of ``0``/``1`` for functional, preferences, statistics,
marketing. Nothing else: no IP, no user agent, no account.

Whatever the cookie holds, :meth:`ConsentCookieCodec.loads` returns a state and never
raises: a missing, tampered, expired, malformed or old-policy cookie is "undecided".
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, ClassVar

from itsdangerous import BadData, BadSignature, TimestampSigner, URLSafeTimedSerializer
from itsdangerous.encoding import base64_decode, base64_encode, want_bytes

from .state import UNDECIDED, ConsentState

PAYLOAD_VERSION = 1
SALT = "consentkit.consent-cookie"
#: Browsers keep cookies up to 4 KB, but a legitimate consent cookie is under 200 bytes;
#: refusing anything longer keeps hostile cookies from costing CPU.
MAX_COOKIE_LENGTH = 512
#: How many verified cookie values one process remembers.
VERIFIED_CACHE_SIZE = 10_000

_CONSENT_ID = re.compile(r"^[A-Za-z0-9_-]{22,64}$")
_POLICY = re.compile(r"^[A-Za-z0-9._-]{1,32}$")
_FLAGS = re.compile(r"^1[01]{3}$")  # functional is always "1"
_TOKEN = re.compile(r"^\.?[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$")


class _Signer(TimestampSigner):
    """itsdangerous derives the signing key from the secret on every signature and every
    check; the derived key depends only on the secret, the salt and the digest, so it is
    derived once per process here (a decision response signs a cookie)."""

    _derived: ClassVar[dict[tuple[bytes, bytes, str, Any], bytes]] = {}

    def derive_key(self, secret_key: str | bytes | None = None) -> bytes:
        secret = self.secret_keys[-1] if secret_key is None else want_bytes(secret_key)
        key = (secret, self.salt, self.key_derivation, self.digest_method)
        found = self._derived.get(key)
        if found is None:
            found = self._derived[key] = super().derive_key(secret)
        return found


class ConsentCookieCodec:
    """Signs and verifies consent cookies for one app.

    ``secret_keys`` lists the fallbacks first and the current key last: itsdangerous signs
    with the last key and accepts any of them, which is how ``SECRET_KEY_FALLBACKS``
    rotation works in Flask.
    """

    def __init__(self, secret_keys: Sequence[bytes], *, max_age: int) -> None:
        self.max_age = max_age
        # Cookie values already verified in this process: a returning visitor's next page
        # costs a dictionary look-up, not an HMAC and a JSON parse. Only verified values
        # enter, with the moment they expire; their age is still checked on every use.
        self._verified: dict[str, tuple[ConsentState, float]] = {}
        self._serializer = URLSafeTimedSerializer(
            list(secret_keys),
            salt=SALT,
            signer=_Signer,
            signer_kwargs={"key_derivation": "hmac", "digest_method": hashlib.sha256},
        )

    def dumps(self, state: ConsentState) -> str:
        if not state.decided or state.consent_id is None or state.issued_at is None:
            raise ValueError("only a decided state is stored in the cookie")
        flags = "1" + "".join(
            "1" if flag else "0" for flag in (state.preferences, state.statistics, state.marketing)
        )
        payload = [
            PAYLOAD_VERSION,
            state.consent_id,
            state.policy_version,
            flags,
            int(state.issued_at.timestamp()),
            1 if state.gpc else 0,
        ]
        token = self._serializer.dumps(payload)
        return token if isinstance(token, str) else token.decode()

    def load_payload(self, value: str | None) -> ConsentState | None:
        """Verify the signature and age and validate the payload; ``None`` if anything fails.

        The returned state may carry an older policy version: see :meth:`loads`.
        """
        if not value:
            return None
        known = self._verified.get(value)
        if known is not None:
            if time.time() <= known[1]:
                return known[0]
            self._verified.pop(value, None)
            return None
        if len(value) > MAX_COOKIE_LENGTH or not _canonical(value):
            return None
        try:
            payload = self._serializer.loads(value, max_age=self.max_age)
        except BadSignature:  # includes SignatureExpired and payload decoding errors
            return None
        except Exception:  # hostile bytes must never become a 500
            return None
        state = _validate(payload)
        if state is not None:
            if len(self._verified) >= VERIFIED_CACHE_SIZE:
                self._verified.clear()
            self._verified[value] = (state, self.valid_until(state))
        return state

    def valid_until(self, state: ConsentState) -> float:
        """When a cookie carrying ``state`` stops being valid (a Unix time)."""
        # The signed timestamp and the payload's issue time are the same second.
        issued = state.issued_at.timestamp() if state.issued_at is not None else 0.0
        return issued + self.max_age

    def loads(self, value: str | None, *, policy_version: str) -> ConsentState:
        """The state a cookie value grants today: undecided unless valid and current."""
        state = self.load_payload(value)
        if state is None or state.policy_version != policy_version:
            return UNDECIDED
        return state


def _canonical(token: str) -> bool:
    """Only the exact bytes consentkit wrote verify. base64 decoders skip stray characters
    and ignore padding bits, so ``token + "::"`` would otherwise verify as the same cookie."""
    if not _TOKEN.match(token):
        return False
    for part in token.lstrip(".").split("."):
        try:
            if base64_encode(base64_decode(part)).decode() != part:
                return False
        except BadData:
            return False
    return True


def _validate(payload: Any) -> ConsentState | None:
    """Schema check of a decoded payload: a valid signature proves origin, not shape."""
    if not isinstance(payload, list) or len(payload) != 6:
        return None
    version, consent_id, policy, flags, issued, gpc = payload
    if version != PAYLOAD_VERSION or isinstance(version, bool):
        return None
    if not isinstance(consent_id, str) or not _CONSENT_ID.match(consent_id):
        return None
    if not isinstance(policy, str) or not _POLICY.match(policy):
        return None
    if not isinstance(flags, str) or not _FLAGS.match(flags):
        return None
    if not isinstance(issued, int) or isinstance(issued, bool) or not 0 < issued < 2**34:
        return None
    if gpc not in (0, 1) or isinstance(gpc, bool):
        return None
    return ConsentState(
        decided=True,
        consent_id=consent_id,
        policy_version=policy,
        preferences=flags[1] == "1",
        statistics=flags[2] == "1",
        marketing=flags[3] == "1",
        issued_at=datetime.fromtimestamp(issued, UTC),
        gpc=gpc == 1,
    )
