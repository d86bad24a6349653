"""Labelling campaigns: a labeler (bound by key) labels a campaign's images; every submission is a revision.

Submissions to one campaign are serialised on the campaign's row, so concurrent ones each apply whole,
progress counts stay exact and the automatic move to completed happens once.
"""
from __future__ import annotations

import csv
import io
import logging
from dataclasses import dataclass
from datetime import datetime, timezone

from sqlalchemy import func, select, text
from sqlalchemy.dialects.postgresql import insert as pg_insert

from app.auth.policy import Caller
from app.errors import Conflict, NotFound, Unprocessable
from app.extensions import db
from app.models import (ApiKey, ApiKeyCampaign, Campaign, CampaignImage, Image, LabelObject, LabelRevision,
                        Principal)
from app.services import audit, datasets, images, keys
from app.services.lookup import add_titled, get_or_404
from app.services.pagination import Page, paginate
from app.webhooks import service as webhooks

logger = logging.getLogger(__name__)

# (from, to) -> the date set on that move
MOVES = {("created", "active"): "date_started", ("active", "completed"): "date_completed",
         ("completed", "active"): None, ("completed", "finished"): "date_finished"}
MANAGERS = ("admin", "image-admin", "reader")  # roles that see every campaign


@dataclass
class AccessToken:
    apikey: str
    apisecret: str | None  # None when the labeler already had a key (LabelAPI's behaviour)


def create(*, title: str, labeler_email: str, metadata: dict | None, label_translations: dict | None,
           labels: list[str] | None, created_by: Caller) -> tuple[Campaign, AccessToken]:
    _check_taxonomy(label_translations, labels)
    labeler = keys.principal_for(email=labeler_email, field="labeler_email")
    if keys.holds_other_roles(labeler, "labeler"):
        # Its labels would carry the name of someone the service knows in another capacity (an admin's,
        # an image-admin's), under a key whose secret goes to whoever creates the campaign.
        raise Conflict(f"{labeler.name!r} holds keys with roles other than labeler: a campaign's labeler key "
                       "cannot be made in its name; give an email used only for labelling", field="labeler_email")
    campaign = Campaign(title=title, status="created", meta_data=metadata, label_translations=label_translations,
                        labels=labels, labeler=labeler, created_by_id=created_by.principal_id, progress_total=0,
                        progress_done=0)
    add_titled(campaign, "campaign")
    existing = db.session.scalar(
        select(ApiKey).where(ApiKey.principal_id == labeler.id, ApiKey.roles.any("labeler"), keys.usable())
        .order_by(ApiKey.id).limit(1))
    if existing is not None:
        db.session.add(ApiKeyCampaign(api_key_id=existing.id, campaign_id=campaign.id))
        token = AccessToken(existing.key_id, None)
    else:
        key, secret = keys.create_key(roles=["labeler"], email=labeler_email, campaign_ids=[campaign.id],
                                      description=f"labeler of campaign {campaign.id}",
                                      created_by=created_by.principal_id)
        token = AccessToken(key.key_id, secret)
    db.session.flush()
    logger.info("campaign created", extra={"campaign_id": campaign.id, "new_key": token.apisecret is not None})
    return campaign, token


def _check_taxonomy(label_translations: dict | None, labels: list[str] | None) -> None:
    if labels is not None and label_translations:
        unknown = sorted({v for v in label_translations.values() if v not in labels})
        if unknown:
            raise Unprocessable(f"label_translations maps to {unknown[0]!r}, which is not in labels",
                                field="label_translations")


EDITABLE = {"metadata": "meta_data", "label_translations": "label_translations", "labels": "labels"}


def update(campaign_id: int, values: dict) -> Campaign:
    """metadata at any time; label_translations and labels while not finished (a finished campaign's labels
    are a dataset's). Labels already stored are not rewritten: the taxonomy applies to what is submitted next."""
    campaign = get(campaign_id, for_update=True)
    if campaign.status in ("finished", "archived") and {"label_translations", "labels"} & values.keys():
        raise Conflict(f"campaign {campaign_id} is finished: its labels and translations no longer change",
                       current_status=campaign.status)
    _check_taxonomy(values.get("label_translations", campaign.label_translations),
                    values.get("labels", campaign.labels))
    before, after = audit.changes(campaign, EDITABLE, values)
    if after:
        audit.record("update", "campaign", campaign_id, before, after)
    return campaign


