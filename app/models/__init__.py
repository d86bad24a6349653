"""SQLAlchemy models. Import every model module here so Alembic sees the whole schema."""
from app.models.audit import AuditEntry  # noqa: F401
from app.models.campaigns import ApiKeyCampaign, Campaign, CampaignImage, LabelObject, LabelRevision  # noqa: F401
from app.models.datasets import Dataset, DatasetImage  # noqa: F401
from app.models.images import ApiKeyImageSet, FinishReport, Image, ImageSet, ImageSetMember  # noqa: F401
from app.models.keys import ApiKey, Principal  # noqa: F401
from app.models.ingest import FinishChunk, IngestMinute, StrayBlob, UrlImport, UrlImportItem  # noqa: F401
from app.models.labelapi import LabelApiImage  # noqa: F401
from app.models.workers import JobFailure, WorkerProcess  # noqa: F401
from app.models.webhooks import Webhook, WebhookDelivery, WebhookEvent  # noqa: F401
