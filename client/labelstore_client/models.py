"""Typed results: one dataclass per schema of the API (app/openapi/api.yaml, components/schemas).

Each is built with `Model.from_dict(json)`: members the class does not know (a newer service) are kept in
`extra` rather than refused; date-time strings become aware datetimes. Secrets (a key's secret, SAS URLs)
are left out of repr, so printing a result never shows them."""
from __future__ import annotations

import types
import typing
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any, Optional, TypeVar, Union

M = TypeVar("M", bound="Model")


def parse_datetime(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _convert(kind: Any, value: Any) -> Any:
    if value is None:
        return None
    origin = typing.get_origin(kind)
    if origin in (Union, types.UnionType):
        options = [a for a in typing.get_args(kind) if a is not type(None)]
        return _convert(options[0], value) if len(options) == 1 else value
    if origin is list:
        (item,) = typing.get_args(kind)
        return [_convert(item, v) for v in value]
    if isinstance(kind, type) and issubclass(kind, Model):
        return kind.from_dict(value)
    if kind is datetime and isinstance(value, str):
        return parse_datetime(value)
    return value


@dataclass
class Model:
    @classmethod
    def from_dict(cls: type[M], data: dict) -> M:
        hints = typing.get_type_hints(cls)
        known = {f.name for f in fields(cls) if f.init} - {"extra"}
        values = {name: _convert(hints[name], data[name]) for name in known if name in data}
        return cls(**values, extra={k: v for k, v in data.items() if k not in known})


def _secret():
    return field(default=None, repr=False)


# --- keys ---------------------------------------------------------------------------------------------

@dataclass
class Owner(Model):
    kind: str = ""
    name: str = ""
    extra: dict = field(default_factory=dict, repr=False)


@dataclass
class Me(Model):
    key_id: str = ""
    owner: Optional[Owner] = None
    roles: list[str] = field(default_factory=list)
    campaign_ids: list[int] = field(default_factory=list)
    imageset_ids: list[int] = field(default_factory=list)
    extra: dict = field(default_factory=dict, repr=False)


@dataclass
class ApiKey(Model):
    key_id: str = ""
    owner: Optional[Owner] = None
    roles: list[str] = field(default_factory=list)
    imageset_ids: list[int] = field(default_factory=list)
    campaign_ids: list[int] = field(default_factory=list)
    description: Optional[str] = None
    created_by: Optional[str] = None
    date_created: Optional[datetime] = None
    expires_at: Optional[datetime] = None
    last_used_at: Optional[datetime] = None
    revoked_at: Optional[datetime] = None
    extra: dict = field(default_factory=dict, repr=False)


@dataclass
class ApiKeyWithSecret(ApiKey):
    apikey: str = ""
    apisecret: Optional[str] = _secret()


@dataclass
class AuditEntry(Model):
    id: int = 0
    at: Optional[datetime] = None
    action: str = ""
    entity: str = ""
    entity_id: str = ""
    key_id: Optional[str] = None
    actor: Optional[str] = None
    request_id: Optional[str] = None
    before: Optional[dict] = None
    after: Optional[dict] = None
    extra: dict = field(default_factory=dict, repr=False)


@dataclass
class Webhook(Model):
    webhook_id: int = 0
    url: str = ""
    events: list = field(default_factory=list)
    active: bool = True
    date_created: Optional[datetime] = None
    created_by: Optional[str] = None
    secret: Optional[str] = _secret()  # only in the answer that registered it
    extra: dict = field(default_factory=dict, repr=False)


@dataclass
class WebhookDelivery(Model):
    delivery_id: int = 0
    webhook_id: int = 0
    event_id: str = ""
    event_type: str = ""
    event_created_at: Optional[datetime] = None
    status: str = ""
    attempts: int = 0
    next_attempt_at: Optional[datetime] = None
    last_attempt_at: Optional[datetime] = None
    last_status: Optional[int] = None
    last_response: Optional[str] = None
    last_error: Optional[str] = None
    delivered_at: Optional[datetime] = None
    extra: dict = field(default_factory=dict, repr=False)


# --- image sets and ingest ------------------------------------------------------------------------------

@dataclass
class SetProgress(Model):
    total: Optional[int] = None
    done: int = 0
    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0
    failed: int = 0
    extra: dict = field(default_factory=dict, repr=False)


@dataclass
class ImageSet(Model):
    imageset_id: int = 0
    title: str = ""
    status: str = ""
    metadata: Optional[dict] = None
    blobstorage_path: str = ""
    date_created: Optional[datetime] = None
    date_finished: Optional[datetime] = None
    created_by: Optional[str] = None
    error: Optional[str] = None
    validation: Optional[dict] = None
    progress: Optional[SetProgress] = None
    extra: dict = field(default_factory=dict, repr=False)


@dataclass
class ImageSetWithDropbox(ImageSet):
    dropbox_url: str = _secret()  # a SAS: whoever holds it may upload into the set
    dropbox_url_expires_at: Optional[datetime] = None


@dataclass
class FileReport(Model):
    name: str = ""
    source: str = ""
    outcome: str = ""
    image_id: Optional[int] = None
    reason: Optional[str] = None
    filesize: Optional[int] = None
    extra: dict = field(default_factory=dict, repr=False)


@dataclass
class UploadResult(Model):
    name: str = ""
    outcome: str = ""
    image_id: Optional[int] = None
    duplicate_of: Optional[int] = None
    reason: Optional[str] = None
    objects: Optional[int] = None
    extra: dict = field(default_factory=dict, repr=False)


@dataclass
class UrlImport(Model):
    import_id: int = 0
    imageset_id: int = 0
    status: str = ""
    progress: Optional[SetProgress] = None
    error: Optional[str] = None
    date_created: Optional[datetime] = None
    date_finished: Optional[datetime] = None
    extra: dict = field(default_factory=dict, repr=False)


@dataclass
class UrlReport(Model):
    position: int = 0
    url: str = ""
    outcome: Optional[str] = None
    image_id: Optional[int] = None
    reason: Optional[str] = None
    http_status: Optional[int] = None
    extra: dict = field(default_factory=dict, repr=False)


# --- images ---------------------------------------------------------------------------------------------

@dataclass
class SetRef(Model):
    imageset_id: int = 0
    title: str = ""
    extra: dict = field(default_factory=dict, repr=False)


@dataclass
class Location(Model):
    description: Optional[str] = None
    lat: Optional[float] = None
    lon: Optional[float] = None
    extra: dict = field(default_factory=dict, repr=False)


@dataclass
class FileInfo(Model):
    filetype: Optional[str] = None
    filesize: Optional[int] = None
    dimensions: Optional[dict] = None
    extra: dict = field(default_factory=dict, repr=False)


@dataclass
class Image(Model):
    image_id: int = 0
    blobstorage_path: str = ""
    imageset: Optional[SetRef] = None
    date_taken: Optional[datetime] = None
    location_taken: Optional[Location] = None
    type: Optional[str] = None
    metadata: Optional[dict] = None
    tss_id: Optional[str] = None
    file: Optional[FileInfo] = None
    md5: Optional[str] = None
    exif: Optional[dict] = None
    renditions: list[str] = field(default_factory=list)
    date_added: Optional[datetime] = None
    extra: dict = field(default_factory=dict, repr=False)


@dataclass
class SignedUrl(Model):
    url: str = _secret()  # a read SAS
    expires_at: Optional[datetime] = None
    extra: dict = field(default_factory=dict, repr=False)


# --- campaigns and labels -------------------------------------------------------------------------------

@dataclass
class CampaignProgress(Model):
    total: int = 0
    done: int = 0
    extra: dict = field(default_factory=dict, repr=False)


@dataclass
class Campaign(Model):
    campaign_id: int = 0
    title: str = ""
    status: str = ""
    progress: Optional[CampaignProgress] = None
    metadata: Optional[dict] = None
    label_translations: Optional[dict] = None
    labels: Optional[list[str]] = None
    labeler_email: str = ""
    date_created: Optional[datetime] = None
    date_started: Optional[datetime] = None
    date_completed: Optional[datetime] = None
    date_finished: Optional[datetime] = None
    created_by: Optional[str] = None
    extra: dict = field(default_factory=dict, repr=False)


@dataclass
class AccessToken(Model):
    apikey: str = ""
    apisecret: Optional[str] = _secret()
    extra: dict = field(default_factory=dict, repr=False)


@dataclass
class CampaignWithToken(Campaign):
    access_token: Optional[AccessToken] = None


@dataclass
class ImageLink(Model):
    image_id: int = 0
    url: str = ""
    extra: dict = field(default_factory=dict, repr=False)


@dataclass
class Object(Model):
    object_id: int = 0
    image_id: int = 0
    campaign_id: int = 0
    label: str = ""
    label_original: str = ""
    bounding_box: Optional[dict] = None
    confidence: Optional[float] = None
    date_added: Optional[datetime] = None
    added_by: str = ""
    extra: dict = field(default_factory=dict, repr=False)


@dataclass
class ImageObjects(Model):
    image_id: int = 0
    url: str = ""
    objects: list[Object] = field(default_factory=list)
    extra: dict = field(default_factory=dict, repr=False)


@dataclass
class Revision(Model):
    revision: int = 0
    current: bool = False
    submitted_by: str = ""
    key_id: str = ""
    key_created_by: Optional[str] = None
    request_id: Optional[str] = None
    date_submitted: Optional[datetime] = None
    objects: list[Object] = field(default_factory=list)
    extra: dict = field(default_factory=dict, repr=False)


@dataclass
class Submitted(Model):
    images: int = 0
    objects: int = 0
    status: str = ""
    progress: Optional[CampaignProgress] = None
    extra: dict = field(default_factory=dict, repr=False)


# --- datasets and operations ----------------------------------------------------------------------------

@dataclass
class Dataset(Model):
    campaign_id: int = 0
    version: int = 0
    status: str = ""
    error: Optional[str] = None
    folder: str = ""
    annotations_sha256: Optional[str] = None
    image_count: Optional[int] = None
    object_count: Optional[int] = None
    azureml: Optional[dict] = None
    date_created: Optional[datetime] = None
    date_exported: Optional[datetime] = None
    date_registered: Optional[datetime] = None
    created_by: Optional[str] = None
    extra: dict = field(default_factory=dict, repr=False)


@dataclass
class DatasetFile(Model):
    name: str = ""
    url: str = _secret()  # a read SAS
    expires_at: Optional[datetime] = None
    extra: dict = field(default_factory=dict, repr=False)


@dataclass
class DatasetWithFiles(Dataset):
    files: list[DatasetFile] = field(default_factory=list)


@dataclass
class Job(Model):
    job_id: int = 0
    task: str = ""
    arguments: Optional[dict] = None
    status: str = ""
    attempts: int = 0
    queue: str = ""
    scheduled_at: Optional[datetime] = None
    last_event: Optional[str] = None
    last_event_at: Optional[datetime] = None
    extra: dict = field(default_factory=dict, repr=False)


@dataclass
class MinuteCounts(Model):
    """One minute of /monitoring/finishing or /monitoring/ingest (the latter adds `failed` and `by_source`)."""
    minute: Optional[datetime] = None
    accepted: int = 0
    duplicate: int = 0
    rejected: int = 0
    failed: int = 0
    by_source: Optional[dict] = None
    extra: dict = field(default_factory=dict, repr=False)


def as_dict(model: Model) -> dict:
    """The result as JSON-ready data, secrets included (for --json output a script asked for)."""
    out = {}
    for f in fields(model):
        value = getattr(model, f.name)
        if f.name == "extra":
            out.update(value)
            continue
        out[f.name] = _plain(value)
    return out


def _plain(value):
    if isinstance(value, Model):
        return as_dict(value)
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    return value
