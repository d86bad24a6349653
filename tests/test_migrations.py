"""Migrations build the whole schema from nothing, undo it, and match the models."""
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from flask_migrate import downgrade, upgrade
from sqlalchemy import create_engine, inspect

from app.settings import load


def tables(url: str) -> set[str]:
    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg2://"))
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_upgrade_downgrade_upgrade_on_an_empty_database(empty_database, settings_overrides):
    from app.factory import create_app

    connexion_app = create_app(load(**{**settings_overrides, "db_connection_string": empty_database}))
    with connexion_app.app.app_context():
        upgrade()
        created = tables(empty_database)
        assert {"procrastinate_jobs", "procrastinate_workers", "api_keys", "principals"} <= created
        downgrade(revision="base")
        assert tables(empty_database) == {"alembic_version"}
        upgrade()
        assert tables(empty_database) == created


def test_models_match_migrations(app_context):
    from app.extensions import db
    from app.migrations.env_support import include_object

    with db.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"include_object": include_object, "compare_type": True})
        assert compare_metadata(context, db.metadata) == []
