"""Deleting, retiring and archiving: the end of an image's, an image set's and a campaign's life.

An image is *held* while a campaign that is not finished holds it, or a dataset version that is pending,
exported or registered does (unless its campaign is archived): its labels or its files point at the image.
A held image is never deleted. Deleting it is refused naming what holds it; with `force` an admin *retires*
it instead: hidden from listings, its blobs kept (a dataset's files point at them) until the last holder is
archived, when a job deletes it.

Deleting is a durable job: the request marks the image or set `deleting` and defers it; the job removes the
blobs (the image and its renditions) before the rows, so a run killed anywhere finds, when run again, every
row whose blobs may remain, and completes. A set's images that belong to no other set go with it (an image
shared with another set stays; only the membership goes); so do its reports, imports, upload area and row.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone

from sqlalchemy import Integer, and_, bindparam, delete, exists, func, select, text, union, update
from sqlalchemy.dialects.postgresql import ARRAY

from app import jobs
from app.auth.policy import Caller
from app.errors import Conflict, Forbidden, WorkInterrupted
from app.extensions import db
from app.ingest import renditions as render
from app.models import (Campaign, CampaignImage, Dataset, DatasetImage, Image, ImageSet, ImageSetMember,
                        UrlImport)
from app.services import audit
from app.services.lookup import get_or_404
from app.state import app_state
from app.unit_of_work import unit_of_work

logger = logging.getLogger(__name__)

DELETE_IMAGES, DELETE_IMAGE_SET, RELEASE_RETIRED = "delete_images", "delete_image_set", "release_retired"
HOLDING_CAMPAIGNS = ("created", "active", "completed")  # a campaign not finished holds its images
HOLDING_VERSIONS = ("pending", "exported", "registered")  # a version that is (being) published holds its images
NAMED = 20  # blockers named in a refusal, at most
BATCH = 200  # images per step of a job
RENDITIONS_WAIT_SECONDS = 60  # longest wait for a renditions job working on an image being deleted


class StillBeingRendered(Exception):
    """A renditions job is writing blobs of these images: deleting now could leave its blobs behind."""


# --- what holds an image ----------------------------------------------------------------------------

@dataclass
class Blockers:
    campaigns: list[dict]
    dataset_versions: list[dict]

    def __bool__(self) -> bool:
        return bool(self.campaigns or self.dataset_versions)

    def describe(self) -> str:
        named = [f"campaign {c['campaign_id']} {c['title']!r} ({c['status']})" for c in self.campaigns]
        named += [f"dataset version {v['version']} of campaign {v['campaign_id']} {v['title']!r} ({v['status']})"
                  for v in self.dataset_versions]
        return ", ".join(named)


def _holding_versions():
    return (select(DatasetImage.image_id, Dataset.id.label("dataset_id"))
            .join(Dataset, Dataset.id == DatasetImage.dataset_id).join(Campaign, Campaign.id == Dataset.campaign_id)
            .where(Dataset.status.in_(HOLDING_VERSIONS), Campaign.status != "archived"))


def blockers(image_ids) -> Blockers:
    """What holds any of these images (a list, or a select of ids): the first NAMED campaigns and versions."""
    campaigns = db.session.execute(
        select(Campaign.id, Campaign.title, Campaign.status)
        .where(Campaign.status.in_(HOLDING_CAMPAIGNS),
               Campaign.id.in_(select(CampaignImage.campaign_id).where(CampaignImage.image_id.in_(image_ids))))
        .order_by(Campaign.id).limit(NAMED)).all()
    held_by = _holding_versions().where(DatasetImage.image_id.in_(image_ids)).subquery()
    versions = db.session.execute(
        select(Dataset.campaign_id, Campaign.title, Dataset.version, Dataset.status)
        .join(Campaign, Campaign.id == Dataset.campaign_id)
        .where(Dataset.id.in_(select(held_by.c.dataset_id)))
        .order_by(Dataset.campaign_id, Dataset.version).limit(NAMED)).all()
    return Blockers([{"campaign_id": c.id, "title": c.title, "status": c.status} for c in campaigns],
                    [{"campaign_id": v.campaign_id, "title": v.title, "version": v.version, "status": v.status}
                     for v in versions])


def held(image_ids: Iterable[int]) -> set[int]:
    """Which of these images are held."""
    ids = list(image_ids)
    if not ids:
        return set()
    by_campaign = (select(CampaignImage.image_id).join(Campaign, Campaign.id == CampaignImage.campaign_id)
                   .where(Campaign.status.in_(HOLDING_CAMPAIGNS), CampaignImage.image_id.in_(ids)))
    by_version = select(_holding_versions().where(DatasetImage.image_id.in_(ids)).subquery().c.image_id)
    return set(db.session.scalars(union(by_campaign, by_version)))


# --- the requests -----------------------------------------------------------------------------------

def _may_force(force: bool, caller: Caller) -> None:
    if force and not caller.has("admin"):
        raise Forbidden("force=true (retire instead of delete) is for admins", field="force")


def _refuse(what: str, found: Blockers) -> None:
    raise Conflict(f"{what} is held by {found.describe()}: finish those campaigns (and archive them to release "
                   "their dataset versions) first, or retire it with force=true (admins)",
                   campaigns=found.campaigns, dataset_versions=found.dataset_versions)


def delete_image(image_id: int, *, force: bool, caller: Caller) -> Image:
    """Mark the image deleting and defer the job that removes it; a held one is refused, or retired with force.
    Asking again for an image already deleting changes nothing."""
    _may_force(force, caller)
    image = get_or_404(Image, image_id, "image", for_update=True)
    if image.status == "deleting":
        return image
    found = blockers([image_id])
    if found:
        if not force:
            _refuse(f"image {image_id}", found)
        if image.status != "retired":
            _retire([image])
        return image
    audit.record("delete", "image", image_id, {"status": image.status}, {"status": "deleting"})
    image.status = "deleting"
    jobs.defer(DELETE_IMAGES, image_ids=[image_id])
    logger.info("image deleting", extra={"image_id": image_id})
    return image


def _retire(images: list[Image]) -> None:
    now = datetime.now(timezone.utc)
    for image in images:
        audit.record("retire", "image", image.id, {"status": image.status}, {"status": "retired"})
        image.status, image.retired_at = "retired", now
        logger.info("image retired", extra={"image_id": image.id})


def _only_in(imageset_id: int):
    """The set's images that belong to no other set (one being deleted too does not count)."""
    elsewhere = exists().where(ImageSetMember.image_id == Image.id, ImageSetMember.imageset_id != imageset_id,
                               ImageSet.id == ImageSetMember.imageset_id, ImageSet.status != "deleting")
    in_set = union(select(ImageSetMember.image_id).where(ImageSetMember.imageset_id == imageset_id),
                   select(Image.id).where(Image.imageset_id == imageset_id)).subquery()
    return select(Image.id).where(Image.id.in_(select(in_set.c[0])), ~elsewhere)


