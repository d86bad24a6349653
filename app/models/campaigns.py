from __future__ import annotations

from datetime import datetime

from sqlalchemy import (Boolean, CheckConstraint, DateTime, Double, ForeignKey, Index, Integer, String, Text,
                        UniqueConstraint, func)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.extensions import db
from app.models.keys import Principal

CAMPAIGN_STATUSES = ("created", "active", "completed", "finished", "archived")


class Campaign(db.Model):
    __tablename__ = "campaigns"
    __table_args__ = (CheckConstraint(f"status IN {CAMPAIGN_STATUSES}", name="status"),
                      Index("ix_campaigns_status_id", "status", "id"))  # ?status=, and its page's total

    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(String(128), unique=True)
    status: Mapped[str] = mapped_column(String(16), default="created")
    meta_data: Mapped[dict | None] = mapped_column("metadata", JSONB)
    label_translations: Mapped[dict | None] = mapped_column(JSONB)  # label as sent -> label stored
    labels: Mapped[list[str] | None] = mapped_column(ARRAY(Text))  # the taxonomy, when the campaign has one
    labeler_id: Mapped[int] = mapped_column(ForeignKey("principals.id"))
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("principals.id", ondelete="SET NULL"))
    date_created: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    date_started: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    date_completed: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    date_finished: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    date_archived: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    progress_total: Mapped[int] = mapped_column(Integer, default=0)
    progress_done: Mapped[int] = mapped_column(Integer, default=0)

    labeler: Mapped[Principal] = relationship(foreign_keys=[labeler_id], lazy="joined")
    created_by: Mapped[Principal | None] = relationship(foreign_keys=[created_by_id], lazy="joined")


class CampaignImage(db.Model):
    """An image in a campaign, and which revision of its labels is current (null: not labelled yet)."""

    __tablename__ = "campaign_images"

    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"), primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"), primary_key=True, index=True)
    current_revision_id: Mapped[int | None] = mapped_column(
        ForeignKey("label_revisions.id", ondelete="SET NULL"))
    date_added: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class LabelRevision(db.Model):
    """One submission of one image's labels in a campaign; never overwritten, so history stays answerable."""

    __tablename__ = "label_revisions"
    __table_args__ = (UniqueConstraint("campaign_id", "image_id", "revision", name="uq_label_revisions_revision"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"))
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"))
    revision: Mapped[int] = mapped_column(Integer)  # 1, 2, ... per image in the campaign
    submitted_by: Mapped[str] = mapped_column(String(254))  # owner of the key that submitted
    key_id: Mapped[str] = mapped_column(String(100))
    request_id: Mapped[str | None] = mapped_column(String(128))
    object_count: Mapped[int] = mapped_column(Integer)
    date_submitted: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class LabelObject(db.Model):
    __tablename__ = "objects"
    __table_args__ = (
        CheckConstraint("box_xmin < box_xmax AND box_ymin < box_ymax", name="box"),
        CheckConstraint("confidence IS NULL OR (confidence >= 0 AND confidence <= 1)", name="confidence"),
        Index("ix_objects_revision_id", "revision_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    revision_id: Mapped[int] = mapped_column(ForeignKey("label_revisions.id", ondelete="CASCADE"))
    campaign_id: Mapped[int] = mapped_column(Integer)
    image_id: Mapped[int] = mapped_column(Integer)
    label: Mapped[str] = mapped_column(Text)
    label_original: Mapped[str] = mapped_column(Text)
    # PostgreSQL reserves xmin/xmax as system columns, hence the prefix; the API says xmin, xmax, ...
    box_xmin: Mapped[float] = mapped_column(Double)
    box_xmax: Mapped[float] = mapped_column(Double)
    box_ymin: Mapped[float] = mapped_column(Double)
    box_ymax: Mapped[float] = mapped_column(Double)
    confidence: Mapped[float | None] = mapped_column(Double)
    is_crowd: Mapped[bool] = mapped_column(Boolean, default=False)
    date_added: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    added_by: Mapped[str] = mapped_column(String(254))


class ApiKeyCampaign(db.Model):
    """A labeler key's binding to a campaign."""

    __tablename__ = "api_key_campaigns"

    api_key_id: Mapped[int] = mapped_column(ForeignKey("api_keys.id", ondelete="CASCADE"), primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"), primary_key=True,
                                             index=True)
