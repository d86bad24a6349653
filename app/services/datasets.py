"""Dataset versions: a snapshot of a campaign's label revisions, exported (app.exports) as Azure ML AutoML
object-detection JSONL plus an MLTable, registered as Azure ML data assets, and exportable as COCO."""
from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone

from sqlalchemy import func, select, text

from app import jobs
from app.auth.policy import Caller
from app.azureml import RegistrationRefused, datastore_uri, register_dataset
from app.errors import Conflict, NotFound, WorkInterrupted
from app.exports import automl, coco
from app.extensions import db
from app.models import Campaign, Dataset, DatasetImage, Image
from app.services import audit
from app.services.failures import record_failure
from app.services.lookup import get_or_404
from app.state import app_state
from app.storage import SignedUrl
from app.unit_of_work import unit_of_work
from app.webhooks import service as webhooks

logger = logging.getLogger(__name__)

FILES = ("annotations.jsonl", "MLTable")


def asset_base(campaign: Campaign) -> str:
    """The campaign's Azure ML asset name and folder: its title in letters, digits, '-' and '_' (starting with a
    letter or digit), then its id, so two titles that read alike ("collide 1", "collide_1") never share one."""
    title = re.sub(r"[^A-Za-z0-9_-]+", "_", campaign.title).strip("_-") or "campaign"
    return f"{title[:190]}_{campaign.id}"


def _campaign(campaign_id: int, *, for_update: bool = False) -> Campaign:
    return get_or_404(Campaign, campaign_id, "campaign", for_update=for_update)


def create_version(campaign_id: int, *, created_by: Caller | None) -> Dataset:
    """Snapshot the campaign's current labels as the next version and defer its build, in one transaction."""
    campaign = _campaign(campaign_id, for_update=True)
    if campaign.status not in ("completed", "finished"):
        raise Conflict(f"campaign {campaign_id} is {campaign.status}: datasets are built from completed or "
                       "finished campaigns", current_status=campaign.status)
    return _new_version(campaign, created_by.owner_name if created_by else None)


def on_campaign_finished(campaign: Campaign) -> None:
    """Called inside the transaction that finishes a campaign."""
    _new_version(campaign, None)


def _new_version(campaign: Campaign, created_by: str | None) -> Dataset:
    version = (db.session.scalar(select(func.max(Dataset.version)).where(Dataset.campaign_id == campaign.id)) or 0) + 1
    base = asset_base(campaign)
    dataset = Dataset(campaign_id=campaign.id, version=version, name=base, status="pending", created_by=created_by,
                      folder=f"datasets/{base}/{version}")
    db.session.add(dataset)
    db.session.flush()
    db.session.execute(text(
        "INSERT INTO dataset_images (dataset_id, image_id, revision_id) "
        "SELECT :dataset, image_id, current_revision_id FROM campaign_images "
        "WHERE campaign_id = :campaign AND current_revision_id IS NOT NULL"),
        {"dataset": dataset.id, "campaign": campaign.id})
    _defer_build(dataset)
    logger.info("dataset version created", extra={"campaign_id": campaign.id, "version": version})
    return dataset


def _defer_build(dataset: Dataset) -> None:
    jobs.defer("build_dataset", lock=f"dataset:{dataset.id}", dataset_id=dataset.id)


def get(campaign_id: int, version: int) -> Dataset:
    _campaign(campaign_id)
    dataset = db.session.scalar(select(Dataset).where(Dataset.campaign_id == campaign_id, Dataset.version == version))
    if dataset is None:
        raise NotFound(f"campaign {campaign_id} has no dataset version {version}")
    return dataset


def list_versions(campaign_id: int) -> list[Dataset]:
    _campaign(campaign_id)
    return list(db.session.scalars(select(Dataset).where(Dataset.campaign_id == campaign_id)
                                   .order_by(Dataset.version.desc())))


def files(dataset: Dataset) -> list[tuple[str, SignedUrl]]:
    """Read URLs of the exported files (none before the export)."""
    if not dataset.date_exported:
        return []
    state = app_state()
    ttl = timedelta(minutes=state.settings.image_read_token_minutes)
    return [(name, state.storage.image_read_url(f"{dataset.folder}/{name}", ttl)) for name in FILES]


def coco_export(campaign_id: int, version: int | None) -> Iterator[str]:
    """A version's labels, or the campaign's current ones, as streamed COCO."""
    if version is not None:
        return coco.coco_chunks(dataset_id=get(campaign_id, version).id)
    _campaign(campaign_id)
    return coco.coco_chunks(campaign_id=campaign_id)


