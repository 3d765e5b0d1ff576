"""SQLAlchemy tables of the consent log.

``consentkit_records`` holds one row per decision; ``consentkit_notices`` holds the exact
texts shown, once per SHA-256. Category lists are stored as comma-separated names in the
fixed order functional, preferences, statistics, marketing: readable in raw SQL and small.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)

metadata = MetaData()

# SQLite only auto-increments an INTEGER PRIMARY KEY; PostgreSQL gets a BIGINT identity.
_RecordId = BigInteger().with_variant(Integer(), "sqlite")

notices = Table(
    "consentkit_notices",
    metadata,
    Column("notice_hash", String(64), primary_key=True),
    Column("locale", String(16), nullable=False),
    Column("policy_version", String(32), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("texts", Text, nullable=False),
)

records = Table(
    "consentkit_records",
    metadata,
    Column("record_id", _RecordId, primary_key=True, autoincrement=True),
    # A unique id per decision, made when the visitor decided: replaying a spooled
    # decision twice cannot create two rows.
    Column("event_id", String(32), nullable=False, unique=True),
    Column("occurred_at", DateTime(timezone=True), nullable=False),
    Column("site", String(64), nullable=False),
    Column("subject", String(64), nullable=False),
    Column("action", String(16), nullable=False),
    Column("surface", String(16), nullable=False),
    Column("granted", String(64), nullable=False),
    Column("denied", String(64), nullable=False),
    Column("withdrawn", String(64), nullable=False),
    Column("policy_version", String(32), nullable=False),
    Column("locale", String(16), nullable=False),
    Column(
        "notice_hash",
        String(64),
        ForeignKey("consentkit_notices.notice_hash"),
        nullable=False,
    ),
    Column("gpc", Boolean, nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Index("ix_consentkit_records_subject", "subject", "record_id"),
    Index("ix_consentkit_records_occurred_at", "occurred_at"),
)
