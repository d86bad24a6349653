"""Image sets: created with an upload area, filled by clients straight into blob storage, then finished
by a durable job (app.services.finishing) that turns the uploads into catalogued images."""
from __future__ import annotations

import logging
import re
import uuid
from datetime import timedelta

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import IntegrityError

from app import jobs
from app.auth.policy import Caller
from app.errors import Conflict, Unprocessable
from app.ingest import rules as ingest_rules
from app.extensions import db
from app.models import FinishReport, Image, ImageSet, ImageSetMember, UrlImport
from app.services import audit, images
from app.services.lookup import add_titled, get_or_404
from app.services.pagination import Page, paginate
from app.storage import SignedUrl
from app.unit_of_work import undo_on_failure
from app.state import app_state

logger = logging.getLogger(__name__)

# A title names a folder in blob storage: no separators, control characters, or names Azure refuses.
_UNSAFE_TITLE = re.compile(r"[\x00-\x1f\x7f/\\?#%]")
_MOVES = {"finished": ("created", "failed")}  # new_status -> states it may be asked from


def check_title(title: str) -> str:
    if title != title.strip() or not title:
        raise Unprocessable("title must not be blank or start or end with spaces", field="title")
    if _UNSAFE_TITLE.search(title) or title.endswith(".") or title in (".", ".."):
        raise Unprocessable("title cannot name a storage folder: avoid / \\ ? # %, control characters and a final "
                            "dot", field="title")
    return title


def create(*, title: str, metadata: dict | None, created_by: Caller,
           validation: dict | None = None) -> tuple[ImageSet, SignedUrl]:
    check_title(title)
    state = app_state()
    image_set = ImageSet(
        title=title, meta_data=metadata, status="created", created_by_id=created_by.principal_id,
        validation=ingest_rules.checked(validation, state.settings),
        blobstorage_path=_folder(title),
        # One container per upload area, so a container SAS confines the client to this set's uploads.
        upload_container=f"{state.settings.azure_storage_imageset_container}-up-{uuid.uuid4().hex[:20]}",
        progress_accepted=0, progress_duplicates=0, progress_rejected=0, progress_failed=0)
    add_titled(image_set, "image set")
    state.storage.create_upload_area(image_set.upload_container)
    # Made before the commit so a failure is seen here; removed again if the transaction does not commit.
    undo_on_failure(lambda: state.storage.delete_upload_area(image_set.upload_container))
    logger.info("image set created", extra={"imageset_id": image_set.id})
    return image_set, upload_url(image_set)


def upload_url(image_set: ImageSet) -> SignedUrl:
    state = app_state()
    return state.storage.upload_area_url(image_set.upload_container,
                                         timedelta(days=state.settings.imageset_upload_token_valid_days))


def get(imageset_id: int, *, for_update: bool = False, for_share: bool = False) -> ImageSet:
    return get_or_404(ImageSet, imageset_id, "image set", for_update=for_update, for_share=for_share)


def list_sets(*, page: int, per_page: int, status: str | None = None) -> Page:
    query = select(ImageSet).order_by(ImageSet.id)
    if status is not None:  # index (status, id)
        query = query.where(ImageSet.status == status)
    return paginate(query, page, per_page)


def update(imageset_id: int, values: dict) -> ImageSet:
    """metadata at any time; the title only while created: it names the storage folder finishing writes to."""
    image_set = get(imageset_id, for_update=True)
    if "title" in values and values["title"] != image_set.title:
        if image_set.status != "created":
            raise Conflict(f"image set {imageset_id} is {image_set.status}: its title names its storage folder and "
                           "changes only while it is created", field="title", current_status=image_set.status)
        check_title(values["title"])
        values = {**values, "blobstorage_path": _folder(values["title"])}
    before, after = audit.changes(image_set, {"title": "title", "metadata": "meta_data",
                                              "blobstorage_path": "blobstorage_path"}, values)
    if after:
        try:
            with db.session.begin_nested():
                db.session.flush()
        except IntegrityError:
            raise Conflict(f"image set title {values['title']!r} is already taken", field="title") from None
        audit.record("update", "image_set", imageset_id, before, after)
    return image_set


