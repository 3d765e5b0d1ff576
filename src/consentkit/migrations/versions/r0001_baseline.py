"""Baseline: the consent log of consentkit's first release.

A database created by that release has these two tables and no version table;
``flask consentkit db upgrade`` recognises it and records it as this revision first.

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None

_RecordId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "consentkit_notices",
        sa.Column("notice_hash", sa.String(64), primary_key=True),
        sa.Column("locale", sa.String(16), nullable=False),
        sa.Column("policy_version", sa.String(32), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("texts", sa.Text, nullable=False),
    )
    op.create_table(
        "consentkit_records",
        sa.Column("record_id", _RecordId, primary_key=True, autoincrement=True),
        sa.Column("event_id", sa.String(32), nullable=False, unique=True),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("site", sa.String(64), nullable=False),
        sa.Column("subject", sa.String(64), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("surface", sa.String(16), nullable=False),
        sa.Column("granted", sa.String(64), nullable=False),
        sa.Column("denied", sa.String(64), nullable=False),
        sa.Column("withdrawn", sa.String(64), nullable=False),
        sa.Column("policy_version", sa.String(32), nullable=False),
        sa.Column("locale", sa.String(16), nullable=False),
        sa.Column(
            "notice_hash",
            sa.String(64),
            sa.ForeignKey("consentkit_notices.notice_hash"),
            nullable=False,
        ),
        sa.Column("gpc", sa.Boolean, nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_consentkit_records_subject", "consentkit_records", ["subject", "record_id"])
    op.create_index("ix_consentkit_records_occurred_at", "consentkit_records", ["occurred_at"])


def downgrade() -> None:
    op.drop_table("consentkit_records")
    op.drop_table("consentkit_notices")
