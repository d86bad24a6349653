"""Job queue: procrastinate's schema (tables, functions, triggers) for background work.

Taken from the pinned procrastinate package's schema.sql, so it matches the version we run. When
procrastinate is upgraded, add a revision that applies its migration scripts for the versions crossed.

Revision ID: 0001
Revises:
Create Date: 2026-11-21
"""
from alembic import op
from procrastinate.schema import SchemaManager

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade():
    op.execute(SchemaManager.get_schema())


def downgrade():
    # Drop everything procrastinate created: tables (with their triggers), functions, then types.
    op.execute("""
        DO $$
        DECLARE r record;
        BEGIN
          FOR r IN SELECT tablename FROM pg_tables WHERE schemaname = current_schema() AND tablename LIKE 'procrastinate%' LOOP
            EXECUTE format('DROP TABLE IF EXISTS %I CASCADE', r.tablename);
          END LOOP;
          FOR r IN SELECT p.oid::regprocedure AS sig FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
                   WHERE n.nspname = current_schema() AND p.proname LIKE 'procrastinate%' LOOP
            EXECUTE format('DROP FUNCTION IF EXISTS %s CASCADE', r.sig);
          END LOOP;
          FOR r IN SELECT typname FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
                   WHERE n.nspname = current_schema() AND typname LIKE 'procrastinate%' AND typtype IN ('e', 'c') LOOP
            EXECUTE format('DROP TYPE IF EXISTS %I CASCADE', r.typname);
          END LOOP;
        END $$;
    """)