def delete_image_set(imageset_id: int, *, force: bool, caller: Caller) -> ImageSet:
    """Mark the set deleting and defer the job that removes it with its own images; refused while one of those is
    held (with force, an admin has those retired instead), while it is finishing or a URL import fills it."""
    _may_force(force, caller)
    image_set = get_or_404(ImageSet, imageset_id, "image set", for_update=True)
    if image_set.status == "deleting":
        return image_set
    if image_set.status == "finishing":
        raise Conflict(f"image set {imageset_id} is finishing: delete it once finishing has ended",
                       current_status=image_set.status)
    if db.session.scalar(select(exists().where(UrlImport.imageset_id == imageset_id,
                                               UrlImport.status.in_(("queued", "running"))))):
        raise Conflict(f"image set {imageset_id} is being filled by a URL import: delete it once that has ended")
    found = blockers(_only_in(imageset_id))
    if found and not force:
        _refuse(f"image set {imageset_id} (an image only it holds)", found)
    audit.record("delete", "image_set", imageset_id, {"status": image_set.status},
                 {"status": "deleting", **({"force": True} if force else {})})
    image_set.status = "deleting"
    jobs.defer(DELETE_IMAGE_SET, lock=f"image_set:{imageset_id}", imageset_id=imageset_id)
    logger.info("image set deleting", extra={"imageset_id": imageset_id})
    return image_set


def archive_campaign(campaign_id: int) -> Campaign:
    """finished -> archived: hidden from default listings; its dataset versions no longer hold images, so the
    retired images nothing else holds are deleted by a job."""
    campaign = get_or_404(Campaign, campaign_id, "campaign", for_update=True)
    if campaign.status != "finished":
        raise Conflict(f"campaign {campaign_id} is {campaign.status}: only a finished campaign is archived",
                       current_status=campaign.status, requested_status="archived")
    audit.record("archive", "campaign", campaign_id, {"status": campaign.status}, {"status": "archived"})
    campaign.status, campaign.date_archived = "archived", datetime.now(timezone.utc)
    jobs.defer(RELEASE_RETIRED, lock=f"campaign:{campaign_id}", campaign_id=campaign_id)
    logger.info("campaign archived", extra={"campaign_id": campaign_id})
    return campaign