def _folder(title: str) -> str:
    return f"{app_state().settings.azure_storage_imageset_folder.strip('/')}/{title}"


def new_upload_url(imageset_id: int) -> tuple[ImageSet, SignedUrl]:
    image_set = get(imageset_id)
    if image_set.status != "created":
        raise Conflict(f"image set {imageset_id} is {image_set.status}: uploads are closed once finishing starts")
    return image_set, upload_url(image_set)


def change_status(imageset_id: int, new_status: str) -> ImageSet:
    """created/failed -> finishing, with the finishing job deferred in the same transaction."""
    image_set = get(imageset_id, for_update=True)
    allowed_from = _MOVES.get(new_status, ())
    if image_set.status not in allowed_from:
        raise Conflict(f"image set {imageset_id} cannot move from {image_set.status} to {new_status}",
                       current_status=image_set.status, requested_status=new_status)
    importing = db.session.scalars(select(UrlImport.id).where(  # the set row's lock orders this with new imports
        UrlImport.imageset_id == imageset_id, UrlImport.status.in_(("queued", "running"))).order_by(UrlImport.id)).all()
    if importing:
        raise Conflict(f"image set {imageset_id} cannot be finished while its URL import {importing[0]} is "
                       "queued or running", current_status=image_set.status, import_id=importing[0])
    audit.record("status", "image_set", imageset_id, {"status": image_set.status}, {"status": "finishing"})
    image_set.status, image_set.error = "finishing", None
    jobs.defer("finish_image_set", lock=f"image_set:{imageset_id}", imageset_id=imageset_id)
    logger.info("image set finishing", extra={"imageset_id": imageset_id})
    return image_set


MANAGERS = ("admin", "image-admin")  # roles that may add any catalogued image to a set


def add_images(imageset_id: int, items: list[dict], *, caller: Caller) -> int:
    """Add existing images, named by id or filepath; all or nothing. Returns how many were new to the set.
    An uploader adds only images finished in or added to a set its key is bound to (sharing its own images
    between its sets); any other image is answered as absent, so the answer tells it nothing about the catalogue."""
    if get(imageset_id).status == "deleting":
        raise Conflict(f"image set {imageset_id} is being deleted", current_status="deleting")
    resolved = images.resolve_refs(items, within_sets=None if caller.has(*MANAGERS) else caller.imageset_ids)
    result = db.session.execute(pg_insert(ImageSetMember).values(
        [{"imageset_id": imageset_id, "image_id": image_id} for image_id in resolved]).on_conflict_do_nothing())
    return result.rowcount


def list_images(imageset_id: int, *, page: int, per_page: int) -> Page:
    get(imageset_id)
    query = (select(Image).join(ImageSetMember, ImageSetMember.image_id == Image.id)
             .where(ImageSetMember.imageset_id == imageset_id, Image.status == "active").order_by(Image.id))
    return paginate(query, page, per_page)


def report(imageset_id: int, *, page: int, per_page: int, outcome: str | None = None) -> Page:
    get(imageset_id)
    query = select(FinishReport).where(FinishReport.imageset_id == imageset_id).order_by(FinishReport.name)
    if outcome:
        query = query.where(FinishReport.outcome == outcome)
    return paginate(query, page, per_page)


def progress(image_set: ImageSet) -> dict:
    failed = image_set.progress_failed or 0
    done = image_set.progress_accepted + image_set.progress_duplicates + image_set.progress_rejected + failed
    return {"total": image_set.progress_total, "done": done, "accepted": image_set.progress_accepted,
            "duplicates": image_set.progress_duplicates, "rejected": image_set.progress_rejected, "failed": failed}


def rules(image_set: ImageSet) -> ingest_rules.Rules:
    return ingest_rules.effective(image_set.validation, app_state().settings)
