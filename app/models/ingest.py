"""What the ingest pipeline keeps besides images and report rows: per-minute outcome counters, URL imports
with one row per URL, and the chunks a big set's finishing is split into."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import (BigInteger, Boolean, CheckConstraint, DateTime, ForeignKey, Index, Integer, SmallInteger,
                        String, Text, func, text)
from sqlalchemy.orm import Mapped, mapped_column

from app.extensions import db
from app.models.images import OUTCOMES

IMPORT_STATUSES = ("queued", "running", "finished", "failed")


class IngestMinute(db.Model):
    """How many files each source brought to each outcome in one minute (the ingest histogram)."""

    __tablename__ = "ingest_minutes"

    minute: Mapped[datetime] = mapped_column(DateTime(timezone=True), primary_key=True)
    source: Mapped[str] = mapped_column(String(16), primary_key=True)
    outcome: Mapped[str] = mapped_column(String(16), primary_key=True)
    count: Mapped[int] = mapped_column(BigInteger)


class UrlImport(db.Model):
    __tablename__ = "url_imports"
    __table_args__ = (CheckConstraint(f"status IN {IMPORT_STATUSES}", name="status"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    imageset_id: Mapped[int] = mapped_column(ForeignKey("image_sets.id", ondelete="CASCADE"), index=True)
    status: Mapped[str] = mapped_column(String(16), default="queued", server_default="queued")
    total: Mapped[int] = mapped_column(Integer)
    accepted: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    duplicates: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    rejected: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    failed: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    error: Mapped[str | None] = mapped_column(Text)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("principals.id", ondelete="SET NULL"))
    date_created: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    date_finished: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class UrlImportItem(db.Model):
    """One URL of an import, at its position in the list; outcome null until it has been fetched and recorded."""

    __tablename__ = "url_import_items"
    __table_args__ = (
        Index("ix_url_import_items_pending", "import_id", "position", postgresql_where=text("outcome IS NULL")),
        CheckConstraint(f"outcome IN {OUTCOMES}", name="outcome"),
    )

    import_id: Mapped[int] = mapped_column(ForeignKey("url_imports.id", ondelete="CASCADE"), primary_key=True)
    position: Mapped[int] = mapped_column(Integer, primary_key=True)
    url: Mapped[str] = mapped_column(Text)
    outcome: Mapped[str | None] = mapped_column(String(16))
    image_id: Mapped[int | None] = mapped_column(ForeignKey("images.id", ondelete="SET NULL"))
    reason: Mapped[str | None] = mapped_column(Text)
    http_status: Mapped[int | None] = mapped_column(SmallInteger)
    date_processed: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class FinishChunk(db.Model):
    """One listing page of a set's upload area: the files after `continuation_token` up to `last_name`."""

    __tablename__ = "finish_chunks"

    imageset_id: Mapped[int] = mapped_column(ForeignKey("image_sets.id", ondelete="CASCADE"), primary_key=True)
    chunk: Mapped[int] = mapped_column(Integer, primary_key=True)
    continuation_token: Mapped[str | None] = mapped_column(Text)
    last_name: Mapped[str] = mapped_column(Text)
    files: Mapped[int] = mapped_column(Integer)
    done: Mapped[bool] = mapped_column(Boolean, default=False, server_default="false")


class StrayBlob(db.Model):
    """A copy stored before its request commits (a direct upload): written and committed on a connection of
    its own just before the blob, deleted by the request's own transaction with the catalogue rows. A row
    that outlives its request (the process was killed between the two) names a blob nothing points at:
    `sweep_stray_blobs` deletes it once the row is old enough (app.services.housekeeping)."""

    __tablename__ = "stray_blobs"
    __table_args__ = (Index("ix_stray_blobs_at", "at"),)

    path: Mapped[str] = mapped_column(Text, primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
