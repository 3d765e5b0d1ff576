"""Keys derived from the app's secrets, and the keyed hash that names a subject in the log."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence


def derive_key(secret: bytes, purpose: str) -> bytes:
    """A key for one purpose, so one secret never signs two kinds of thing."""
    return hmac.new(secret, f"consentkit:{purpose}".encode(), hashlib.sha256).digest()


def subject_hash(key: bytes, consent_id: str) -> str:
    """The log's ``subject``: HMAC-SHA256 of the consent id, hex. Without the key the raw id
    cannot be recovered or guessed from the log; with the visitor's cookie it can be found."""
    return hmac.new(key, consent_id.encode(), hashlib.sha256).hexdigest()


def subject_hashes(keys: Sequence[bytes], consent_id: str) -> list[str]:
    """The subject under every configured key, current first (look-ups across rotation)."""
    return [subject_hash(k, consent_id) for k in keys]
