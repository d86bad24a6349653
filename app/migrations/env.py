"""Alembic environment: runs against the Flask app's engine, with the models' metadata."""
import logging

from alembic import context
from flask import current_app
from sqlalchemy import text

from app.migrations.env_support import include_object

logger = logging.getLogger("alembic.env")
config = context.config
db = current_app.extensions["migrate"].db
target_metadata = db.metadata


def run_migrations_online():
    with db.engine.connect() as connection:
        # Never wait forever behind a long transaction holding a lock.
        connection.execute(text("SET lock_timeout = '10s'"))
        connection.commit()
        context.configure(connection=connection, target_metadata=target_metadata,
                          include_object=include_object, compare_type=True, transaction_per_migration=True)
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    raise SystemExit("offline migrations are not supported")
run_migrations_online()
