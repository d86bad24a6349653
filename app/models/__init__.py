"""SQLAlchemy models. Import every model module here so Alembic sees the whole schema."""
from app.models.keys import ApiKey, Principal  # noqa: F401