# --- the jobs ---------------------------------------------------------------------------------------

def purge_images(image_ids: list[int], *, should_stop: Callable[[], bool] = lambda: False) -> int:
    """Remove these images where they are still marked deleting: blobs first, then rows. One held meanwhile is
    retired instead. Returns how many were removed."""
    removed = 0
    ids = sorted(set(image_ids))
    for start in range(0, len(ids), BATCH):
        if should_stop():
            raise WorkInterrupted("deleting images was stopped; the rest is deleted on retry")
        removed += _purge(ids[start:start + BATCH], should_stop)
    return removed


def _purge(ids: list[int], should_stop: Callable[[], bool]) -> int:
    with unit_of_work():
        doomed = db.session.scalars(select(Image).where(Image.id.in_(ids), Image.status == "deleting")
                                    .order_by(Image.id).with_for_update(of=Image)).all()
        keep = held(i.id for i in doomed)
        _retire([i for i in doomed if i.id in keep])  # added to a dataset version meanwhile: its files point here
        doomed = [(i.id, i.blobstorage_path) for i in doomed if i.id not in keep]
    if not doomed:
        return 0
    _wait_for_renditions([i for i, _ in doomed], should_stop)
    storage = app_state().storage
    paths = [path for _, image_path in doomed for path in
             [image_path, *(storage.rendition_path(image_path, kind.name, kind.extension)
                            for kind in render.KINDS.values())]]
    with ThreadPoolExecutor(8, thread_name_prefix="delete") as pool:
        list(pool.map(storage.delete_image, paths))  # a blob already gone is fine
    gone = [i for i, _ in doomed]
    with unit_of_work():
        campaigns = list(db.session.scalars(select(CampaignImage.campaign_id.distinct())
                                            .where(CampaignImage.image_id.in_(gone))))
        # Memberships, campaign images and their revisions and objects, dataset rows go by cascade; report rows
        # and URL import items keep their history with a null image.
        db.session.execute(delete(Image).where(Image.id.in_(gone), Image.status == "deleting"))
        _recount(campaigns)
    logger.info("images deleted", extra={"images": len(gone)})
    return len(gone)


_RENDERING = text(
    "SELECT EXISTS (SELECT 1 FROM procrastinate_jobs j WHERE j.task_name = 'make_renditions' AND j.status = 'doing' "
    "AND EXISTS (SELECT 1 FROM jsonb_array_elements_text(j.args -> 'image_ids') AS e(id) "
    "WHERE CAST(e.id AS bigint) = ANY(:ids)))").bindparams(bindparam("ids", type_=ARRAY(Integer)))


def _wait_for_renditions(ids: list[int], should_stop: Callable[[], bool]) -> None:
    """A renditions job that read these images before they were marked deleting may still write their blobs: wait
    for it. One that starts later skips them (it makes renditions of active images only)."""
    deadline = time.monotonic() + RENDITIONS_WAIT_SECONDS
    while True:
        with db.engine.connect() as conn:
            busy = conn.execute(_RENDERING, {"ids": ids}).scalar_one()
        if not busy:
            return
        if should_stop():
            raise WorkInterrupted("stopped while a renditions job works on images being deleted")
        if time.monotonic() > deadline:
            raise StillBeingRendered(f"a renditions job still works on images being deleted ({ids[0]}…); retried")
        time.sleep(0.5)


def _recount(campaign_ids: list[int]) -> None:
    if campaign_ids:
        db.session.execute(text(
            "UPDATE campaigns c SET progress_total = n.total, progress_done = n.done FROM ("
            "  SELECT c2.id, count(ci.image_id) AS total, count(ci.current_revision_id) AS done FROM campaigns c2"
            "  LEFT JOIN campaign_images ci ON ci.campaign_id = c2.id WHERE c2.id = ANY(:ids) GROUP BY c2.id) n "
            "WHERE c.id = n.id").bindparams(bindparam("ids", type_=ARRAY(Integer))), {"ids": campaign_ids})


