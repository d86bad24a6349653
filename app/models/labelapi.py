from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, DateTime, ForeignKey, Index, Integer, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from app.extensions import db

BACKFILL_STATES = ("pending", "done", "missing", "duplicate", "unreadable")


class LabelApiImage(db.Model):
    """An image imported from LabelAPI, and what the backfill made of its blob: `pending` until read; then
    `done` (MD5, dimensions and size filled), `missing` (no blob at its path), `duplicate` (same bytes as
    `duplicate_of`; both kept, its MD5 stays null) or `unreadable` (`problem` says why)."""

    __tablename__ = "labelapi_images"
    __table_args__ = (
        CheckConstraint(f"state IN {BACKFILL_STATES}", name="state"),
        Index("ix_labelapi_images_pending", "image_id", postgresql_where=text("state = 'pending'")),
    )

    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"), primary_key=True)
    state: Mapped[str] = mapped_column(String(16), server_default="pending")
    duplicate_of: Mapped[int | None] = mapped_column(Integer)
    problem: Mapped[str | None] = mapped_column(Text)
    date_checked: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
