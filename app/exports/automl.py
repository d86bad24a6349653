"""Azure ML AutoML object detection: annotations.jsonl (one line per image, corners normalised to [0, 1])
and the MLTable that describes it."""
from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator

from app.exports.snapshot import snapshot_rows

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


def upload_annotations(dataset, storage, prefix: str) -> tuple[str, int, int]:
    """Stream the version's annotations.jsonl into its folder; (SHA-256 of the bytes, images, objects)."""
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


def _unit(value: float) -> float:
    return round(min(1.0, max(0.0, value)), 6)
