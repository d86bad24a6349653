from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, DateTime, ForeignKey, Index, Integer, String, Text, UniqueConstraint, func
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.extensions import db
from app.models.campaigns import Campaign

DATASET_STATUSES = ("pending", "exported", "registered", "failed")


class Dataset(db.Model):
    """A dataset version: an immutable snapshot of a campaign's labels, exported and registered."""

    __tablename__ = "datasets"
    __table_args__ = (
        UniqueConstraint("campaign_id", "version", name="uq_datasets_campaign_id_version"),
        CheckConstraint(f"status IN {DATASET_STATUSES}", name="status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(255))  # base of the Azure ML asset names
    status: Mapped[str] = mapped_column(String(16), default="pending")
    error: Mapped[str | None] = mapped_column(Text)
    folder: Mapped[str] = mapped_column(Text)  # blob folder holding annotations.jsonl and MLTable
    annotations_sha256: Mapped[str | None] = mapped_column(String(64))
    image_count: Mapped[int | None] = mapped_column(Integer)
    object_count: Mapped[int | None] = mapped_column(Integer)
    azureml_labels_id: Mapped[str | None] = mapped_column(Text)
    azureml_images_id: Mapped[str | None] = mapped_column(Text)
    created_by: Mapped[str | None] = mapped_column(String(254))
    date_created: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    date_exported: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    date_registered: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    campaign: Mapped[Campaign] = relationship(lazy="joined")


class DatasetImage(db.Model):
    """The snapshot: which revision of each image's labels the version holds (revisions never change)."""

    __tablename__ = "dataset_images"
    __table_args__ = (Index("ix_dataset_images_image_id", "image_id"),)  # which versions hold an image

    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"), primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"), primary_key=True)
    revision_id: Mapped[int] = mapped_column(ForeignKey("label_revisions.id", ondelete="CASCADE"))