def get(campaign_id: int, *, for_update: bool = False) -> Campaign:
    return get_or_404(Campaign, campaign_id, "campaign", for_update=for_update)


def list_campaigns(*, page: int, per_page: int, caller: Caller, status: str | None = None) -> Page:
    """Archived campaigns only when asked for by `status`."""
    query = select(Campaign).where(Campaign.status == status if status else Campaign.status != "archived")
    query = query.order_by(Campaign.id)
    if not caller.has(*MANAGERS):  # a labeler sees its own campaigns only
        query = query.where(Campaign.id.in_(caller.campaign_ids or [-1]))
    return paginate(query, page, per_page)


def change_status(campaign_id: int, new_status: str) -> Campaign:
    campaign = get(campaign_id, for_update=True)
    _move(campaign, new_status)
    return campaign


def _move(campaign: Campaign, new_status: str) -> None:
    if (campaign.status, new_status) not in MOVES:
        raise Conflict(f"campaign {campaign.id} cannot move from {campaign.status} to {new_status}",
                       current_status=campaign.status, requested_status=new_status)
    date_field = MOVES[(campaign.status, new_status)]
    audit.record("status", "campaign", campaign.id, {"status": campaign.status}, {"status": new_status})
    campaign.status = new_status
    if date_field:
        setattr(campaign, date_field, datetime.now(timezone.utc))
    if new_status == "finished":  # a dataset version is built from what was just finished
        datasets.on_campaign_finished(campaign)
    if new_status in ("completed", "finished"):
        webhooks.emit(f"campaign.{new_status}", {"campaign_id": campaign.id, "title": campaign.title,
                                                 "status": new_status})
    logger.info("campaign status", extra={"campaign_id": campaign.id, "status": new_status})


def add_images(campaign_id: int, items: list[dict]) -> int:
    campaign = get(campaign_id, for_update=True)
    if campaign.status in ("finished", "archived"):
        raise Conflict(f"campaign {campaign_id} is {campaign.status}: no images can be added")
    resolved = images.resolve_refs(items)
    added = db.session.execute(pg_insert(CampaignImage).values(
        [{"campaign_id": campaign_id, "image_id": i} for i in resolved]).on_conflict_do_nothing()).rowcount
    _refresh_progress(campaign)
    if added and campaign.status == "completed":  # an image without labels joined: no longer complete
        _move(campaign, "active")
    return added


def list_images(campaign_id: int, *, page: int, per_page: int) -> Page:
    get(campaign_id)
    query = (select(CampaignImage.image_id).join(Image, Image.id == CampaignImage.image_id)
             .where(CampaignImage.campaign_id == campaign_id, Image.status == "active")  # retired ones hidden
             .order_by(CampaignImage.image_id))
    return paginate(query, page, per_page)


def _refresh_progress(campaign: Campaign) -> None:
    total, done = db.session.execute(
        select(func.count(), func.count(CampaignImage.current_revision_id))
        .where(CampaignImage.campaign_id == campaign.id)).one()
    campaign.progress_total, campaign.progress_done = total, done


# --- labels ------------------------------------------------------------------------------------------

def _translate(translations: dict, sent: str, translated: str | None) -> str:
    if translated:
        return translated
    return translations.get(sent, sent)


