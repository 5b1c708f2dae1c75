"""The first tables: check_runs, metrics, alerts, notifications.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def ts(name: str, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "check_runs",
        sa.Column("id", BigId, primary_key=True),
        sa.Column("model", sa.String(100), nullable=False),
        sa.Column("check", sa.String(100), nullable=False),
        sa.Column("kind", sa.String(40), nullable=False),
        ts("started"), ts("finished"), ts("window_start"), ts("window_end"),
        sa.Column("outcome", sa.String(20), nullable=False),
        sa.Column("sample_size", sa.Integer, nullable=False),
        sa.Column("error", sa.Text),
        sa.Column("evidence", sa.JSON),
    )
    op.create_index("ix_check_runs_model_check_started", "check_runs", ["model", "check", "started"])

    op.create_table(
        "metrics",
        sa.Column("id", BigId, primary_key=True),
        ts("time"),
        sa.Column("model", sa.String(100), nullable=False),
        sa.Column("check", sa.String(100), nullable=False),
        sa.Column("metric", sa.String(100), nullable=False),
        sa.Column("feature", sa.String(200), nullable=False, server_default=""),
        sa.Column("value", sa.Float, nullable=False),
        ts("window_start"), ts("window_end"),
        sa.Column("sample_size", sa.Integer, nullable=False),
        sa.Column("run_id", BigId, sa.ForeignKey("check_runs.id", ondelete="SET NULL")),
    )
    op.create_index("ix_metrics_model_metric_time", "metrics", ["model", "metric", "time"])

    op.create_table(
        "alerts",
        sa.Column("id", BigId, primary_key=True),
        sa.Column("model", sa.String(100), nullable=False),
        sa.Column("check", sa.String(100), nullable=False),
        sa.Column("rule", sa.String(200), nullable=False),
        sa.Column("feature", sa.String(200), nullable=False, server_default=""),
        sa.Column("severity", sa.String(20), nullable=False),
        sa.Column("state", sa.String(20), nullable=False),
        ts("started"), ts("fired", True), ts("resolved", True),
        sa.Column("last_value", sa.Float),
        sa.Column("threshold", sa.Float, nullable=False),
        sa.Column("owner", sa.String(100), nullable=False),
        sa.Column("summary", sa.Text, nullable=False, server_default=""),
        ts("updated"),
    )
    op.create_index("ix_alerts_model_state", "alerts", ["model", "state"])
    open_only = sa.text("state IN ('pending', 'firing')")
    op.create_index("uq_alerts_open_episode", "alerts", ["model", "check", "rule", "feature"], unique=True,
                    sqlite_where=open_only, postgresql_where=open_only)

    op.create_table(
        "notifications",
        sa.Column("id", BigId, primary_key=True),
        sa.Column("alert_id", BigId, sa.ForeignKey("alerts.id", ondelete="CASCADE"), nullable=False),
        sa.Column("event", sa.String(20), nullable=False),
        sa.Column("receiver", sa.String(200), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("error", sa.Text),
        ts("created"), ts("time"), ts("next_attempt"),
        sa.Column("message_id", sa.String(100)),
        sa.Column("channel_id", sa.String(100)),
        sa.Column("payload", sa.JSON, nullable=False),
    )
    op.create_index("ix_notifications_status_next", "notifications", ["status", "next_attempt"])
    op.create_index("ix_notifications_alert", "notifications", ["alert_id"])


def downgrade() -> None:
    op.drop_table("notifications")
    op.drop_table("alerts")
    op.drop_table("metrics")
    op.drop_table("check_runs")
