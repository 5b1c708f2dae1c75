"""Silences: times when some alerts are recorded and not sent (``monitor silence add``).

- ``silences``: model, check (null: any of the model's), matchers (JSON: label -> value), starts,
  ends, reason, created. A notification that one matches while it lasts is ``held`` until it ends.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
WHEN = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "silences",
        sa.Column("id", BIG_ID, primary_key=True, autoincrement=True),
        sa.Column("model", sa.String(100), nullable=False),
        sa.Column("check", sa.String(100), nullable=True),
        sa.Column("matchers", sa.JSON(), nullable=False),
        sa.Column("starts", WHEN, nullable=False),
        sa.Column("ends", WHEN, nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("created", WHEN, nullable=False),
    )
    op.create_index("ix_silences_ends", "silences", ["ends"])


def downgrade() -> None:
    op.drop_index("ix_silences_ends", table_name="silences")
    op.drop_table("silences")