def retry(campaign_id: int, version: int) -> Dataset:
    dataset = get(campaign_id, version)
    if dataset.status != "failed":
        raise Conflict(f"dataset version {version} is {dataset.status}: only a failed version is retried",
                       current_status=dataset.status)
    dataset.status, dataset.error = "pending", None
    _defer_build(dataset)
    return dataset


# --- building (the build_dataset job) --------------------------------------------------------------

def build(dataset_id: int, *, should_stop: Callable[[], bool] = lambda: False) -> None:
    """Export the files, then register them when Azure ML is configured; each step is its own unit of work.
    Idempotent: a re-run rewrites the same bytes and re-registers the same versions. Asked to stop, it gives
    up before registering."""
    state = app_state()
    settings = state.settings
    with unit_of_work():
        dataset = db.session.get(Dataset, dataset_id)
        if dataset is None or dataset.status == "registered":
            return
        digest, images, objects = automl.upload_annotations(dataset, state.storage, image_url_prefix(settings))
        state.storage.upload_bytes(f"{dataset.folder}/MLTable", automl.MLTABLE.encode())
        dataset.annotations_sha256, dataset.image_count, dataset.object_count = digest, images, objects
        if dataset.status != "exported":  # a re-run after the export (registration failed) tells nothing new
            webhooks.emit("dataset.exported", _event(dataset, "exported"))
            audit.record("status", "dataset", dataset_id, {"status": dataset.status}, {"status": "exported"})
        dataset.status, dataset.date_exported, dataset.error = "exported", datetime.now(timezone.utc), None
    logger.info("dataset exported", extra={"dataset_id": dataset_id, "images": images, "objects": objects})
    if not settings.azure_ml_configured:
        return
    if should_stop():
        raise WorkInterrupted(f"dataset {dataset_id} was exported; registration was stopped")
    with unit_of_work():  # what to register, read first: no transaction stays open while Azure ML answers
        dataset = db.session.get(Dataset, dataset_id)
        asset = dict(name=dataset.name, version=dataset.version, labels_folder=dataset.folder,
                     images_folder=_images_folder(dataset), campaign_id=dataset.campaign_id, annotations_sha256=digest,
                     description=f"Labels of campaign {dataset.campaign.title!r} (id {dataset.campaign_id}), version "
                                 f"{dataset.version}: {images} images, {objects} objects")
    labels_id, images_id = register_dataset(settings, credential=state.azureml_credential, **asset)
    with unit_of_work():
        dataset = db.session.get(Dataset, dataset_id)
        dataset.azureml_labels_id, dataset.azureml_images_id = labels_id, images_id
        audit.record("status", "dataset", dataset_id, {"status": dataset.status}, {"status": "registered"})
        dataset.status, dataset.date_registered = "registered", datetime.now(timezone.utc)
        webhooks.emit("dataset.registered", _event(dataset, "registered"))
    logger.info("dataset registered", extra={"dataset_id": dataset_id})


def mark_failed(dataset_id: int, exc: BaseException) -> None:
    """The build gave up (or Azure ML refused for good): the version shows why; POST retry builds it again."""
    record_failure(Dataset, dataset_id, exc, applies=lambda d: d.status != "registered", audited_as="dataset",
                   detail=str(exc) if isinstance(exc, RegistrationRefused) else None,
                   on_failed=lambda d: webhooks.emit("dataset.failed", {**_event(d, "failed"), "error": d.error}))


def _event(dataset: Dataset, status: str) -> dict:
    """What a dataset event tells: which version of which campaign, now in `status`."""
    return {"dataset_id": dataset.id, "campaign_id": dataset.campaign_id, "version": dataset.version,
            "name": dataset.name, "status": status}


def _images_folder(dataset: Dataset) -> str:
    """The common folder of the version's images (their image sets' folder, or the whole image folder)."""
    settings = app_state().settings
    folders = db.session.scalars(select(func.distinct(func.regexp_replace(Image.blobstorage_path, "/[^/]*$", "")))
                                 .join(DatasetImage, DatasetImage.image_id == Image.id)
                                 .where(DatasetImage.dataset_id == dataset.id).limit(2)).all()
    return folders[0] if len(folders) == 1 else settings.azure_storage_imageset_folder.strip("/")


def image_url_prefix(settings) -> str:
    """The long-form datastore URI (the short azureml://datastores/... form resolves to nothing offline);
    without a workspace configured only the short form can be written."""
    if settings.azure_ml_configured:
        return datastore_uri(settings, "")
    return f"azureml://datastores/{settings.azure_ml_datastore}/paths/"


