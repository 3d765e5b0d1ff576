"""The consent log's column names, defined once for the store, the exports and the MACs."""

from __future__ import annotations

#: The contract's log columns (DESIGN.md), in export order.
CONTRACT_COLUMNS: tuple[str, ...] = (
    "record_id",
    "occurred_at",
    "site",
    "subject",
    "action",
    "surface",
    "granted",
    "denied",
    "withdrawn",
    "policy_version",
    "locale",
    "notice_hash",
    "gpc",
    "expires_at",
)
#: What the tamper-evidence scheme adds to every row (see integrity.py).
INTEGRITY_COLUMNS: tuple[str, ...] = ("stream_id", "stream_seq", "key_id", "mac")
#: A signed record as the exports and the DPO tools read it: the contract's columns, then
#: the tamper-evidence columns.
LOG_COLUMNS: tuple[str, ...] = CONTRACT_COLUMNS + INTEGRITY_COLUMNS
