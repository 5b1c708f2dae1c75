"""Live traffic: per-minute exact counts and latency sketches, and a bounded uniform sample.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def ts(name: str, nullable: bool = False, primary_key: bool = False) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable, primary_key=primary_key)


def upgrade() -> None:
    op.create_table(
        "ingest_stats",
        sa.Column("model", sa.String(100), primary_key=True),
        ts("minute", primary_key=True),
        sa.Column("accepted", sa.BigInteger, nullable=False),
        sa.Column("rejected", sa.BigInteger, nullable=False),
        sa.Column("labels", sa.BigInteger, nullable=False),
        sa.Column("latency_sketch", sa.JSON, nullable=False),
        ts("updated"),
    )
    op.create_table(
        "samples",
        sa.Column("model", sa.String(100), primary_key=True),
        ts("minute", primary_key=True),
        sa.Column("slot", sa.Integer, primary_key=True),
        sa.Column("row_id", sa.String(200), nullable=False),
        ts("ts"),
        sa.Column("features", sa.JSON, nullable=False),
        sa.Column("prediction", sa.JSON),
        sa.Column("latency_ms", sa.Float),
        sa.Column("model_version", sa.String(100)),
        sa.Column("label", sa.JSON),
        ts("labelled", nullable=True),
    )
    op.create_index("ix_samples_model_row_id", "samples", ["model", "row_id"])


def downgrade() -> None:
    op.drop_table("samples")
    op.drop_table("ingest_stats")
