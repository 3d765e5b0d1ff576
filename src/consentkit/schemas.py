"""marshmallow schemas: the decision a visitor posts, and the JSON consentkit returns."""

from __future__ import annotations

from typing import Any

from marshmallow import (
    RAISE,
    Schema,
    ValidationError,
    fields,
    post_load,
    validate,
    validates_schema,
)

from .categories import OPTIONAL_CATEGORIES
from .state import ACTIONS, SURFACES, ConsentState

__all__ = ["NEXT_MAX_LENGTH", "DecisionSchema", "RecordSchema", "ValidationError", "state_json"]

#: The longest ``next`` (the page to come back to) a decision accepts.
NEXT_MAX_LENGTH = 2048


class DecisionSchema(Schema):
    """``POST /consent``: ``action``, ``granted`` (only with ``custom``), ``surface``,
    ``next`` (forms only) and ``locale`` (the locale the banner was shown in)."""

    class Meta:
        unknown = RAISE

    action = fields.String(required=True, validate=validate.OneOf(ACTIONS))
    granted = fields.List(
        fields.String(validate=validate.OneOf(OPTIONAL_CATEGORIES)),
        load_default=list,
        validate=validate.Length(max=len(OPTIONAL_CATEGORIES) * 2),
    )
    surface = fields.String(load_default="banner", validate=validate.OneOf(SURFACES))
    next = fields.String(load_default=None, validate=validate.Length(max=NEXT_MAX_LENGTH))
    locale = fields.String(load_default=None, validate=validate.Length(max=16))

    @validates_schema
    def _granted_only_with_custom(self, data: dict[str, Any], **_: Any) -> None:
        if data.get("granted") and data.get("action") != "custom":
            raise ValidationError("only allowed with action 'custom'", "granted")

    @post_load
    def _dedupe(self, data: dict[str, Any], **_: Any) -> dict[str, Any]:
        data["granted"] = tuple(c for c in OPTIONAL_CATEGORIES if c in data["granted"])
        return data


class RecordSchema(Schema):
    """One log record as exported and shown on the receipt (the contract's columns)."""

    record_id = fields.Integer()
    occurred_at = fields.DateTime()
    site = fields.String()
    subject = fields.String()
    action = fields.String()
    surface = fields.String()
    granted = fields.List(fields.String())
    denied = fields.List(fields.String())
    withdrawn = fields.List(fields.String())
    policy_version = fields.String()
    locale = fields.String()
    notice_hash = fields.String()
    gpc = fields.Boolean()
    expires_at = fields.DateTime()


def state_json(
    state: ConsentState, *, policy_version: str, max_age: int, gpc_signal: bool
) -> dict[str, Any]:
    """The contract's state JSON for a request.

    Built by hand rather than by a schema: it is computed for every page that includes
    ``consentkit_head()``, and a returning visitor's page must cost close to nothing.
    """
    expires = state.expires_at(max_age)
    return {
        "decided": state.decided,
        "granted": list(state.granted_categories),
        "denied": list(state.denied_categories),
        "policy_version": state.policy_version if state.decided else policy_version,
        "expires_at": expires.isoformat() if expires is not None else None,
        "consent_id": state.consent_id if state.decided else None,
        "gpc": state.gpc or gpc_signal,
    }
