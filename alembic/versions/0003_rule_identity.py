"""Rules keep their identity across edits; episodes say why they ended; state changes are guarded;
a classifier's score is kept beside its class.

- ``alerts.rule_key``: what an episode belongs to: the rule's ``id:`` when the file gives one, else
  the canonical form of its condition (``p99_ms>250`` and ``p99_ms > 250`` are one rule). The unique
  open-episode index moves from ``rule`` to ``rule_key``.
- ``alerts.reason``: why an episode ended other than by its condition (a removed rule, a manual close).
- ``alerts.version``: bumped by every change; an update names the version it read (compare-and-set).
- ``samples.probability``: the posted score of a classifier, beside its ``prediction``.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02
"""

import re

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

OPEN = sa.text("state IN ('pending', 'firing')")
# The condition grammar of 0.1 (monitor/alerting/conditions.py then), copied so that this revision
# keeps meaning what it meant when the code changes.
_CONDITION = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(>=|<=|==|!=|>|<)\s*([-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?)\s*(%)?\s*$")


def _canonical(text: str) -> str:
    match = _CONDITION.match(text)
    if match is None:
        return " ".join(text.split())
    number = float(match[3]) / (100.0 if match[4] else 1.0)
    return f"{match[1]} {match[2]} {number!r}"


def upgrade() -> None:
    # The partial index goes first: SQLite's batch mode copies the table, and its predicate with it
    # is not something to rely on.
    op.drop_index("uq_alerts_open_episode", table_name="alerts")
    with op.batch_alter_table("alerts") as batch:
        batch.add_column(sa.Column("rule_key", sa.String(200), nullable=False, server_default=""))
        batch.add_column(sa.Column("reason", sa.Text))
        batch.add_column(sa.Column("version", sa.Integer, nullable=False, server_default="1"))
    alerts = sa.table("alerts", sa.column("id", sa.BigInteger), sa.column("rule", sa.String), sa.column("rule_key", sa.String))
    conn = op.get_bind()
    for alert_id, rule in conn.execute(sa.select(alerts.c.id, alerts.c.rule)).all():
        conn.execute(sa.update(alerts).where(alerts.c.id == alert_id).values(rule_key=_canonical(rule)))
    op.create_index("uq_alerts_open_episode", "alerts", ["model", "check", "rule_key", "feature"], unique=True,
                    sqlite_where=OPEN, postgresql_where=OPEN)
    with op.batch_alter_table("samples") as batch:
        batch.add_column(sa.Column("probability", sa.Float))


def downgrade() -> None:
    with op.batch_alter_table("samples") as batch:
        batch.drop_column("probability")
    op.drop_index("uq_alerts_open_episode", table_name="alerts")
    with op.batch_alter_table("alerts") as batch:
        batch.drop_column("version")
        batch.drop_column("reason")
        batch.drop_column("rule_key")
    op.create_index("uq_alerts_open_episode", "alerts", ["model", "check", "rule", "feature"], unique=True,
                    sqlite_where=OPEN, postgresql_where=OPEN)
