"""Dataset versions: a snapshot of a campaign's label revisions, exported as Azure ML AutoML object-detection
JSONL plus an MLTable, registered as Azure ML data assets, and exportable as COCO.

Exports stream: rows come from the database in pages and go to blob storage (or the HTTP response) as
they are made, so memory stays flat whatever the size. The same snapshot always gives the same bytes.
"""
from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone

from flask import current_app
from sqlalchemy import func, select, text

from app import jobs
from app.azureml import RegistrationRefused, datastore_uri
from app.auth import Caller
from app.errors import Conflict, NotFound, WorkInterrupted
from app.extensions import db
from app.logs import redact
from app.models import Campaign, CampaignImage, Dataset, DatasetImage, Image, LabelObject
from app.services import campaigns

logger = logging.getLogger(__name__)

MLTABLE = """\
type: mltable
paths:
  - file: ./annotations.jsonl
transformations:
  - read_json_lines:
      encoding: utf8
      invalid_lines: error
      include_path_column: false
  - convert_column_types:
      - columns: image_url
        column_type: stream_info
"""


def asset_base(title: str) -> str:
    """Azure ML asset names: letters, digits, '-' and '_', starting with a letter or digit."""
    base = re.sub(r"[^A-Za-z0-9_-]+", "_", title).strip("_-") or "campaign"
    return base[:200]


def create_version(campaign_id: int, *, created_by: Caller | None) -> Dataset:
    """Snapshot the campaign's current labels as the next version and defer its build, in one transaction."""
    from app.jobs.tasks import build_dataset

    campaign = campaigns.get(campaign_id, for_update=True)
    if campaign.status not in ("completed", "finished"):
        raise Conflict(f"campaign {campaign_id} is {campaign.status}: datasets are built from completed or "
                       "finished campaigns", current_status=campaign.status)
    return _new_version(campaign, created_by.owner_name if created_by else None, build_dataset)


def on_campaign_finished(campaign: Campaign) -> None:
    """Called inside the transaction that finishes a campaign."""
    from app.jobs.tasks import build_dataset

    _new_version(campaign, None, build_dataset, commit=False)


def _new_version(campaign: Campaign, created_by: str | None, task, commit: bool = True) -> Dataset:
    version = (db.session.scalar(select(func.max(Dataset.version)).where(Dataset.campaign_id == campaign.id)) or 0) + 1
    base = asset_base(campaign.title)
    dataset = Dataset(campaign_id=campaign.id, version=version, name=base, status="pending", created_by=created_by,
                      folder=f"datasets/{base}/{version}")
    db.session.add(dataset)
    db.session.flush()
    db.session.execute(text(
        "INSERT INTO dataset_images (dataset_id, image_id, revision_id) "
        "SELECT :dataset, image_id, current_revision_id FROM campaign_images "
        "WHERE campaign_id = :campaign AND current_revision_id IS NOT NULL"),
        {"dataset": dataset.id, "campaign": campaign.id})
    jobs.defer(task, configure={"lock": f"dataset:{dataset.id}"}, dataset_id=dataset.id)
    if commit:
        db.session.commit()
    logger.info("dataset version created", extra={"campaign_id": campaign.id, "version": version})
    return dataset


def get(campaign_id: int, version: int) -> Dataset:
    campaigns.get(campaign_id)
    dataset = db.session.scalar(select(Dataset).where(Dataset.campaign_id == campaign_id, Dataset.version == version))
    if dataset is None:
        raise NotFound(f"campaign {campaign_id} has no dataset version {version}")
    return dataset


def list_versions(campaign_id: int) -> list[Dataset]:
    campaigns.get(campaign_id)
    return list(db.session.scalars(select(Dataset).where(Dataset.campaign_id == campaign_id)
                                   .order_by(Dataset.version.desc())))


def retry(campaign_id: int, version: int) -> Dataset:
    from app.jobs.tasks import build_dataset

    dataset = get(campaign_id, version)
    if dataset.status != "failed":
        raise Conflict(f"dataset version {version} is {dataset.status}: only a failed version is retried",
                       current_status=dataset.status)
    dataset.status, dataset.error = "pending", None
    jobs.defer(build_dataset, configure={"lock": f"dataset:{dataset.id}"}, dataset_id=dataset.id)
    db.session.commit()
    return dataset


# --- building ------------------------------------------------------------------------------------

