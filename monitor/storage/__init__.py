"""Where every value, run, alert episode and delivery is kept: SQLAlchemy tables migrated by Alembic."""
