"""A visitor's own history (GDPR Art. 15), as the DPO's command and the receipt download give
it. Pure: no Flask, no database."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from .columns import CONTRACT_COLUMNS
from .export import notice_entry
from .integrity import iso

HISTORY_FORMAT = "consentkit-subject-history/1"


def history_document(
    records: Iterable[Mapping[str, Any]],
    notices: Iterable[tuple[str, str, str, str]],
    *,
    consent_id: str | None,
    subjects: Sequence[str],
    generated_at: datetime,
) -> dict[str, Any]:
    """Every decision of one visitor, oldest first, with the exact texts each one was made
    on (``notices``: ``(hash, locale, policy_version, canonical texts)``)."""
    rows = []
    for record in records:
        row: dict[str, Any] = {}
        for column in CONTRACT_COLUMNS:
            value = record[column]
            row[column] = iso(value) if isinstance(value, datetime) else value
        rows.append(row)
    return {
        "format": HISTORY_FORMAT,
        "generated_at": iso(generated_at),
        "consent_id": consent_id,
        "subjects": list(subjects),
        "records": rows,
        "notices": {h: notice_entry(loc, pol, texts) for h, loc, pol, texts in notices},
    }