def submit(campaign_id: int, items: list[dict], *, caller: Caller, request_id: str | None) -> dict:
    """Replace, for each listed image, its objects in this campaign with a new revision. All or nothing."""
    campaign = get(campaign_id, for_update=True)  # serialises submissions to this campaign
    if campaign.status != "active":
        raise Conflict(f"campaign {campaign_id} is {campaign.status}: labels are accepted only while it is active",
                       current_status=campaign.status)
    image_ids = [item["image_id"] for item in items]
    sizes = dict((row.image_id, (row.width, row.height)) for row in db.session.execute(
        select(CampaignImage.image_id, Image.width, Image.height).join(Image, Image.id == CampaignImage.image_id)
        .where(CampaignImage.campaign_id == campaign_id, CampaignImage.image_id.in_(image_ids))))
    seen: set[int] = set()
    objects = []
    rules = _Rules(campaign.id, campaign.label_translations or {},
                   frozenset(campaign.labels) if campaign.labels is not None else None)
    for index, item in enumerate(items):
        image_id = item["image_id"]
        if image_id not in sizes:
            raise NotFound(f"item {index}: image {image_id} is not in campaign {campaign_id}", index=index,
                           field="image_id")
        if image_id in seen:
            raise Unprocessable(f"item {index}: image {image_id} is listed twice", index=index, field="image_id")
        seen.add(image_id)
        width, height = sizes[image_id]
        for number, obj in enumerate(item["objects"]):
            objects.append(_object_row(rules, obj, index, number, image_id, width, height, caller))

    now = datetime.now(timezone.utc)
    latest = dict(db.session.execute(
        select(LabelRevision.image_id, func.max(LabelRevision.revision))
        .where(LabelRevision.campaign_id == campaign_id, LabelRevision.image_id.in_(image_ids))
        .group_by(LabelRevision.image_id)).all())
    counts = {image_id: 0 for image_id in image_ids}
    for row in objects:
        counts[row["image_id"]] += 1
    # One statement for all revisions (unnest of arrays): the ORM's multi-row VALUES costs ~0.5 s per 1,000.
    revision_ids = dict(db.session.execute(text(
        "INSERT INTO label_revisions (campaign_id, image_id, revision, submitted_by, key_id, request_id, "
        "object_count, date_submitted) "
        "SELECT :campaign, v.image_id, v.revision, :by, :key, :request, v.objects, :now "
        "FROM unnest(CAST(:images AS int[]), CAST(:revisions AS int[]), CAST(:counts AS int[])) "
        "AS v(image_id, revision, objects) RETURNING image_id, id"),
        {"campaign": campaign_id, "by": caller.owner_name, "key": caller.key_id, "request": request_id, "now": now,
         "images": image_ids, "revisions": [latest.get(i, 0) + 1 for i in image_ids],
         "counts": [counts[i] for i in image_ids]}).all())
    if objects:
        _copy_objects(objects, revision_ids, now)
    db.session.execute(text(
        "UPDATE campaign_images SET current_revision_id = v.revision_id "
        "FROM unnest(CAST(:images AS int[]), CAST(:revisions AS int[])) AS v(image_id, revision_id) "
        "WHERE campaign_images.campaign_id = :campaign AND campaign_images.image_id = v.image_id"),
        {"campaign": campaign_id, "images": list(revision_ids), "revisions": list(revision_ids.values())})
    _refresh_progress(campaign)
    if campaign.progress_total and campaign.progress_done == campaign.progress_total:
        _move(campaign, "completed")  # the last image got its labels
    db.session.flush()
    return {"images": len(image_ids), "objects": len(objects), "status": campaign.status,
            "progress": {"total": campaign.progress_total, "done": campaign.progress_done}}


_OBJECT_COLUMNS = ("revision_id", "campaign_id", "image_id", "label", "label_original", "box_xmin", "box_xmax",
                   "box_ymin", "box_ymax", "confidence", "is_crowd", "added_by", "date_added")


