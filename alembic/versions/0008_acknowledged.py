"""An acknowledged episode's incident is not repeated: ``alerts.acknowledged`` (when, or null).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

OPEN = sa.text("state IN ('pending', 'firing')")
EPISODE = ["model", "check", "rule_key", "feature", "model_version"]


def upgrade() -> None:
    op.drop_index("uq_alerts_open_episode", table_name="alerts")  # around the batch, as in 0006
    with op.batch_alter_table("alerts") as batch:
        batch.add_column(sa.Column("acknowledged", sa.DateTime(timezone=True), nullable=True))
    op.create_index("uq_alerts_open_episode", "alerts", EPISODE, unique=True, sqlite_where=OPEN, postgresql_where=OPEN)


def downgrade() -> None:
    op.drop_index("uq_alerts_open_episode", table_name="alerts")
    with op.batch_alter_table("alerts") as batch:
        batch.drop_column("acknowledged")
    op.create_index("uq_alerts_open_episode", "alerts", EPISODE, unique=True, sqlite_where=OPEN, postgresql_where=OPEN)
