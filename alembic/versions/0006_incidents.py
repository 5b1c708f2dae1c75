"""The episodes of one check that fire together are one incident, told in one message.

- ``alerts.incident_id``: the id of the episode that opened the check's incident (its own id for the
  first); null while an episode is pending (it has not fired). Episodes that fired before this
  revision are each their own incident, as they were each their own message.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


OPEN = sa.text("state IN ('pending', 'firing')")
EPISODE = ["model", "check", "rule_key", "feature", "model_version"]


def upgrade() -> None:
    # The partial index is made again around the batch (as in 0003 and 0005): SQLite's batch mode may
    # copy the table, and the predicate with it is not something to rely on.
    op.drop_index("uq_alerts_open_episode", table_name="alerts")
    with op.batch_alter_table("alerts") as batch:
        batch.add_column(sa.Column("incident_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True))
    op.create_index("uq_alerts_open_episode", "alerts", EPISODE, unique=True, sqlite_where=OPEN, postgresql_where=OPEN)
    op.create_index("ix_alerts_incident", "alerts", ["incident_id"])
    alerts = sa.table("alerts", sa.column("id", sa.BigInteger), sa.column("fired"), sa.column("incident_id", sa.BigInteger))
    op.execute(alerts.update().where(alerts.c.fired.is_not(None)).values(incident_id=alerts.c.id))


def downgrade() -> None:
    op.drop_index("ix_alerts_incident", table_name="alerts")
    op.drop_index("uq_alerts_open_episode", table_name="alerts")
    with op.batch_alter_table("alerts") as batch:
        batch.drop_column("incident_id")
    op.create_index("uq_alerts_open_episode", "alerts", EPISODE, unique=True, sqlite_where=OPEN, postgresql_where=OPEN)
