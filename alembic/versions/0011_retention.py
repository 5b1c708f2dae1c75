"""Retention: hourly aggregates of old metrics, and one series across both.

- ``metrics_hourly``: an hour of one series of ``metrics`` (model, check, metric, feature, model
  version): min, max, mean, count and the last value with its time, once its raw rows are past
  ``retention.raw`` (monitor/storage/retention.py).
- An index on ``metrics.run_id``: retention deletes old runs, and each sets its metrics' ``run_id`` null.
- The view ``metrics_series``: the raw rows and the hourly ones (at the hour's start, the mean as the
  value), with ``resolution`` 'raw' or 'hourly', so that a dashboard's query reads across the boundary.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

SERIES = """
CREATE VIEW metrics_series AS
SELECT time, model, "check", metric, feature, model_version, value, 'raw' AS resolution FROM metrics
UNION ALL
SELECT hour AS time, model, "check", metric, feature, model_version, mean AS value, 'hourly' AS resolution
FROM metrics_hourly
"""


def upgrade() -> None:
    op.create_table(
        "metrics_hourly",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("hour", sa.DateTime(timezone=True), nullable=False),
        sa.Column("model", sa.String(100), nullable=False),
        sa.Column("check", sa.String(100), nullable=False),
        sa.Column("metric", sa.String(100), nullable=False),
        sa.Column("feature", sa.String(200), nullable=False, server_default=""),
        sa.Column("model_version", sa.String(100), nullable=False, server_default=""),
        sa.Column("min", sa.Float(), nullable=False),
        sa.Column("max", sa.Float(), nullable=False),
        sa.Column("mean", sa.Float(), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("last", sa.Float(), nullable=False),
        sa.Column("last_time", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("model", "check", "metric", "feature", "model_version", "hour", name="uq_metrics_hourly_series_hour"),
    )
    op.create_index("ix_metrics_hourly_hour", "metrics_hourly", ["hour"])
    # A run deleted by retention sets its metrics' run_id to null: without an index, a scan of metrics each.
    op.create_index("ix_metrics_run_id", "metrics", ["run_id"])
    op.execute(SERIES)


def downgrade() -> None:
    op.execute("DROP VIEW metrics_series")
    op.drop_index("ix_metrics_run_id", table_name="metrics")
    op.drop_index("ix_metrics_hourly_hour", table_name="metrics_hourly")
    op.drop_table("metrics_hourly")
