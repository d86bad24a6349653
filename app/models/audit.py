from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, DateTime, Index, String, func
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from app.extensions import db


class AuditEntry(db.Model):
    """One change: what (action on entity/entity_id, before and after), who (key and its owner), when, and
    in which request. Written in the unit of work of the change itself, so it exists exactly when the change does."""

    __tablename__ = "audit"
    __table_args__ = (
        Index("ix_audit_entity_entity_id_id", "entity", "entity_id", "id"),  # ?entity= and ?entity=&entity_id=
        Index("ix_audit_key_id_id", "key_id", "id"),  # ?key_id=
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    action: Mapped[str] = mapped_column(String(32))
    entity: Mapped[str] = mapped_column(String(32))
    entity_id: Mapped[str] = mapped_column(String(100))  # a key's id is a string, the others integers
    key_id: Mapped[str | None] = mapped_column(String(100))  # null: the service itself (a job, the CLI)
    actor: Mapped[str | None] = mapped_column(String(254))  # the key owner's email or device name
    request_id: Mapped[str | None] = mapped_column(String(128))
    before: Mapped[dict | None] = mapped_column(JSONB)
    after: Mapped[dict | None] = mapped_column(JSONB)
