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
    UniqueConstraint,
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
    # -- tamper evidence (see consentkit.integrity) --------------------------------------
    # Each writer appends to its own numbered stream; the MAC covers the stream position
    # and the record's content. Nullable: rows written before tamper evidence existed (or
    # by a store without a log key) are "unsigned" and reported as such by verify.
    Column("stream_id", String(32), nullable=True),
    Column("stream_seq", BigInteger, nullable=True),
    Column("key_id", String(16), nullable=True),
    Column("mac", String(64), nullable=True),
    UniqueConstraint("stream_id", "stream_seq", name="uq_consentkit_records_stream"),
)

#: What the DPO tools did to the log: exports, purges, erasures, seals. Each entry is
#: numbered without gaps and MAC'd; purge and erasure entries name the stream positions they
#: removed (never a subject), and every entry carries the stream heads seen at that moment.
ledger = Table(
    "consentkit_ledger",
    metadata,
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("kind", String(16), nullable=False),
    Column("occurred_at", DateTime(timezone=True), nullable=False),
    Column("details", Text, nullable=False),
    Column("key_id", String(16), nullable=False),
    Column("mac", String(64), nullable=False),
)
