"""A check may be evaluated per model version: runs, values and episodes name the version they are of.

- ``check_runs.model_version``, ``metrics.model_version``, ``alerts.model_version``: the model version
  of a check with ``split_by: model_version`` (a ``version_compare`` check: its candidate), "" for a
  check over every version, which is every row written before this revision.
- The unique open-episode index gains ``model_version``: one open episode per rule, feature and
  version, so an alert for v2 is not v1's.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-16
"""

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

OPEN = sa.text("state IN ('pending', 'firing')")
TABLES = ("check_runs", "metrics", "alerts")


def upgrade() -> None:
    # The partial index goes first: SQLite's batch mode copies the table, and its predicate with it
    # is not something to rely on (as in 0003).
    op.drop_index("uq_alerts_open_episode", table_name="alerts")
    for name in TABLES:
        with op.batch_alter_table(name) as batch:
            batch.add_column(sa.Column("model_version", sa.String(100), nullable=False, server_default=""))
    op.create_index("uq_alerts_open_episode", "alerts", ["model", "check", "rule_key", "feature", "model_version"],
                    unique=True, sqlite_where=OPEN, postgresql_where=OPEN)  # fmt: skip


def downgrade() -> None:
    # Episodes of two versions of one rule may both be open; the old index allows one. The newer ones
    # are ended (resolved, with the reason) before it is made again, so the downgrade cannot fail on them.
    alerts = sa.table(
        "alerts",
        sa.column("id", sa.BigInteger),
        sa.column("model", sa.String),
        sa.column("check", sa.String),
        sa.column("rule_key", sa.String),
        sa.column("feature", sa.String),
        sa.column("state", sa.String),
        sa.column("resolved", sa.DateTime(timezone=True)),
        sa.column("reason", sa.Text),
    )
    conn = op.get_bind()
    kept: set[tuple] = set()
    opened = conn.execute(
        sa.select(alerts.c.id, alerts.c.model, alerts.c.check, alerts.c.rule_key, alerts.c.feature)
        .where(alerts.c.state.in_(["pending", "firing"]))
        .order_by(alerts.c.id)
    ).all()
    for alert_id, *key in opened:
        if tuple(key) in kept:
            conn.execute(
                sa.update(alerts)
                .where(alerts.c.id == alert_id)
                .values(state="resolved", resolved=datetime.now(UTC),
                        reason="closed by the downgrade below revision 0005: one open episode per rule and feature")  # fmt: skip
            )
        kept.add(tuple(key))
    op.drop_index("uq_alerts_open_episode", table_name="alerts")
    for name in reversed(TABLES):
        with op.batch_alter_table(name) as batch:
            batch.drop_column("model_version")
    op.create_index("uq_alerts_open_episode", "alerts", ["model", "check", "rule_key", "feature"], unique=True,
                    sqlite_where=OPEN, postgresql_where=OPEN)  # fmt: skip
