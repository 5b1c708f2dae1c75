"""Routes' grouping and repeats, and messages that told several notifications at once.

``notifications.group_key`` (a route's ``group_by``), ``notifications.repeat_s`` (a route's
``repeat``) and ``notifications.bundle`` (the notification whose message this one went out in).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("notifications") as batch:
        batch.add_column(sa.Column("group_key", sa.String(400), nullable=True))
        batch.add_column(sa.Column("repeat_s", sa.Float(), nullable=True))
        batch.add_column(sa.Column("bundle", BigId, nullable=True))
    # A receiver's cap per minute counts what it was sent in the last minute, on every delivery pass.
    op.create_index("ix_notifications_receiver_time", "notifications", ["receiver", "time"])


def downgrade() -> None:
    op.drop_index("ix_notifications_receiver_time", table_name="notifications")
    with op.batch_alter_table("notifications") as batch:
        batch.drop_column("bundle")
        batch.drop_column("repeat_s")
        batch.drop_column("group_key")