def build(dataset_id: int, *, should_stop: Callable[[], bool] = lambda: False) -> None:
    """Export the files, then register them when Azure ML is configured. Idempotent: a re-run rewrites the
    same bytes and re-registers the same versions. Asked to stop, it gives up before registering."""
    state = current_app.extensions["label_store"]
    dataset = db.session.get(Dataset, dataset_id)
    if dataset is None or dataset.status == "registered":
        return
    settings = state.settings
    digest, images, objects = _upload_annotations(dataset, state.storage, image_url_prefix(settings))
    state.storage.upload_bytes(f"{dataset.folder}/MLTable", MLTABLE.encode())
    dataset.annotations_sha256, dataset.image_count, dataset.object_count = digest, images, objects
    dataset.status, dataset.date_exported, dataset.error = "exported", datetime.now(timezone.utc), None
    db.session.commit()
    logger.info("dataset exported", extra={"dataset_id": dataset_id, "images": images, "objects": objects})
    if not settings.azure_ml_configured:
        return
    if should_stop():
        raise WorkInterrupted(f"dataset {dataset_id} was exported; registration was stopped")
    from app.azureml import register_dataset

    labels_id, images_id = register_dataset(
        settings, name=dataset.name, version=dataset.version, labels_folder=dataset.folder,
        images_folder=_images_folder(dataset), campaign_id=dataset.campaign_id, annotations_sha256=digest,
        description=f"Labels of campaign {dataset.campaign.title!r} (id {dataset.campaign_id}), version "
                    f"{dataset.version}: {images} images, {objects} objects")
    dataset.azureml_labels_id, dataset.azureml_images_id = labels_id, images_id
    dataset.status, dataset.date_registered = "registered", datetime.now(timezone.utc)
    db.session.commit()
    logger.info("dataset registered", extra={"dataset_id": dataset_id})


