"""COCO detection JSON, streamed: categories first (one query), then images, then annotations."""
from __future__ import annotations

import json
from collections.abc import Iterator

from sqlalchemy import select

from app.exports.snapshot import snapshot_rows
from app.extensions import db
from app.models import CampaignImage, DatasetImage, LabelObject


def _num(value: float) -> str:
    """A JSON number as json.dumps writes it (integers without a trailing .0)."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


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
