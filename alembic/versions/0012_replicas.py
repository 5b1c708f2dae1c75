"""Replicas: several daemons on one PostgreSQL share the work.

- ``replicas``: one row per running daemon (its id, host, pid, start and last heartbeat), so that a
  delivery another replica has in hand is told from one a dead replica left in doubt.
- ``check_leases``: one row per scheduled job (a check ``model/check``, or a daemon job such as
  ``daemon:repeats``): when it is next due across the fleet and which replica last took it. A replica
  takes a run by locking the row (``FOR UPDATE SKIP LOCKED``) and moving ``next_due`` on; ``spec`` is
  the fingerprint of the check as last taken, so an edited check runs at once after a reload;
  ``recorded`` when the last recorded run began (the schedule watch reads it).
- ``notifications.claimed_by``: the replica that claimed a delivery (``sending``).
- ``ingest_stats`` and ``samples`` gain ``writer`` in their primary key: each replica writes its own
  counts, sketch and reservoir of a minute, and readers add them up (counts stay exact whichever
  replica a load balancer sends a request to). Rows written before are the writer ``''``.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07
"""

import warnings

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

INGEST_KEYS = {"ingest_stats": ["model", "minute"], "samples": ["model", "minute", "slot"]}


def _rekey(table: str, keys: list[str]) -> None:
    """Set the primary key of ``table`` to ``keys`` (SQLite: by copying the table, Alembic's batch mode)."""
    if op.get_bind().dialect.name == "sqlite":
        # The copy is made from the table as reflected, with its old key, which SQLAlchemy warns is
        # replaced: that replacement is what this asks for.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "Table '_alembic_tmp_.*primary_key", sa.exc.SAWarning)
            with op.batch_alter_table(table, recreate="always") as batch:
                batch.create_primary_key(f"pk_{table}", keys)
        return
    name = op.get_bind().execute(
        sa.text("SELECT conname FROM pg_constraint WHERE conrelid = CAST(:table AS regclass) AND contype = 'p'"),
        {"table": table},
    ).scalar_one()
    op.drop_constraint(name, table, type_="primary")
    op.create_primary_key(f"pk_{table}", table, keys)


def upgrade() -> None:
    op.create_table(
        "replicas",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer, nullable=False),
        sa.Column("started", sa.DateTime(timezone=True), nullable=False),
        sa.Column("seen", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "check_leases",
        sa.Column("job", sa.String(220), primary_key=True),
        sa.Column("next_due", sa.DateTime(timezone=True), nullable=False),
        sa.Column("holder", sa.String(64)),
        sa.Column("taken", sa.DateTime(timezone=True)),
        sa.Column("spec", sa.String(32)),
        sa.Column("recorded", sa.DateTime(timezone=True)),
    )
    with op.batch_alter_table("notifications") as batch:
        batch.add_column(sa.Column("claimed_by", sa.String(64)))
    for table, keys in INGEST_KEYS.items():
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("writer", sa.String(64), nullable=False, server_default=""))
        _rekey(table, [*keys[:2], "writer", *keys[2:]])


def downgrade() -> None:
    # Going back folds each minute's writers into one row: the counts add up; one writer's sample and
    # latency sketch are kept (a sketch of JSON buckets is not merged in SQL).
    conn = op.get_bind()
    stats = sa.table("ingest_stats", *(sa.column(c) for c in ("model", "minute", "writer", "accepted", "rejected", "labels")))
    rows = conn.execute(
        sa.select(stats.c.model, stats.c.minute, sa.func.sum(stats.c.accepted), sa.func.sum(stats.c.rejected),
                  sa.func.sum(stats.c.labels), sa.func.min(stats.c.writer))
        .group_by(stats.c.model, stats.c.minute).having(sa.func.count() > 1)
    ).all()  # fmt: skip
    for model, minute, accepted, rejected, labels, kept in rows:
        where = sa.and_(stats.c.model == model, stats.c.minute == minute)
        samples = sa.table("samples", sa.column("model"), sa.column("minute"), sa.column("writer"))
        conn.execute(sa.delete(samples).where(samples.c.model == model, samples.c.minute == minute, samples.c.writer != kept))
        conn.execute(sa.delete(stats).where(where, stats.c.writer != kept))
        conn.execute(sa.update(stats).where(where).values(accepted=accepted, rejected=rejected, labels=labels))
    for table, keys in INGEST_KEYS.items():
        _rekey(table, keys)
        with op.batch_alter_table(table) as batch:
            batch.drop_column("writer")
    with op.batch_alter_table("notifications") as batch:
        batch.drop_column("claimed_by")
    op.drop_table("check_leases")
    op.drop_table("replicas")
