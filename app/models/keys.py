from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, DateTime, ForeignKey, LargeBinary, String, Text, func
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.extensions import db

ROLES = ("admin", "image-admin", "labeler", "uploader", "reader")


class Principal(db.Model):
    """Who holds keys: a person (by email) or a device (by name)."""

    __tablename__ = "principals"
    __table_args__ = (CheckConstraint("kind IN ('user', 'device')", name="kind"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(10))
    name: Mapped[str] = mapped_column(String(254), unique=True)  # email (lower-cased) or device name
    date_created: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class ApiKey(db.Model):
    """A key pair: the public key id, and an HMAC of the secret (never the secret)."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(primary_key=True)
    key_id: Mapped[str] = mapped_column(String(100), unique=True)  # LabelAPI allowed up to 100 characters
    secret_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    # A key imported from LabelAPI: its bcrypt hash, until its first good request stores our HMAC instead
    legacy_secret_hash: Mapped[bytes | None] = mapped_column(LargeBinary)
    previous_secret_hash: Mapped[bytes | None] = mapped_column(LargeBinary(32))
    previous_secret_valid_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    principal_id: Mapped[int] = mapped_column(ForeignKey("principals.id", ondelete="CASCADE"), index=True)
    # Who minted it (an admin through the keys API, an image-admin creating a campaign); null: the service itself
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("principals.id", ondelete="SET NULL"))
    roles: Mapped[list[str]] = mapped_column(ARRAY(Text))
    description: Mapped[str | None] = mapped_column(Text)
    date_created: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    principal: Mapped[Principal] = relationship(foreign_keys=[principal_id], lazy="joined", innerjoin=True)
    created_by: Mapped[Principal | None] = relationship(foreign_keys=[created_by_id], lazy="joined")
    imageset_links: Mapped[list["ApiKeyImageSet"]] = relationship(lazy="selectin", cascade="all, delete-orphan")  # noqa: F821

    campaign_links: Mapped[list["ApiKeyCampaign"]] = relationship(lazy="selectin", cascade="all, delete-orphan")  # noqa: F821

    @property
    def campaign_ids(self) -> list[int]:
        return sorted(link.campaign_id for link in self.campaign_links)

    @property
    def imageset_ids(self) -> list[int]:
        return sorted(link.imageset_id for link in self.imageset_links)
