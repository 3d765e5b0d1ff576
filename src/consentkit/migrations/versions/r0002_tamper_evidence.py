"""Tamper evidence: per-writer streams and MACs on records; the DPO tools' ledger.

Four nullable columns on ``consentkit_records`` (rows written before keep NULL: ``verify``
reports them as unsigned until a DPO adopts them with ``seal --adopt-unsigned``), a unique
(stream_id, stream_seq), and the new ``consentkit_ledger`` table. No existing value changes.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    with op.batch_alter_table("consentkit_records") as batch:
        batch.add_column(sa.Column("stream_id", sa.String(32), nullable=True))
        batch.add_column(sa.Column("stream_seq", sa.BigInteger, nullable=True))
        batch.add_column(sa.Column("key_id", sa.String(16), nullable=True))
        batch.add_column(sa.Column("mac", sa.String(64), nullable=True))
        batch.create_unique_constraint("uq_consentkit_records_stream", ["stream_id", "stream_seq"])
    op.create_table(
        "consentkit_ledger",
        sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("details", sa.Text, nullable=False),
        sa.Column("key_id", sa.String(16), nullable=False),
        sa.Column("mac", sa.String(64), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("consentkit_ledger")
    with op.batch_alter_table("consentkit_records") as batch:
        batch.drop_constraint("uq_consentkit_records_stream", type_="unique")
        batch.drop_column("mac")
        batch.drop_column("key_id")
        batch.drop_column("stream_seq")
        batch.drop_column("stream_id")
