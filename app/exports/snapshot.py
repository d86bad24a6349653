"""The rows every export reads: (image, [objects]) in image id order, from a dataset version's snapshot
or from a campaign's current labels."""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from sqlalchemy import text

from app.extensions import db


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
