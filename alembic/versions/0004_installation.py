"""Each database knows which installation it is: a one-row ``installation`` table with a random id.

Delivery keys (the key a Slack message carries in its metadata, looked up after a crash) were made of
the notification id alone, which is unique only within one database: two deployments posting to one
channel (staging and production, or a database recreated from scratch) mistook each other's messages
for their own. The id made here goes into every key. A fresh database gets one as it is created
(this revision runs on the way to head), an existing one on upgrade.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-09
"""

import uuid
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    installation = op.create_table(
        "installation",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False),
    )
    # uuid4: random, so a database recreated from nothing never gets the id of the one before it.
    op.bulk_insert(installation, [{"id": str(uuid.uuid4()), "created": datetime.now(UTC)}])


def downgrade() -> None:
    op.drop_table("installation")
