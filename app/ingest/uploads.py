"""Direct upload, the way in for devices, crowdsourcing apps and scripts: files sent in the request itself go
through the ingest pipeline (app.ingest.pipeline) and are catalogued before the answer, straight into the
image container. A file may carry its labels for a campaign: the image joins the campaign and the objects are
stored as a revision by the caller; the file and its labels are all or nothing.

The request is refused (4xx) only when it is bad as a whole: the set is not open, or labels are sent for a
campaign the caller may not label (404, as for any campaign it cannot see) or that is not active (409).
A bad file is rejected with its reason in its result; it never blocks the others.
"""
from __future__ import annotations

import base64
import binascii
import io
import logging
import uuid
from functools import partial
from dataclasses import dataclass, field
from typing import BinaryIO

from sqlalchemy.exc import IntegrityError

from app.auth.policy import Caller
from app.errors import Conflict, DomainError, NotFound, Unprocessable
from app.extensions import db
from app.ingest import pipeline
from app.ingest.pipeline import Outcome
from app.models import ImageSet
from app.services import campaigns, image_sets
from app.services.finishing import report_rows
from app.state import app_state
from app.unit_of_work import undo_on_failure

logger = logging.getLogger(__name__)

SOURCE = "upload"
LABEL_MANAGERS = ("admin", "image-admin")  # may submit objects to any campaign (PUT /campaigns/{id}/objects)


@dataclass
class File:
    name: str
    stream: BinaryIO | None  # None when the content could not be decoded (`problem` says why)
    metadata: dict | None = None
    campaign_id: int | None = None
    objects: list[dict] | None = None
    problem: str | None = None
    declared_size: int | None = None  # known before decoding (base64 length), to refuse a big file unread


@dataclass
class Result:
    name: str
    outcome: str
    image_id: int | None = None
    duplicate_of: int | None = None
    reason: str | None = None
    objects: int | None = None
    extra: dict = field(default_factory=dict)


def from_base64(item: dict) -> File:
    text = item["content_base64"]
    declared = len(text) * 3 // 4
    file = File(item["name"], None, metadata=item.get("metadata"), campaign_id=item.get("campaign_id"),
                objects=item.get("objects"), declared_size=declared)
    if declared > app_state().settings.max_image_bytes:
        return file  # refused for its size before it is decoded
    try:
        file.stream = io.BytesIO(base64.b64decode(text, validate=True))
    except (binascii.Error, ValueError):
        file.problem = "content_base64 is not valid base64"
    return file


def upload(imageset_id: int, files: list[File], *, caller: Caller, request_id: str | None) -> list[Result]:
    if not files:  # Connexion lets a multipart body without a `file` part through (its closing boundary only)
        raise Unprocessable("the request holds no file: send one or more multipart `file` parts, or JSON "
                            "{\"files\": [...]}", field="file")
    # Shared: uploads into one set run side by side, while a change of its status waits for them to commit.
    image_set = image_sets.get(imageset_id, for_share=True)
    if image_set.status != "created":
        raise Conflict(f"image set {imageset_id} is {image_set.status}: it takes uploads only while created",
                       current_status=image_set.status)
    _check_labels_allowed(files, caller)
    rules = image_sets.rules(image_set)
    settings = app_state().settings
    folder = f"{image_set.blobstorage_path}/{SOURCE}"
    results, orphans, recorded = [], [], []
    for index, file in enumerate(files):
        outcome = Outcome(file.name, metadata=file.metadata)
        outcome.reason = pipeline.unsafe_name(file.name) or file.problem
        if not outcome.reason and file.declared_size is not None and file.stream is None:
            outcome.reason = pipeline.size_violation(file.declared_size, rules)
        if not outcome.reason:
            # A path of its own (MD5 and a random part): no other request ever writes or deletes it. The path
            # is noted (committed) before its copy is stored, for the sweep should this process die.
            pipeline.take_local(outcome, file.stream, rules, folder=folder, max_pixels=settings.max_image_pixels,
                                suffix=f"-{uuid.uuid4().hex[:8]}", before_store=pipeline.note_stray)
        if outcome.path:
            undo_on_failure(partial(_remove, [outcome.path]))  # nothing stays if the request does not commit
        results.append(_record(image_set, file, outcome, index, caller, request_id))
        recorded.append(outcome)
        if outcome.path and outcome.kind != "accepted":
            orphans.append(outcome.path)  # stored, then found a duplicate meanwhile or refused with its labels
    # Counted once, at the end: the minute's counter rows are locked in one order until the commit, so two
    # requests whose files end in different orders of outcomes cannot deadlock on them.
    pipeline.count_minute(SOURCE, recorded)
    if orphans:
        _remove(orphans)
    pipeline.settle_strays([o.path for o in recorded if o.path])  # gone with the catalogue rows' commit
    return results


def _check_labels_allowed(files: list[File], caller: Caller) -> None:
    for index, file in enumerate(files):
        if file.objects is not None and file.campaign_id is None:
            raise NotFound(f"files[{index}]: objects need a campaign_id", index=index, field="campaign_id")
        if file.campaign_id is None:
            continue
        if not (caller.has(*LABEL_MANAGERS) or (caller.has("labeler") and file.campaign_id in caller.campaign_ids)):
            raise NotFound(f"files[{index}]: no campaign {file.campaign_id}", index=index, field="campaign_id")
        campaign = campaigns.get(file.campaign_id)  # 404 when it does not exist
        if campaign.status not in ("active", "completed"):  # a completed one is active again once the image joins
            raise Conflict(f"files[{index}]: campaign {campaign.id} is {campaign.status}: labels are accepted only "
                           "while it is active", index=index, field="campaign_id", current_status=campaign.status)


def _record(image_set: ImageSet, file: File, outcome: Outcome, index: int, caller: Caller,
            request_id: str | None) -> Result:
    """The file's outcome, and its labels with it, in a savepoint: labels that cannot be stored reject the
    file (recorded as rejected, with why), never the request."""
    labelled = file.campaign_id is not None and outcome.candidate
    stored_objects = None
    try:
        with db.session.begin_nested():
            pipeline.record(image_set.id, [outcome], source=SOURCE,
                            report=lambda o: report_rows(image_set.id, o, SOURCE), count=False)
            if labelled:
                campaigns.add_images(file.campaign_id, [{"id": outcome.image_id}])
                stored_objects = campaigns.submit(file.campaign_id, [{"image_id": outcome.image_id,
                                                                      "objects": file.objects or []}],
                                                  caller=caller, request_id=request_id)["objects"]
    except (DomainError, IntegrityError) as refused:
        reason = refused.detail if isinstance(refused, DomainError) else "its labels could not be stored"
        outcome.facts, outcome.duplicate, outcome.image_id = None, False, None
        outcome.reason = f"labels refused: {reason.removeprefix('item 0: ')}"
        with db.session.begin_nested():
            pipeline.record(image_set.id, [outcome], source=SOURCE,
                            report=lambda o: report_rows(image_set.id, o, SOURCE), count=False)
    kind = outcome.kind
    return Result(file.name, kind,
                  image_id=outcome.image_id if kind == "accepted" else None,
                  duplicate_of=outcome.image_id if kind == "duplicate" else None,
                  reason=outcome.reason or outcome.failure, objects=stored_objects)


def _remove(paths: list[str]) -> None:
    storage = app_state().storage
    for path in paths:
        storage.delete_image(path)
