"""Alembic's entry: migrates the database the daemon is configured for.

``monitor db upgrade`` and the daemon hand over an open connection; run by hand, Alembic takes the URL
from ``-x url=...`` or from the MONITOR_DATABASE_URL environment variable.
"""

import os

from alembic import context
from monitor.storage.db import create_engine
from monitor.storage.tables import Base

config = context.config
connection = config.attributes.get("connection")  # from `monitor db upgrade` and the daemon
if connection is not None:
    context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    url = context.get_x_argument(as_dictionary=True).get("url") or os.environ.get("MONITOR_DATABASE_URL")
    if not url:
        raise SystemExit("no database URL: run `monitor db upgrade --config config.yaml`, or set MONITOR_DATABASE_URL")
    engine = create_engine(url)
    with engine.connect() as conn:
        context.configure(connection=conn, target_metadata=Base.metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()