def purge_image_set(imageset_id: int, *, should_stop: Callable[[], bool] = lambda: False) -> None:
    """Remove a set marked deleting, batch by batch: its own images (held ones retired instead), its
    memberships, uncatalogued leftovers in its folder, its upload area, then its row (reports and imports go
    with it)."""
    while True:
        if should_stop():
            raise WorkInterrupted("deleting an image set was stopped; the rest is deleted on retry")
        with unit_of_work():
            image_set = db.session.get(ImageSet, imageset_id)
            if image_set is None or image_set.status != "deleting":
                return
            batch = list(db.session.scalars(union(
                select(ImageSetMember.image_id).where(ImageSetMember.imageset_id == imageset_id)
                .order_by(ImageSetMember.image_id).limit(BATCH),
                select(Image.id).where(Image.imageset_id == imageset_id).order_by(Image.id).limit(BATCH))))
            if not batch:
                break
            own = set(db.session.scalars(_only_in(imageset_id).where(Image.id.in_(batch))))
            keep = held(own)
            _retire(db.session.scalars(select(Image).where(Image.id.in_(keep), Image.status != "retired")).all())
            doomed = sorted(own - keep)
            db.session.execute(update(Image).where(Image.id.in_(doomed), Image.status != "deleting")
                               .values(status="deleting"))
            stays = [i for i in batch if i not in doomed]  # shared with another set, or retired
            db.session.execute(delete(ImageSetMember).where(ImageSetMember.imageset_id == imageset_id,
                                                            ImageSetMember.image_id.in_(stays)))
            db.session.execute(update(Image).where(Image.id.in_(stays), Image.imageset_id == imageset_id)
                               .values(imageset_id=None))
        _purge(doomed, should_stop)
    own_folder = f"{app_state().settings.azure_storage_imageset_folder.strip('/')}/{image_set.title}"
    if image_set.blobstorage_path == own_folder:  # a folder this service made for this set alone (not an import's)
        _sweep_folder(own_folder)
    app_state().storage.delete_upload_area(image_set.upload_container)
    with unit_of_work():
        db.session.execute(delete(ImageSet).where(ImageSet.id == imageset_id, ImageSet.status == "deleting"))
    logger.info("image set deleted", extra={"imageset_id": imageset_id})


def _sweep_folder(folder: str) -> None:
    """Blobs under the set's folder (and their renditions) that no image names: copies a finishing run left."""
    storage = app_state().storage
    prefixes = [f"{folder}/"] + [f"renditions/{name}/{folder}/" for name in render.KINDS]
    for prefix in prefixes:
        names = list(storage.image_paths(prefix))
        for start in range(0, len(names), 1000):
            chunk = names[start:start + 1000]
            image_paths = {_image_path(n, prefix, folder) for n in chunk}
            named = set(db.session.scalars(select(Image.blobstorage_path)
                                           .where(Image.blobstorage_path.in_(image_paths))))
            db.session.rollback()
            for name in chunk:
                if _image_path(name, prefix, folder) not in named:
                    storage.delete_image(name)


def _image_path(name: str, prefix: str, folder: str) -> str:
    """The image path a blob belongs to: itself, or for a rendition the path it was made from."""
    if prefix == f"{folder}/":
        return name
    return name.split("/", 2)[2].rsplit(".", 1)[0]


def release_retired(campaign_id: int, *, should_stop: Callable[[], bool] = lambda: False) -> int:
    """After an archive: delete the retired images of this campaign (and its versions) that nothing holds now."""
    released, after = 0, 0
    while True:
        if should_stop():
            raise WorkInterrupted("releasing retired images was stopped; the rest is released on retry")
        with unit_of_work():
            of_campaign = union(
                select(CampaignImage.image_id).where(CampaignImage.campaign_id == campaign_id),
                select(DatasetImage.image_id).join(Dataset, Dataset.id == DatasetImage.dataset_id)
                .where(Dataset.campaign_id == campaign_id)).subquery()
            retired = db.session.scalars(
                select(Image).where(Image.id.in_(select(of_campaign.c[0])), Image.id > after,
                                    Image.status.in_(("retired", "deleting")))
                .order_by(Image.id).limit(BATCH).with_for_update(of=Image)).all()
            if not retired:
                return released
            after = retired[-1].id
            keep = held(i.id for i in retired)
            freed = [i for i in retired if i.id not in keep]
            for image in freed:
                if image.status == "retired":
                    audit.record("delete", "image", image.id, {"status": "retired"}, {"status": "deleting"})
                    image.status = "deleting"
            ids = [i.id for i in freed]
        released += _purge(ids, should_stop)