def _copy_objects(objects: list[dict], revision_ids: dict[int, int], now: datetime) -> None:
    """COPY the rows in on the session's own connection: same transaction, a fraction of INSERT's cost."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    for row in objects:
        row.update(revision_id=revision_ids[row["image_id"]], date_added=now.isoformat())
        writer.writerow("" if row[c] is None else row[c] for c in _OBJECT_COLUMNS)
    buffer.seek(0)
    cursor = db.session.connection().connection.dbapi_connection.cursor()
    cursor.copy_expert(f"COPY objects ({', '.join(_OBJECT_COLUMNS)}) FROM STDIN WITH (FORMAT csv)", buffer)


@dataclass(frozen=True)
class _Rules:
    """What a submission is checked against, read once from the campaign (not per object)."""

    campaign_id: int
    translations: dict
    labels: frozenset[str] | None


def _object_row(rules: _Rules, obj: dict, index: int, number: int, image_id: int, width: int, height: int,
                caller: Caller) -> dict:
    where = f"item {index} object {number}"
    box = obj["bounding_box"]
    problems = []
    if not box["xmin"] < box["xmax"]:
        problems.append("xmin must be less than xmax")
    if not box["ymin"] < box["ymax"]:
        problems.append("ymin must be less than ymax")
    if box["xmin"] < 0 or box["ymin"] < 0:
        problems.append("the box must lie inside the image (no negative coordinates)")
    elif width is not None and (box["xmax"] > width or box["ymax"] > height):  # None: imported, size not read yet
        problems.append(f"the box must lie inside the image (0..{width} x 0..{height})")
    if problems:
        raise Unprocessable(f"{where}: bounding_box: {'; '.join(problems)}", index=index, object_index=number,
                            field="bounding_box")
    label = _translate(rules.translations, obj["label"], obj.get("label_translated"))
    if rules.labels is not None and label not in rules.labels:
        raise Unprocessable(f"{where}: label {label!r} is not in this campaign's labels", index=index,
                            object_index=number, field="label")
    return {"campaign_id": rules.campaign_id, "image_id": image_id, "label": label, "label_original": obj["label"],
            "box_xmin": box["xmin"], "box_xmax": box["xmax"], "box_ymin": box["ymin"], "box_ymax": box["ymax"],
            "confidence": obj.get("confidence"), "is_crowd": False, "added_by": caller.owner_name}


def current_objects(campaign_id: int, image_ids: list[int]) -> dict[int, list[LabelObject]]:
    rows = db.session.scalars(
        select(LabelObject).join(CampaignImage, CampaignImage.current_revision_id == LabelObject.revision_id)
        .where(CampaignImage.campaign_id == campaign_id, CampaignImage.image_id.in_(image_ids))
        .order_by(LabelObject.image_id, LabelObject.id)).all()
    found: dict[int, list[LabelObject]] = {i: [] for i in image_ids}
    for row in rows:
        found[row.image_id].append(row)
    return found


def image_objects(image_id: int, campaign_ids: list[int] | None, caller: Caller) -> tuple[int | None, list]:
    """Objects from the first listed campaign that has labels for the image; by default the most recently
    finished campaign that has. A labeler only ever looks in its own campaigns."""
    images.get(image_id)
    labelled = select(CampaignImage.campaign_id).where(CampaignImage.image_id == image_id,
                                                       CampaignImage.current_revision_id.is_not(None))
    if not caller.has(*MANAGERS):
        labelled = labelled.where(CampaignImage.campaign_id.in_(caller.campaign_ids or [-1]))
    candidates = set(db.session.scalars(labelled))
    if campaign_ids:
        known = set(db.session.scalars(select(Campaign.id).where(Campaign.id.in_(campaign_ids))))
        if not caller.has(*MANAGERS):
            known &= set(caller.campaign_ids)
        unknown = next((c for c in campaign_ids if c not in known), None)
        if unknown is not None:  # as LabelAPI answered
            raise NotFound(f"no campaign {unknown}")
        chosen = next((c for c in campaign_ids if c in candidates), None)
    else:
        chosen = db.session.scalar(select(Campaign.id).where(Campaign.id.in_(candidates or [-1]),
                                                             Campaign.status.in_(("finished", "archived")))
                                   .order_by(Campaign.date_finished.desc(), Campaign.id.desc()).limit(1))
    if chosen is None:
        return None, []
    return chosen, current_objects(chosen, [image_id])[image_id]


def revisions(campaign_id: int, image_id: int) -> list[tuple[LabelRevision, list[LabelObject], bool, str | None]]:
    """Each revision, newest first: its objects, whether it is current, and who minted the key that submitted
    it (None: the service itself, or the key is gone)."""
    get(campaign_id)
    current = db.session.scalar(select(CampaignImage.current_revision_id).where(
        CampaignImage.campaign_id == campaign_id, CampaignImage.image_id == image_id))
    found = db.session.scalars(select(LabelRevision).where(LabelRevision.campaign_id == campaign_id,
                                                           LabelRevision.image_id == image_id)
                               .order_by(LabelRevision.revision.desc())).all()
    if not found and not db.session.scalar(select(CampaignImage.image_id).where(
            CampaignImage.campaign_id == campaign_id, CampaignImage.image_id == image_id)):
        raise NotFound(f"image {image_id} is not in campaign {campaign_id}")
    objects = db.session.scalars(select(LabelObject).where(LabelObject.revision_id.in_([r.id for r in found]))
                                 .order_by(LabelObject.id)).all()
    by_revision: dict[int, list[LabelObject]] = {r.id: [] for r in found}
    for obj in objects:
        by_revision[obj.revision_id].append(obj)
    minted_by = dict(db.session.execute(
        select(ApiKey.key_id, Principal.name).join(Principal, Principal.id == ApiKey.created_by_id)
        .where(ApiKey.key_id.in_({r.key_id for r in found}))).all()) if found else {}
    return [(r, by_revision[r.id], r.id == current, minted_by.get(r.key_id)) for r in found]
