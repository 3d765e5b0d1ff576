"""The visitor's consent state and the decision logic. Pure: no Flask, no database."""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from .categories import CATEGORY_NAMES, FUNCTIONAL, MARKETING, OPTIONAL_CATEGORIES

ACTIONS = ("accept_all", "reject_all", "custom", "close")
SURFACES = ("banner", "preferences")


def new_consent_id() -> str:
    """A random consent id: 128 bits from the OS CSPRNG, URL-safe base64 (22 characters)."""
    return secrets.token_urlsafe(16)


@dataclass(frozen=True, slots=True)
class ConsentState:
    """What a visitor has allowed. Immutable; ``functional`` is always granted.

    An undecided state (no valid cookie) grants nothing optional.
    """

    decided: bool = False
    consent_id: str | None = None
    policy_version: str | None = None
    preferences: bool = False
    statistics: bool = False
    marketing: bool = False
    issued_at: datetime | None = None
    gpc: bool = False

    def granted(self, category: str) -> bool:
        """Whether ``category`` may run now. Unknown names raise ``KeyError``."""
        if category == FUNCTIONAL:
            return True
        if category not in OPTIONAL_CATEGORIES:
            raise KeyError(f"unknown consent category {category!r}")
        return self.decided and bool(getattr(self, category))

    @property
    def granted_categories(self) -> tuple[str, ...]:
        return tuple(c for c in CATEGORY_NAMES if self.granted(c))

    @property
    def denied_categories(self) -> tuple[str, ...]:
        return tuple(c for c in CATEGORY_NAMES if not self.granted(c))

    def expires_at(self, max_age: int) -> datetime | None:
        if not self.decided or self.issued_at is None:
            return None
        return self.issued_at + timedelta(seconds=max_age)


UNDECIDED = ConsentState()


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome of one posted choice: the new state and what changed."""

    state: ConsentState
    action: str
    granted: tuple[str, ...]
    denied: tuple[str, ...]
    withdrawn: tuple[str, ...]


def decide(
    *,
    action: str,
    requested: Iterable[str] = (),
    previous_granted: Iterable[str] = (),
    consent_id: str | None,
    policy_version: str,
    gpc_signal: bool,
    gpc_mode: str,
    now: datetime | None = None,
) -> Decision:
    """Turn a validated action into a new state.

    ``previous_granted`` is what this subject granted in its previous decision (any policy
    version); categories granted then and denied now are ``withdrawn``. With a GPC signal
    honoured (``gpc_mode == "strict"``), "accept all" leaves Marketing off: only an explicit
    ``custom`` choice that names Marketing grants it.
    """
    if action not in ACTIONS:
        raise ValueError(f"unknown action {action!r}")
    chosen = set(requested)
    unknown = chosen - set(OPTIONAL_CATEGORIES)
    if unknown:
        raise ValueError(f"unknown categories {sorted(unknown)}")
    honour_gpc = gpc_signal and gpc_mode == "strict"
    if action == "accept_all":
        chosen = set(OPTIONAL_CATEGORIES)
        if honour_gpc:
            chosen.discard(MARKETING)
    elif action in ("reject_all", "close"):
        chosen = set()
    state = ConsentState(
        decided=True,
        consent_id=consent_id or new_consent_id(),
        policy_version=policy_version,
        preferences="preferences" in chosen,
        statistics="statistics" in chosen,
        marketing=MARKETING in chosen,
        issued_at=(now or datetime.now(UTC)).replace(microsecond=0),
        gpc=honour_gpc,
    )
    granted = state.granted_categories
    denied = state.denied_categories
    previous = set(previous_granted)
    withdrawn = tuple(c for c in denied if c in previous)
    return Decision(state, action, granted, denied, withdrawn)
