from __future__ import annotations

from datetime import datetime

from sqlalchemy import (BigInteger, CheckConstraint, DateTime, Double, ForeignKey, Index, Integer, String, Text,
                        func, text)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.extensions import db
from app.models.keys import Principal

IMAGESET_STATUSES = ("created", "finishing", "finished", "failed", "deleting")
# active: listed; retired: hidden, blobs kept while a dataset holds it; deleting: a job removes it (app.services.deletion)
IMAGE_STATUSES = ("active", "retired", "deleting")
OUTCOMES = ("accepted", "duplicate", "rejected", "failed")
SOURCES = ("dropbox", "upload", "url")


class ImageSet(db.Model):
    __tablename__ = "image_sets"
    __table_args__ = (CheckConstraint(f"status IN {IMAGESET_STATUSES}", name="status"),
                      Index("ix_image_sets_status_id", "status", "id"))  # ?status=, and its page's total

    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(String(128), unique=True)
    status: Mapped[str] = mapped_column(String(16), default="created")
    meta_data: Mapped[dict | None] = mapped_column("metadata", JSONB)
    blobstorage_path: Mapped[str] = mapped_column(Text)  # folder of the finished images in the image container
    upload_container: Mapped[str] = mapped_column(String(63), unique=True)  # the set's upload area
    date_created: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    date_finished: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("principals.id", ondelete="SET NULL"))
    error: Mapped[str | None] = mapped_column(Text)
    # The set's validation rules (app.ingest.rules); null: the defaults from settings
    validation: Mapped[dict | None] = mapped_column(JSONB)
    # Finishing progress: total is known once the upload area is listed; the rest count report rows.
    progress_total: Mapped[int | None] = mapped_column(Integer)
    progress_accepted: Mapped[int] = mapped_column(Integer, default=0)
    progress_duplicates: Mapped[int] = mapped_column(Integer, default=0)
    progress_rejected: Mapped[int] = mapped_column(Integer, default=0)
    progress_failed: Mapped[int] = mapped_column(Integer, default=0, server_default="0")

    created_by: Mapped[Principal | None] = relationship(lazy="joined")


class Image(db.Model):
    __tablename__ = "images"
    __table_args__ = (
        Index("ix_images_imageset_id_id", "imageset_id", "id"),
        Index("ix_images_date_taken", "date_taken"),
        Index("ix_images_camera", "camera_make", "camera_model"),
        # Listings show active images only: the unfiltered listing walks this index; the few hidden ones have theirs
        Index("ix_images_listed_id", "id", postgresql_where=text("status = 'active'")),
        Index("ix_images_hidden_id", "id", postgresql_where=text("status <> 'active'")),
        CheckConstraint(f"status IN {IMAGE_STATUSES}", name="status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    imageset_id: Mapped[int | None] = mapped_column(ForeignKey("image_sets.id", ondelete="SET NULL"))
    blobstorage_path: Mapped[str] = mapped_column(Text, unique=True)
    # Null only on images imported from LabelAPI until the backfill has read them (app.labelapi.backfill)
    md5: Mapped[str | None] = mapped_column(String(32), unique=True)
    type: Mapped[str | None] = mapped_column(String(64), index=True)  # ix_images_type
    meta_data: Mapped[dict | None] = mapped_column("metadata", JSONB)
    tss_id: Mapped[str | None] = mapped_column(String(64))
    filetype: Mapped[str | None] = mapped_column(String(16))
    filesize: Mapped[int | None] = mapped_column(BigInteger)
    width: Mapped[int | None] = mapped_column(Integer)
    height: Mapped[int | None] = mapped_column(Integer)
    date_taken: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    location_description: Mapped[str | None] = mapped_column(Text)
    lat: Mapped[float | None] = mapped_column(Double)
    lon: Mapped[float | None] = mapped_column(Double)
    camera_make: Mapped[str | None] = mapped_column(String(128))
    camera_model: Mapped[str | None] = mapped_column(String(128))
    exif: Mapped[dict | None] = mapped_column(JSONB)
    # Renditions stored beside the image (app.ingest.renditions): "grayscale", "thumbnail"
    renditions: Mapped[list[str]] = mapped_column(ARRAY(String(32)), default=list, server_default="{}")
    date_added: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    status: Mapped[str] = mapped_column(String(16), default="active", server_default="active")
    retired_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    imageset: Mapped[ImageSet | None] = relationship(lazy="joined")


class ImageSetMember(db.Model):
    """Which images a set holds: those finished in it and those added to it later."""

    __tablename__ = "image_set_members"

    imageset_id: Mapped[int] = mapped_column(ForeignKey("image_sets.id", ondelete="CASCADE"), primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"), primary_key=True,
                                          index=True)


class FinishReport(db.Model):
    """One row per file that reached a set, by the dropbox or a direct upload: what the ingest pipeline made of
    it. A dropbox name is unique in its set: the row is finishing's resume marker."""

    __tablename__ = "finish_reports"
    __table_args__ = (
        Index("uq_finish_reports_dropbox_name", "imageset_id", "name", unique=True,
              postgresql_where=text("source = 'dropbox'")),
        Index("ix_finish_reports_imageset_id_name_id", "imageset_id", "name", "id"),
        Index("ix_finish_reports_imageset_id_outcome_name_id", "imageset_id", "outcome", "name", "id"),
        CheckConstraint(f"outcome IN {OUTCOMES}", name="outcome"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    imageset_id: Mapped[int] = mapped_column(ForeignKey("image_sets.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(Text)
    source: Mapped[str] = mapped_column(String(16), default="dropbox", server_default="dropbox")
    outcome: Mapped[str] = mapped_column(String(16))
    image_id: Mapped[int | None] = mapped_column(ForeignKey("images.id", ondelete="SET NULL"))
    reason: Mapped[str | None] = mapped_column(Text)
    filesize: Mapped[int | None] = mapped_column(BigInteger)
    date_processed: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class ApiKeyImageSet(db.Model):
    """An uploader key's binding to an image set."""

    __tablename__ = "api_key_image_sets"

    api_key_id: Mapped[int] = mapped_column(ForeignKey("api_keys.id", ondelete="CASCADE"), primary_key=True)
    imageset_id: Mapped[int] = mapped_column(ForeignKey("image_sets.id", ondelete="CASCADE"), primary_key=True)