def mark_failed(dataset_id: int, exc: BaseException) -> None:
    db.session.rollback()
    dataset = db.session.get(Dataset, dataset_id)
    if dataset is not None and dataset.status != "registered":
        dataset.status = "failed"
        dataset.error = redact(str(exc) if isinstance(exc, RegistrationRefused) else
                               f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")[:1000]
        db.session.commit()


def _images_folder(dataset: Dataset) -> str:
    """The common folder of the version's images (their image sets' folder, or the whole image folder)."""
    settings = current_app.extensions["label_store"].settings
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


def _upload_annotations(dataset: Dataset, storage, prefix: str) -> tuple[str, int, int]:
    digest = hashlib.sha256()
    counts = {"images": 0, "objects": 0}

    def lines() -> Iterator[bytes]:
        for image, objects in snapshot_rows(dataset_id=dataset.id):
            counts["images"] += 1
            counts["objects"] += len(objects)
            line = (jsonl_line(image, objects, prefix) + "\n").encode()
            digest.update(line)
            yield line

    storage.upload_stream(f"{dataset.folder}/annotations.jsonl", lines())
    return digest.hexdigest(), counts["images"], counts["objects"]


def jsonl_line(image, objects, prefix: str) -> str:
    """One AutoML-for-images object-detection line: corners normalised to [0, 1], top-left then bottom-right."""
    width, height = image.width, image.height
    labels = [{"label": o.label, "topX": _unit(o.box_xmin / width), "topY": _unit(o.box_ymin / height),
               "bottomX": _unit(o.box_xmax / width), "bottomY": _unit(o.box_ymax / height), "isCrowd": 0}
              for o in objects]
    return json.dumps({"image_url": prefix + image.blobstorage_path,
                       "image_details": {"format": image.filetype, "width": width, "height": height},
                       "label": labels}, ensure_ascii=False, separators=(",", ":"))


def _num(value: float) -> str:
    """A JSON number as json.dumps writes it (integers without a trailing .0)."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _unit(value: float) -> float:
    return round(min(1.0, max(0.0, value)), 6)


def _pairs_sql(dataset_id: int | None, campaign_id: int | None) -> tuple[str, dict]:
    if dataset_id is not None:
        return "SELECT image_id, revision_id FROM dataset_images WHERE dataset_id = :owner", {"owner": dataset_id}
    return ("SELECT image_id, current_revision_id AS revision_id FROM campaign_images "
            "WHERE campaign_id = :owner AND current_revision_id IS NOT NULL", {"owner": campaign_id})


@dataclass(frozen=True)
class ImageRow:
    id: int
    blobstorage_path: str
    filetype: str
    width: int
    height: int


def snapshot_rows(*, dataset_id: int | None = None, campaign_id: int | None = None,
                  with_objects: bool = True) -> Iterator[tuple[ImageRow, list]]:
    """(image, [objects]) in image id order: a version's snapshot, or a campaign's current labels.

    One query streamed through a server-side cursor and grouped as it comes: memory holds one image's
    objects at a time, however large the campaign."""
    pairs, params = _pairs_sql(dataset_id, campaign_id)
    objects = ("LEFT JOIN objects o ON o.revision_id = p.revision_id" if with_objects else "")
    columns = ", o.label, o.box_xmin, o.box_xmax, o.box_ymin, o.box_ymax" if with_objects else ""
    order = ", o.id" if with_objects else ""
    query = text(f"SELECT i.id, i.blobstorage_path, i.filetype, i.width, i.height{columns} FROM ({pairs}) p "
                 f"JOIN images i ON i.id = p.image_id {objects} ORDER BY i.id{order}")
    result = db.session.execute(query, params, execution_options={"stream_results": True, "max_row_buffer": 5000})
    current, found = None, []
    for row in result:
        if current is None or row[0] != current.id:
            if current is not None:
                yield current, found
            current, found = ImageRow(*row[:5]), []
        if with_objects and row[5] is not None:
            found.append(_Box(*row[5:]))
    if current is not None:
        yield current, found


@dataclass(frozen=True)
class _Box:
    label: str
    box_xmin: float
    box_xmax: float
    box_ymin: float
    box_ymax: float


def _buffered(pieces: Iterator[str], size: int = 64 * 1024) -> Iterator[str]:
    """Fewer, larger chunks for the response (each chunk costs a trip through the ASGI bridge)."""
    buffer, length = [], 0
    for piece in pieces:
        buffer.append(piece)
        length += len(piece)
        if length >= size:
            yield "".join(buffer)
            buffer, length = [], 0
    if buffer:
        yield "".join(buffer)


def coco_chunks(*, dataset_id: int | None = None, campaign_id: int | None = None) -> Iterator[str]:
    """A COCO detection file, streamed: categories first (one query), then images, then annotations."""
    return _buffered(_coco_pieces(dataset_id, campaign_id))


def _coco_pieces(dataset_id: int | None, campaign_id: int | None) -> Iterator[str]:
    if dataset_id is not None:
        revision_ids = select(DatasetImage.revision_id).where(DatasetImage.dataset_id == dataset_id)
    else:
        revision_ids = select(CampaignImage.current_revision_id).where(CampaignImage.campaign_id == campaign_id)
    names = db.session.scalars(select(LabelObject.label).where(LabelObject.revision_id.in_(revision_ids))
                               .distinct().order_by(LabelObject.label)).all()
    category = {name: number for number, name in enumerate(names, start=1)}
    yield '{"info":' + json.dumps({"description": "Label Store export", "version": str(dataset_id or "current")})
    yield ',"categories":' + json.dumps([{"id": i, "name": n, "supercategory": ""} for n, i in category.items()],
                                        ensure_ascii=False, separators=(",", ":"))
    yield ',"images":['
    first = True
    for image, _ in snapshot_rows(dataset_id=dataset_id, campaign_id=campaign_id, with_objects=False):
        yield ("" if first else ",") + json.dumps({"id": image.id, "file_name": image.blobstorage_path,
                                                   "width": image.width, "height": image.height},
                                                  ensure_ascii=False, separators=(",", ":"))
        first = False
    yield '],"annotations":['
    first, annotation_id = True, 0
    for image, objects in snapshot_rows(dataset_id=dataset_id, campaign_id=campaign_id):
        parts = []
        for obj in objects:  # numbers only: formatted directly, json.dumps per object costs twice as much
            annotation_id += 1
            w, h = obj.box_xmax - obj.box_xmin, obj.box_ymax - obj.box_ymin
            parts.append(f'{{"id":{annotation_id},"image_id":{image.id},"category_id":{category[obj.label]},'
                         f'"bbox":[{_num(obj.box_xmin)},{_num(obj.box_ymin)},{_num(w)},{_num(h)}],'
                         f'"area":{_num(w * h)},"iscrowd":0}}')
        if parts:
            yield ("" if first else ",") + ",".join(parts)
            first = False
    yield "]}"
