"""The image catalogue: filtered listing (offset pages or a keyset cursor) and short-lived read URLs."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, true

from app.errors import NotFound
from app.extensions import db
from app.models import Image, ImageSetMember
from app.services import audit
from app.services.image_facts import MIME_TYPES
from app.services.lookup import get_or_404
from app.services.pagination import Page, decode_cursor, encode_cursor, paginate
from app.storage import SignedUrl
from app.state import app_state


@dataclass
class Filters:
    imageset_id: int | None = None
    md5: str | None = None
    type: str | None = None
    date_taken_from: datetime | None = None
    date_taken_to: datetime | None = None
    camera_make: str | None = None
    camera_model: str | None = None


def _filtered(filters: Filters):
    query = select(Image).where(Image.status == "active")  # retired and deleting images are not listed
    if filters.imageset_id is not None:
        query = query.where(Image.id.in_(select(ImageSetMember.image_id).where(
            ImageSetMember.imageset_id == filters.imageset_id)))
    for column, value in ((Image.md5, filters.md5), (Image.type, filters.type),
                          (Image.camera_make, filters.camera_make), (Image.camera_model, filters.camera_model)):
        if value is not None:
            query = query.where(column == value)
    if filters.date_taken_from is not None:
        query = query.where(Image.date_taken >= filters.date_taken_from)
    if filters.date_taken_to is not None:
        query = query.where(Image.date_taken < filters.date_taken_to)
    return query


def list_page(filters: Filters, *, page: int, per_page: int) -> tuple[Page, str | None]:
    result = paginate(_filtered(filters).order_by(Image.id), page, per_page)
    more = result.pagination["next"] is not None
    return result, encode_cursor(result.items[-1].id) if result.items and more else None


def list_after(filters: Filters, *, cursor: str, per_page: int) -> tuple[list[Image], str | None]:
    """Keyset pagination on the primary key: the deepest page costs what the first one does."""
    after = decode_cursor(cursor)
    rows = db.session.scalars(_filtered(filters).where(Image.id > after).order_by(Image.id)
                              .limit(per_page + 1)).unique().all()
    more = len(rows) > per_page
    rows = rows[:per_page]
    return rows, encode_cursor(rows[-1].id) if more else None


def get(image_id: int) -> Image:
    return get_or_404(Image, image_id, "image")


def get_by_md5(md5: str) -> Image:
    image = db.session.scalar(select(Image).where(Image.md5 == md5.lower()))
    if image is None:
        raise NotFound(f"no image has MD5 {md5.lower()}")
    return image


EDITABLE = {"type": "type", "tss_id": "tss_id", "metadata": "meta_data", "location_description": "location_description"}


def update(image_id: int, values: dict) -> Image:
    """Change the catalogue fields people own (never what was read from the file); recorded in the audit trail."""
    image = get_or_404(Image, image_id, "image", for_update=True)
    before, after = audit.changes(image, EDITABLE, values)
    if after:
        audit.record("update", "image", image_id, before, after)
    return image


def read_url(image: Image) -> SignedUrl:
    state = app_state()
    # The SAS fixes the Content-Type to the detected format: a stored file is served as the image it is.
    return state.storage.image_read_url(image.blobstorage_path,
                                        timedelta(minutes=state.settings.image_read_token_minutes),
                                        content_type=MIME_TYPES.get(image.filetype or "", "application/octet-stream"))


def resolve_refs(items: list[dict], *, within_sets: frozenset[int] | None = None) -> list[int]:
    """[{id} | {filepath}] -> image ids (first occurrence order, no repeats); 404 naming the first unknown item.
    With `within_sets`, only images finished in or added to those sets are known: one outside them is answered
    as one that does not exist, so a caller limited to its sets cannot learn what else the catalogue holds."""
    ids = [item["id"] for item in items if "id" in item]
    paths = [item["filepath"] for item in items if "id" not in item]
    paths += [_inside_container(p) for p in paths]
    visible = true() if within_sets is None else (Image.imageset_id.in_(within_sets) | Image.id.in_(
        select(ImageSetMember.image_id).where(ImageSetMember.imageset_id.in_(within_sets))))
    visible &= Image.status == "active"  # a retired or deleting image is added nowhere
    found_ids = set(db.session.scalars(select(Image.id).where(Image.id.in_(ids), visible))) if ids else set()
    by_path = dict(db.session.execute(select(Image.blobstorage_path, Image.id).where(
        Image.blobstorage_path.in_(paths), visible)).all()) if paths else {}
    resolved = []
    for index, item in enumerate(items):
        if "id" in item:
            if item["id"] not in found_ids:
                raise NotFound(f"item {index}: no image {item['id']}", index=index, field="id")
            resolved.append(item["id"])
        else:
            found = by_path.get(item["filepath"]) or by_path.get(_inside_container(item["filepath"]))
            if found is None:
                raise NotFound(f"item {index}: no image at {item['filepath']!r}", index=index, field="filepath")
            resolved.append(found)
    return list(dict.fromkeys(resolved))


def _inside_container(path: str) -> str:
    """LabelAPI wrote paths as `<container>/<path>` (or with a leading slash): the path inside our container."""
    path, prefix = path.lstrip("/"), app_state().storage.container + "/"
    return path.removeprefix(prefix)
