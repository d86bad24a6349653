"""Shared by env.py and the tests: which database objects Alembic compares with the models."""


def include_object(obj, name, type_, reflected, compare_to):
    # procrastinate's tables are created by their own migration from the package's schema.
    return not (name or "").startswith("procrastinate")
